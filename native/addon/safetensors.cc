// mapFile(path) -> Storage over a private, copy-on-write memory mapping of a whole file (the
// safetensors reader makes its tensors zero-copy views on it; writes to them never reach the
// file). The mapping lives as long as any tensor on it.
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
void Init(Napi::Env env, Napi::Object exports) { exports.Set("mapFile", fn(env, "mapFile", MapFile)); }
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

Napi::Value MapFile(const Napi::CallbackInfo& info) {
  if (!info[0].IsString()) throw_type("Expected a string for path");
  const std::string path = info[0].As<Napi::String>().Utf8Value();
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw std::runtime_error("cannot open " + path + ": " + std::strerror(errno));
  struct stat st;
  if (::fstat(fd, &st) != 0) {
    const int e = errno;
    ::close(fd);
    throw std::runtime_error("cannot stat " + path + ": " + std::strerror(e));
  }
  const size_t size = size_t(st.st_size);
  if (size == 0) {
    ::close(fd);
    throw_range("Expected a non-empty file but " + path + " is empty");
  }
  void* p = ::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
  const int e = errno;
  ::close(fd);  // the mapping keeps the file open
  if (p == MAP_FAILED) throw std::runtime_error("cannot map " + path + ": " + std::strerror(e));
  auto s = std::make_shared<Storage>();
  s->data = p;
  s->bytes = size;
  s->owner = std::shared_ptr<void>(p, [size](void* q) { ::munmap(q, size); });
  return wrap_storage(info.Env(), s);
}

void Init(Napi::Env env, Napi::Object exports) { exports.Set("mapFile", fn(env, "mapFile", MapFile)); }

Register reg(&Init);

}  // namespace
}  // namespace addon
}  // namespace vt
#endif  // _WIN32
