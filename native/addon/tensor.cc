// Tensor storage: allocation, copies in and out of JS typed arrays, strided copy with cast,
// seeded random fills, and host/device transfers.
#include <cstring>

#include "../core/convert.h"
#include "../core/parallel.h"
#include "../core/random.h"
#include "../core/cuda_api.h"
#include "napi_util.h"

namespace vt {
namespace addon {
namespace {

// alloc(bytes, device, zero) -> Storage handle (memory uninitialised unless zero).
Napi::Value Alloc(const Napi::CallbackInfo& info) {
  double bytes = info[0].ToNumber().DoubleValue();
  int device = info[1].IsNumber() ? info[1].As<Napi::Number>().Int32Value() : -1;
  bool zero = opt_bool(info[2], false);
  if (!(bytes >= 0) || bytes > 9.0e15) throw_range("Expected a byte size in [0, 2^53) but received " + std::to_string(bytes));
  if (device >= 0) {
    auto devs = cuda_devices();
    if (device >= int(devs.size()))
      throw_range("Expected a CUDA device index below " + std::to_string(devs.size()) + " but received " +
                  std::to_string(device) + (cuda_compiled() ? "" : " (CUDA is not compiled into this build)"));
  }
  StoragePtr s = storage_alloc(size_t(bytes), device);
  if (zero && s->bytes) {
    if (device < 0) {
      char* p = static_cast<char*>(s->data);
      parallel_for(int64_t(s->bytes), 1 << 20, [p](int64_t b, int64_t e) { std::memset(p + b, 0, size_t(e - b)); });
    } else {
      cuda_memset(s->data, 0, s->bytes, device);
    }
  }
  return wrap_storage(info.Env(), s);
}

// fromBytes(typedArrayOrBuffer) -> Storage handle holding a copy of the bytes.
Napi::Value FromBytes(const Napi::CallbackInfo& info) {
  if (!info[0].IsTypedArray()) throw_type("Expected a typed array");
  Napi::TypedArray ta = info[0].As<Napi::TypedArray>();
  size_t bytes = ta.ByteLength();
  Napi::ArrayBuffer ab = ta.ArrayBuffer();
  const char* src = static_cast<const char*>(ab.Data()) + ta.ByteOffset();
  StoragePtr s = storage_alloc(bytes);
  if (bytes) std::memcpy(s->data, src, bytes);
  return wrap_storage(info.Env(), s);
}

// copyStrided(src, dstDtype, async) -> Storage of the view's elements, contiguous, cast.
Napi::Value CopyStrided(const Napi::CallbackInfo& info) {
  TensorArg src = tensor_arg(info[0], "tensor");
  double dtc = info[1].ToNumber().DoubleValue();
  if (!dtype_valid(int32_t(dtc))) throw_type("Invalid dtype code");
  DType dt = DType(int32_t(dtc));
  bool async = opt_bool(info[2], false);
  const int64_t n = src.numel();
  if (!src.on_cpu()) {
    if (!src.contiguous()) throw_type("Expected a contiguous CUDA tensor for tensor: strided CUDA copies are not supported yet");
    StoragePtr out = storage_alloc(size_t(n) * dtype_size(dt), src.storage->device);
    return run_job(info.Env(), async, [=] { cuda_cast(src.data(), src.dtype, out->data, dt, size_t(n), out->device); },
                   [out](Napi::Env env) -> Napi::Value { return wrap_storage(env, out); });
  }
  StoragePtr out = storage_alloc(size_t(n) * dtype_size(dt));
  return run_job(
      info.Env(), async,
      [=] {
        if (src.contiguous())
          cast(src.data(), src.dtype, out->data, dt, n);
        else
          copy_strided(src.data(), src.dtype, src.ndim(), src.shape.data(), src.strides.data(), out->data, dt);
      },
      [out](Napi::Env env) -> Napi::Value { return wrap_storage(env, out); });
}

// fillRandom(tensor, kind 'normal'|'uniform', seed, a, b): f32 contiguous CPU tensor.
Napi::Value FillRandom(const Napi::CallbackInfo& info) {
  TensorArg t = tensor_arg(info[0], "tensor");
  require_cpu(t);
  require_contiguous(t);
  require_dtype(t, {DType::F32});
  std::string kind = info[1].ToString().Utf8Value();
  double seed = info[2].ToNumber().DoubleValue();
  float a = info[3].ToNumber().FloatValue(), b = info[4].ToNumber().FloatValue();
  if (kind == "normal")
    fill_normal(t.ptr<float>(), t.numel(), uint64_t(seed), a, b);
  else
    fill_uniform(t.ptr<float>(), t.numel(), uint64_t(seed), a, b);
  return info.Env().Undefined();
}

// toDevice(src, device) -> Storage on `device` (-1: CPU) holding a contiguous copy.
Napi::Value ToDevice(const Napi::CallbackInfo& info) {
  TensorArg src = tensor_arg(info[0], "tensor");
  require_contiguous(src);
  int device = info[1].As<Napi::Number>().Int32Value();
  if (device >= 0) {
    auto devs = cuda_devices();
    if (device >= int(devs.size()))
      throw_range("Expected a CUDA device index below " + std::to_string(devs.size()) + " but received " +
                  std::to_string(device) + (cuda_compiled() ? "" : " (CUDA is not compiled into this build)"));
  }
  const size_t bytes = size_t(src.numel()) * dtype_size(src.dtype);
  StoragePtr out = storage_alloc(bytes, device);
  if (bytes) {
    if (device < 0 && src.on_cpu())
      std::memcpy(out->data, src.data(), bytes);
    else
      cuda_memcpy(out->data, src.data(), bytes);
  }
  return wrap_storage(info.Env(), out);
}

void Init(Napi::Env env, Napi::Object exports) {
  exports.Set("alloc", fn(env, "alloc", Alloc));
  exports.Set("fromBytes", fn(env, "fromBytes", FromBytes));
  exports.Set("copyStrided", fn(env, "copyStrided", CopyStrided));
  exports.Set("fillRandom", fn(env, "fillRandom", FillRandom));
  exports.Set("toDevice", fn(env, "toDevice", ToDevice));
}

Register reg(&Init);

}  // namespace
}  // namespace addon
}  // namespace vt
