// The safetensors reader's file access, on a file the TS layer has opened and checked:
//   mapFile(path, fd, size) -> Storage over a private, copy-on-write memory mapping of the whole
//     file (zero-copy tensor views; writes to them never reach the file); the mapping lives as
//     long as any tensor on it. The file must not be truncated or rewritten in place meanwhile:
//     pages past a new end raise SIGBUS, which no library can turn into an exception.
//   readFile(path, fd, size, async) -> Storage (or a Promise of it) holding a copy of the file.
#include <cerrno>
#include <cstring>
#include <string>

#include "napi_util.h"

#if defined(_WIN32)
namespace vt {
namespace addon {
namespace {
Napi::Value MapFile(const Napi::CallbackInfo&) {
  throw std::runtime_error("mapFile: memory-mapped safetensors are implemented for POSIX systems only");
}
Napi::Value ReadFile(const Napi::CallbackInfo&) {
  throw std::runtime_error("readFile: safetensors reading is implemented for POSIX systems only");
}
void Init(Napi::Env env, Napi::Object exports) {
  exports.Set("mapFile", fn(env, "mapFile", MapFile));
  exports.Set("readFile", fn(env, "readFile", ReadFile));
}
Register reg(&Init);
}  // namespace
}  // namespace addon
}  // namespace vt
#else
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

namespace vt {
namespace addon {
namespace {

// The file the TS layer opened (and checked to be a regular file): its fd, its path for
// messages, the size it validated the header against. Working on that fd, not on the path again,
// means a file swapped in between (for a FIFO, whose open would block forever) is never touched.
struct OpenFile {
  int fd;
  std::string path;
  size_t size;
};

OpenFile open_file(const Napi::CallbackInfo& info) {
  if (!info[0].IsString()) throw_type("Expected a string for path");
  if (!info[1].IsNumber()) throw_type("Expected a file descriptor for fd");
  if (!info[2].IsNumber()) throw_type("Expected a byte count for size");
  OpenFile f{int(info[1].As<Napi::Number>().Int32Value()), info[0].As<Napi::String>().Utf8Value(),
             size_t(info[2].As<Napi::Number>().Int64Value())};
  struct stat st;
  if (::fstat(f.fd, &st) != 0) throw std::runtime_error("cannot stat " + f.path + ": " + std::strerror(errno));
  if (!S_ISREG(st.st_mode)) throw_range("Expected a regular file but " + f.path + " is not one");
  if (size_t(st.st_size) != f.size)
    throw_range("The file " + f.path + " changed while it was being opened (" + std::to_string(f.size) + " bytes, now " +
                std::to_string(st.st_size) + ")");
  if (f.size == 0) throw_range("Expected a non-empty file but " + f.path + " is empty");
  return f;
}

// mapFile(path, fd, size): a private, copy-on-write mapping of the whole open file.
Napi::Value MapFile(const Napi::CallbackInfo& info) {
  const OpenFile f = open_file(info);
  void* p = ::mmap(nullptr, f.size, PROT_READ | PROT_WRITE, MAP_PRIVATE, f.fd, 0);
  if (p == MAP_FAILED) throw std::runtime_error("cannot map " + f.path + ": " + std::strerror(errno));
  auto s = std::make_shared<Storage>();
  s->data = p;
  s->bytes = f.size;
  const size_t size = f.size;
  s->owner = std::shared_ptr<void>(p, [size](void* q) { ::munmap(q, size); });
  return wrap_storage(info.Env(), s);
}

// readFile(path, fd, size, async): the whole open file read into native memory (the weights then
// do not depend on the file: it may be rewritten or truncated while they are in use). The read
// runs on a worker when async (a checkpoint of GBs would block the event loop for seconds).
Napi::Value ReadFile(const Napi::CallbackInfo& info) {
  const OpenFile f = open_file(info);
  const bool async = opt_bool(info[3], false);
  StoragePtr s = storage_alloc(f.size, -1);
  return run_job(
      info.Env(), async,
      [s, f] {
        size_t at = 0;
        char* dst = static_cast<char*>(s->data);
        while (at < f.size) {
          const ssize_t n = ::pread(f.fd, dst + at, f.size - at > (size_t(1) << 30) ? (size_t(1) << 30) : f.size - at, off_t(at));
          if (n < 0 && errno == EINTR) continue;
          if (n < 0) throw std::runtime_error("cannot read " + f.path + ": " + std::strerror(errno));
          if (n == 0)
            throw std::range_error("The file " + f.path + " shrank while it was being read (" + std::to_string(at) + " of " +
                                   std::to_string(f.size) + " bytes)");
          at += size_t(n);
        }
      },
      [s](Napi::Env env) -> Napi::Value { return wrap_storage(env, s); });
}

void Init(Napi::Env env, Napi::Object exports) {
  exports.Set("mapFile", fn(env, "mapFile", MapFile));
  exports.Set("readFile", fn(env, "readFile", ReadFile));
}

Register reg(&Init);

}  // namespace
}  // namespace addon
}  // namespace vt
#endif  // _WIN32
