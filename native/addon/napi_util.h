// Helpers of the N-API boundary: typed argument errors, tensor arguments, one AsyncWorker for
// every heavy call, and a registry through which each kernel family's file adds its exports.
//
// Pattern of a heavy call (see matmul.cc):
//   Napi::Value Foo(const Napi::CallbackInfo& info) {
//     auto a = tensor_arg(info[0], "a");            // checks; throws ArgError -> TypeError/RangeError
//     auto job = std::make_shared<FooJob>(...);     // plain struct: shared_ptrs + sizes, no N-API
//     return run_job(info, /*async*/ info[N], [job] { job->run(); },          // worker thread
//                    [job](Napi::Env env) { return make_result(env, job); }); // main thread
//   }
#pragma once
#define NAPI_VERSION 8
#include <napi.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "../core/dtype.h"
#include "../core/storage.h"

namespace vt {
namespace addon {

// An argument error found in native code; becomes a JS TypeError or RangeError.
struct ArgError : std::runtime_error {
  enum Kind { Type, Range } kind;
  ArgError(Kind k, const std::string& m) : std::runtime_error(m), kind(k) {}
};
[[noreturn]] void throw_type(const std::string& msg);
[[noreturn]] void throw_range(const std::string& msg);

// A tensor argument: a strided view on a Storage. Sizes and strides are in elements.
struct TensorArg {
  StoragePtr storage;
  DType dtype = DType::F32;
  std::vector<int64_t> shape, strides;
  int64_t offset = 0;  // elements from the storage start
  std::string name;

  int ndim() const { return int(shape.size()); }
  int64_t numel() const;
  bool contiguous() const;
  bool on_cpu() const { return storage->device < 0; }
  void* data() const { return static_cast<char*>(storage->data) + offset * int64_t(dtype_size(dtype)); }
  template <class T>
  T* ptr() const { return static_cast<T*>(data()); }
  std::string shape_str() const;
};

// Parses the descriptor the TS layer passes for a tensor ({ h, dt, shape, strides, off }).
TensorArg tensor_arg(const Napi::Value& v, const std::string& name);
// Requirements, each throwing a named TypeError/RangeError.
void require_dtype(const TensorArg& t, std::initializer_list<DType> ok);
void require_contiguous(const TensorArg& t);
void require_cpu(const TensorArg& t);
void require_ndim(const TensorArg& t, int ndim, const char* layout);
// The common kernel argument: a contiguous tensor of one of `dtypes` with `ndim` dimensions.
TensorArg contiguous_arg(const Napi::Value& v, const std::string& name, std::initializer_list<DType> dtypes, int ndim,
                         const char* layout);

// Wraps a Storage as the JS handle the TS Tensor holds.
Napi::Object wrap_storage(Napi::Env env, StoragePtr s);

// Runs exec() on a worker thread and resolves a Promise with done(env) (async), or runs both
// now and returns done(env) (sync). Exceptions become TypeError / RangeError / Error.
Napi::Value run_job(Napi::Env env, bool async, std::function<void()> exec,
                    std::function<Napi::Value(Napi::Env)> done);

// Converts a thrown C++ exception into a pending JS exception (for sync code paths).
void throw_js(Napi::Env env, const std::exception& e);

// Module registry: each family file declares `static Register reg(&InitFoo);`.
using InitFn = void (*)(Napi::Env, Napi::Object);
std::vector<InitFn>& registry();
struct Register {
  explicit Register(InitFn f) { registry().push_back(f); }
};

// Wraps a function body so that ArgError/std::exception thrown in it become JS errors.
Napi::Function fn(Napi::Env env, const char* name, std::function<Napi::Value(const Napi::CallbackInfo&)> body);

inline bool opt_bool(const Napi::Value& v, bool dflt) { return v.IsBoolean() ? v.As<Napi::Boolean>().Value() : dflt; }

// opts[key] into field when opts is an object and it holds a number >= lo (else field keeps its
// default): the fused LM-head pass's development knobs (cacheBytes, tokenBlock, vocabChunk).
inline void opt_knob(const Napi::Value& opts, const char* key, int64_t& field, double lo) {
  if (!opts.IsObject()) return;
  Napi::Value v = opts.As<Napi::Object>().Get(key);
  if (v.IsNumber() && v.As<Napi::Number>().DoubleValue() >= lo) field = int64_t(v.As<Napi::Number>().DoubleValue());
}

// A GEMM precision argument: undefined or 'f32' (false), 'bf16' (true: bf16 products, gemm_bf16.h),
// which runs on the CPU only (device >= 0 is refused). The TS layer checks the name first.
inline bool precision_arg(const Napi::Value& v, int device) {
  if (v.IsUndefined() || v.IsNull()) return false;
  const std::string s = v.IsString() ? v.As<Napi::String>().Utf8Value() : "";
  if (s == "f32") return false;
  if (s != "bf16") throw_range("Expected precision 'f32' or 'bf16' but received " + (v.IsString() ? "'" + s + "'" : std::string("a non-string")));
  if (device >= 0) throw_type("Expected a CPU tensor for precision 'bf16' (bf16 products run on the CPU; CUDA computes in f32)");
  return true;
}

}  // namespace addon
}  // namespace vt
