// N-API boundary of the optimizer family (native/kernels/optim). Buffers are flat f32 tensors of
// one layout (a model's master copy, gradients, moments); segments come as a Float64Array of
// (offset, numel, weight decay) triples, copied and checked against the buffers at the call.
//   optimAdamW(p, m, v, g, segments, { lr, beta1, beta2, eps, gradScale, bc1, bc2 }, async)
//   optimSumsq(g, segments, async) -> number        optimScale(g, segments, scale, async)
#include <cmath>
#include <string>
#include <vector>

#include "../kernels/optim/optim.h"
#include "napi_util.h"

namespace vt {
namespace addon {
namespace {

TensorArg flat(const Napi::Value& v, const char* name) { return contiguous_arg(v, name, {DType::F32}, 1, "[n]"); }

std::vector<OptimSegment> segments(const Napi::Value& v, int64_t n) {
  if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != napi_float64_array)
    throw_type("Expected a Float64Array of (offset, numel, weight decay) triples for segments");
  Napi::Float64Array a = v.As<Napi::Float64Array>();
  if (a.ElementLength() % 3) throw_range("Expected segments in triples (offset, numel, weight decay)");
  std::vector<OptimSegment> out(a.ElementLength() / 3);
  for (size_t i = 0; i < out.size(); i++) {
    const double off = a[3 * i], num = a[3 * i + 1], wd = a[3 * i + 2];
    if (!(off >= 0 && num >= 0 && off == std::floor(off) && num == std::floor(num) && off + num <= double(n)))
      throw_range("Expected segment " + std::to_string(i) + " inside the buffers (" + std::to_string(n) + " elements)");
    if (!std::isfinite(wd)) throw_range("Expected a finite weight decay for segment " + std::to_string(i));
    out[i] = {int64_t(off), int64_t(num), float(wd)};
  }
  return out;
}

double num(const Napi::Object& o, const char* k) {
  Napi::Value v = o.Get(k);
  if (!v.IsNumber()) throw_type(std::string("Expected a number for ") + k);
  return v.As<Napi::Number>().DoubleValue();
}

Napi::Value AdamW(const Napi::CallbackInfo& info) {
  TensorArg p = flat(info[0], "params"), m = flat(info[1], "exp_avg"), v = flat(info[2], "exp_avg_sq"), g = flat(info[3], "grads");
  const int64_t n = p.shape[0];
  for (const TensorArg* t : {&m, &v, &g})
    if (t->shape[0] != n || t->storage->device != p.storage->device)
      throw_range("Expected " + t->name + " of shape [" + std::to_string(n) + "] on the device of params");
  auto segs = segments(info[4], n);
  if (!info[5].IsObject()) throw_type("Expected an object of scalars");
  Napi::Object o = info[5].As<Napi::Object>();
  AdamWScalars s;
  s.lr = float(num(o, "lr"));
  s.beta1 = float(num(o, "beta1"));
  s.beta2 = float(num(o, "beta2"));
  s.eps = float(num(o, "eps"));
  s.grad_scale = float(num(o, "gradScale"));
  s.bc1 = num(o, "bc1");
  s.bc2 = num(o, "bc2");
  const int dev = p.storage->device;
  return run_job(
      info.Env(), opt_bool(info[6], false),
      [=] {
        if (dev >= 0) adamw_step_cuda(p.ptr<float>(), m.ptr<float>(), v.ptr<float>(), g.ptr<float>(), segs.data(), int64_t(segs.size()), s, dev);
        else adamw_step_cpu(p.ptr<float>(), m.ptr<float>(), v.ptr<float>(), g.ptr<float>(), segs.data(), int64_t(segs.size()), s);
      },
      [](Napi::Env env) { return env.Undefined(); });
}

Napi::Value Sumsq(const Napi::CallbackInfo& info) {
  TensorArg g = flat(info[0], "grads");
  auto segs = segments(info[1], g.shape[0]);
  auto out = std::make_shared<double>(0.0);
  const int dev = g.storage->device;
  return run_job(
      info.Env(), opt_bool(info[2], false),
      [=] {
        *out = dev >= 0 ? grad_sumsq_cuda(g.ptr<float>(), segs.data(), int64_t(segs.size()), dev)
                        : grad_sumsq_cpu(g.ptr<float>(), segs.data(), int64_t(segs.size()));
      },
      [out](Napi::Env env) { return Napi::Number::New(env, *out); });
}

Napi::Value Scale(const Napi::CallbackInfo& info) {
  TensorArg g = flat(info[0], "grads");
  auto segs = segments(info[1], g.shape[0]);
  const float scale = float(info[2].ToNumber().DoubleValue());
  const int dev = g.storage->device;
  return run_job(
      info.Env(), opt_bool(info[3], false),
      [=] {
        if (dev >= 0) grad_scale_cuda(g.ptr<float>(), segs.data(), int64_t(segs.size()), scale, dev);
        else grad_scale_cpu(g.ptr<float>(), segs.data(), int64_t(segs.size()), scale);
      },
      [](Napi::Env env) { return env.Undefined(); });
}

void Init(Napi::Env env, Napi::Object exports) {
  exports.Set("optimAdamW", fn(env, "optimAdamW", AdamW));
  exports.Set("optimSumsq", fn(env, "optimSumsq", Sumsq));
  exports.Set("optimScale", fn(env, "optimScale", Scale));
}

Register reg(&Init);

}  // namespace
}  // namespace addon
}  // namespace vt
