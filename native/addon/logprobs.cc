// N-API boundary of the log-prob gathering family (gather.h). The TS layer
// (src/kernels/gather.ts) validates with the public names first; these checks guard memory.
//   gatherLogprobs(logits, targets, temperature, entropy, async) -> { logprobs, lse, entropy? }
//   gatherLogprobsBackward(logits, targets, lse, dLogprobs, temperature, out|null, async) -> Storage | undefined
//   linearLogprobs(hidden, weight, targets, bias|null, temperature, entropy, async, tileTokens, tileVocab,
//     precision) -> { logprobs, lse, entropy? }
//   linearLogprobsBackward(hidden, weight, targets, bias|null, temperature, lse, dLogprobs, dWeight|null|false,
//     async, tileTokens, tileVocab, accumulate, precision) -> { dHidden, dWeight? (absent when given), dBias? }
//   linearLogprobsWithGrad: below.
// precision: 'f32' (default) or 'bf16' (GEMM products in bf16, gemm_bf16.h; CPU only).
#include <algorithm>
#include <cmath>
#include <optional>
#include <string>

#include "napi_util.h"
#include "owned_copy.h"
#include "../core/cuda_api.h"
#include "../kernels/cdpo/cdpo_linear.h"
#include "../kernels/logprobs/logprobs.h"

namespace vt {
namespace addon {
namespace {

TensorArg mat(const Napi::Value& v, const char* name, std::initializer_list<DType> dts, const char* layout) {
  return contiguous_arg(v, name, dts, 2, layout);
}

TensorArg vec(const Napi::Value& v, const char* name, DType dt, int64_t n, int device) {
  TensorArg t = contiguous_arg(v, name, {dt}, 1, "[N]");
  if (t.shape[0] != n)
    throw_range("Expected " + std::to_string(n) + " elements for " + std::string(name) + " but received shape " + t.shape_str());
  if (t.storage->device != device) throw_type("Expected " + std::string(name) + " on the device of the other inputs");
  return t;
}

// Targets: i32 on the CPU, each in [0, V); copied first and validated on the copy the worker
// reads (owned_copy.h).
TensorArg targets_arg(const Napi::Value& v, int64_t N, int64_t V) {
  TensorArg t = owned_copy(vec(v, "targets", DType::I32, N, -1));
  const int32_t* p = t.ptr<int32_t>();
  for (int64_t i = 0; i < N; ++i)
    if (p[i] < 0 || p[i] >= V)
      throw_range("Expected every target in [0, " + std::to_string(V) + ") but targets[" + std::to_string(i) + "] = " +
                  std::to_string(p[i]));
  return t;
}

// The kernels compute logits / T in float32: below 1e-6 (MIN_TEMPERATURE in src/errors.ts)
// ordinary logits overflow, and a tiny T rounds to 0 in float32 (a division by zero).
float temperature_arg(const Napi::Value& v) {
  if (!v.IsNumber()) throw_type("Expected a number for temperature");
  const double t = v.As<Napi::Number>().DoubleValue();
  if (!(t >= 1e-6) || !std::isfinite(t)) throw_range("Expected a finite temperature >= 1e-6 but received " + std::to_string(t));
  return float(t);
}

// Targets on the device for CUDA calls: a device copy owned by the job.
StoragePtr device_targets(const TensorArg& t, int device) {
  StoragePtr s = storage_alloc(size_t(t.numel()) * 4, device);
  if (t.numel() > 0) cuda_memcpy(s->data, t.data(), size_t(t.numel()) * 4);
  return s;
}

// { logprobs, lse, entropy? } of a forward call.
Napi::Value forward_result(Napi::Env env, const StoragePtr& lp, const StoragePtr& ls, const StoragePtr& en) {
  Napi::Object o = Napi::Object::New(env);
  o.Set("logprobs", wrap_storage(env, lp));
  o.Set("lse", wrap_storage(env, ls));
  if (en) o.Set("entropy", wrap_storage(env, en));
  return o;
}

Napi::Value GatherLogprobs(const Napi::CallbackInfo& info) {
  TensorArg x = mat(info[0], "logits", {DType::F32}, "[N, V]");
  const int64_t N = x.shape[0], V = x.shape[1];
  if (V < 1) throw_range("Expected a vocabulary of at least 1 for logits but received shape " + x.shape_str());
  TensorArg tg = targets_arg(info[1], N, V);
  const float T = temperature_arg(info[2]);
  const bool want_ent = opt_bool(info[3], false);
  const bool async = opt_bool(info[4], false);
  const int device = x.storage->device;
  StoragePtr lp = storage_alloc(size_t(N) * 4, device), ls = storage_alloc(size_t(N) * 4, device);
  StoragePtr en = want_ent ? storage_alloc(size_t(N) * 4, device) : nullptr;
  StoragePtr keep_x = x.storage, keep_t = tg.storage;
  const float* px = x.ptr<float>();
  const int32_t* pt = tg.ptr<int32_t>();
  return run_job(
      info.Env(), async,
      [=] {
        (void)keep_x;
        (void)keep_t;
        float* e = en ? static_cast<float*>(en->data) : nullptr;
        if (device >= 0) {
          StoragePtr dt = device_targets(tg, device);
          gather_logprobs_cuda(px, N, V, V, static_cast<int32_t*>(dt->data), T, static_cast<float*>(lp->data),
                               static_cast<float*>(ls->data), e, device);
        } else {
          gather_logprobs_cpu(px, N, V, V, pt, T, static_cast<float*>(lp->data), static_cast<float*>(ls->data), e);
        }
      },
      [=](Napi::Env env) -> Napi::Value { return forward_result(env, lp, ls, en); });
}

Napi::Value GatherLogprobsBackward(const Napi::CallbackInfo& info) {
  TensorArg x = mat(info[0], "logits", {DType::F32}, "[N, V]");
  const int64_t N = x.shape[0], V = x.shape[1];
  const int device = x.storage->device;
  TensorArg tg = targets_arg(info[1], N, V);
  TensorArg ls = vec(info[2], "lse", DType::F32, N, device);
  TensorArg dl = vec(info[3], "dLogprobs", DType::F32, N, device);
  const float T = temperature_arg(info[4]);
  const bool async = opt_bool(info[6], false);
  StoragePtr out;
  bool given = false;
  float* pout = nullptr;
  if (!info[5].IsNull() && !info[5].IsUndefined()) {
    TensorArg o = mat(info[5], "out", {DType::F32}, "[N, V]");
    if (o.shape != x.shape) throw_range("Expected out of shape " + x.shape_str() + " but received " + o.shape_str());
    if (o.storage->device != device) throw_type("Expected out on the device of logits");
    out = o.storage;
    pout = o.ptr<float>();
    given = true;
  } else {
    out = storage_alloc(size_t(N) * size_t(V) * 4, device);
    pout = static_cast<float*>(out->data);
  }
  StoragePtr k1 = x.storage, k2 = tg.storage, k3 = ls.storage, k4 = dl.storage;
  const float* px = x.ptr<float>();
  const int32_t* pt = tg.ptr<int32_t>();
  const float *pl = ls.ptr<float>(), *pd = dl.ptr<float>();
  return run_job(
      info.Env(), async,
      [=] {
        (void)k1, (void)k2, (void)k3, (void)k4, (void)out;
        if (device >= 0) {
          StoragePtr dt = device_targets(tg, device);
          gather_logprobs_backward_cuda(px, N, V, V, static_cast<int32_t*>(dt->data), pl, pd, T, pout, device);
        } else {
          gather_logprobs_backward_cpu(px, N, V, V, pt, pl, pd, T, pout);
        }
      },
      [=](Napi::Env env) -> Napi::Value { return given ? env.Undefined() : Napi::Value(wrap_storage(env, out)); });
}

struct LinearInputs {
  TensorArg hidden, weight, targets;
  std::optional<TensorArg> bias;
  LinearLogprobsArgs args;
  int device = -1;
};

// Optional tile sizes (tokens per pass, weight rows per tile): tuning and tests.
void tile_args(LinearLogprobsArgs& a, const Napi::Value& tokens, const Napi::Value& vocab) {
  if (tokens.IsNumber()) a.token_block = std::max<int64_t>(1, tokens.As<Napi::Number>().Int64Value());
  if (vocab.IsNumber()) a.vocab_chunk = std::max<int64_t>(16, vocab.As<Napi::Number>().Int64Value());
}

LinearInputs linear_inputs(const Napi::CallbackInfo& info) {
  LinearInputs in;
  in.hidden = mat(info[0], "hidden", {DType::F32}, "[N, H]");
  in.weight = mat(info[1], "weight", {DType::F32, DType::BF16, DType::F16}, "[V, H]");
  const int64_t N = in.hidden.shape[0], H = in.hidden.shape[1], V = in.weight.shape[0];
  if (in.weight.shape[1] != H)
    throw_range("Expected weight of shape [V, " + std::to_string(H) + "] (H of hidden) but received " + in.weight.shape_str());
  if (V < 1) throw_range("Expected a vocabulary of at least 1 for weight but received shape " + in.weight.shape_str());
  in.device = in.hidden.storage->device;
  if (in.weight.storage->device != in.device) throw_type("Expected weight on the device of hidden");
  in.targets = targets_arg(info[2], N, V);
  if (!info[3].IsNull() && !info[3].IsUndefined()) in.bias = vec(info[3], "bias", DType::F32, V, in.device);
  LinearLogprobsArgs& a = in.args;
  a.hidden = in.hidden.ptr<float>();
  a.weight = in.weight.data();
  a.wdtype = in.weight.dtype;
  a.bias = in.bias ? in.bias->ptr<float>() : nullptr;
  a.tgt = in.targets.ptr<int32_t>();
  a.N = N;
  a.H = H;
  a.V = V;
  a.temperature = temperature_arg(info[4]);
  return in;
}

Napi::Value LinearLogprobs(const Napi::CallbackInfo& info) {
  LinearInputs in = linear_inputs(info);
  const bool want_ent = opt_bool(info[5], false);
  const bool async = opt_bool(info[6], false);
  tile_args(in.args, info[7], info[8]);
  in.args.bf16 = precision_arg(info[9], in.device);
  const int64_t N = in.args.N;
  const int device = in.device;
  StoragePtr lp = storage_alloc(size_t(N) * 4, device), ls = storage_alloc(size_t(N) * 4, device);
  StoragePtr en = want_ent ? storage_alloc(size_t(N) * 4, device) : nullptr;
  auto keep = std::make_shared<LinearInputs>(in);
  return run_job(
      info.Env(), async,
      [=] {
        float* e = en ? static_cast<float*>(en->data) : nullptr;
        if (device >= 0) {
          LinearLogprobsArgs a = keep->args;
          StoragePtr dt = device_targets(keep->targets, device);
          a.tgt = static_cast<int32_t*>(dt->data);
          linear_logprobs_cuda(a, static_cast<float*>(lp->data), static_cast<float*>(ls->data), e, device);
        } else {
          linear_logprobs_cpu(keep->args, static_cast<float*>(lp->data), static_cast<float*>(ls->data), e);
        }
      },
      [=](Napi::Env env) -> Napi::Value { return forward_result(env, lp, ls, en); });
}

// The weight-gradient argument of the LM-head backward forms: false (a frozen head: none), null or
// undefined (made here), or a given f32 [V, H] tensor on the device of hidden (added to or written).
struct WeightGradArg {
  StoragePtr storage;
  float* ptr = nullptr;
  bool given = false;
};
WeightGradArg weight_grad_arg(const Napi::Value& v, int64_t V, int64_t H, int device) {
  WeightGradArg w;
  if (v.IsBoolean() && !v.As<Napi::Boolean>().Value()) return w;
  if (!v.IsNull() && !v.IsUndefined()) {
    TensorArg g = mat(v, "dWeight", {DType::F32}, "[V, H]");
    if (g.shape[0] != V || g.shape[1] != H)
      throw_range("Expected dWeight of shape [" + std::to_string(V) + ", " + std::to_string(H) + "] but received " + g.shape_str());
    if (g.storage->device != device) throw_type("Expected dWeight on the device of hidden");
    w.storage = g.storage;
    w.ptr = g.ptr<float>();
    w.given = true;
  } else {
    w.storage = storage_alloc(size_t(V) * size_t(H) * 4, device);
    w.ptr = static_cast<float*>(w.storage->data);
  }
  return w;
}

Napi::Value LinearLogprobsBackward(const Napi::CallbackInfo& info) {
  LinearInputs in = linear_inputs(info);  // info[4] is the temperature
  const int64_t N = in.args.N, H = in.args.H, V = in.args.V;
  const int device = in.device;
  TensorArg ls = vec(info[5], "lse", DType::F32, N, device);
  TensorArg dl = vec(info[6], "dLogprobs", DType::F32, N, device);
  const bool async = opt_bool(info[8], false);
  tile_args(in.args, info[9], info[10]);
  in.args.bf16 = precision_arg(info[12], device);
  const WeightGradArg wg = weight_grad_arg(info[7], V, H, device);
  const StoragePtr dw = wg.storage;
  float* pdw = wg.ptr;
  const bool given = wg.given;
  // a given dWeight is added to unless accumulate (info[11]) is false: then it is overwritten
  const bool accumulate = given && opt_bool(info[11], true);
  StoragePtr dh = storage_alloc(size_t(N) * size_t(H) * 4, device);
  StoragePtr db = in.bias ? storage_alloc(size_t(V) * 4, device) : nullptr;
  auto keep = std::make_shared<LinearInputs>(in);
  StoragePtr k1 = ls.storage, k2 = dl.storage;
  const float *pl = ls.ptr<float>(), *pd = dl.ptr<float>();
  return run_job(
      info.Env(), async,
      [=] {
        (void)k1, (void)k2;
        float* pdb = db ? static_cast<float*>(db->data) : nullptr;
        if (device >= 0) {
          LinearLogprobsArgs a = keep->args;
          StoragePtr dt = device_targets(keep->targets, device);
          a.tgt = static_cast<int32_t*>(dt->data);
          linear_logprobs_backward_cuda(a, pl, pd, static_cast<float*>(dh->data), pdw, pdb, accumulate, device);
        } else {
          linear_logprobs_backward_cpu(keep->args, pl, pd, static_cast<float*>(dh->data), pdw, pdb, accumulate);
        }
      },
      [=](Napi::Env env) -> Napi::Value {
        Napi::Object o = Napi::Object::New(env);
        o.Set("dHidden", wrap_storage(env, dh));
        if (!given && dw) o.Set("dWeight", wrap_storage(env, dw));
        if (db) o.Set("dBias", wrap_storage(env, db));
        return o;
      });
}

// linearLogprobsWithGrad(hidden, weight, targets, null, temperature, dLogprobs, dWeight|null|false, async,
//   accumulate, opts, precision) -> { logp, lse, dHidden, dWeight (when made here) }: forward and backward in
// one pass for a dL/dlogp known before the forward (fused_head_cpu; CPU, f32 weight: the
// TypeScript layer calls the two-call form otherwise).
Napi::Value LinearLogprobsWithGrad(const Napi::CallbackInfo& info) {
  LinearInputs in = linear_inputs(info);  // info[3] bias is not taken: pass null
  if (in.bias) throw_type("linearLogprobsWithGrad takes no bias");
  if (in.device >= 0) throw_type("linearLogprobsWithGrad runs on the CPU");
  if (in.weight.dtype != DType::F32) throw_type("Expected weight of dtype f32");
  require_contiguous(in.hidden);
  require_contiguous(in.weight);
  const int64_t N = in.args.N, H = in.args.H, V = in.args.V;
  TensorArg dl = vec(info[5], "dLogprobs", DType::F32, N, -1);
  const bool async = opt_bool(info[7], false);
  const WeightGradArg wg = weight_grad_arg(info[6], V, H, -1);
  const StoragePtr dw = wg.storage;
  float* pdw = wg.ptr;
  const bool given = wg.given;
  FusedHeadArgs a;
  a.hidden = in.args.hidden;
  a.weight = static_cast<const float*>(in.args.weight);
  a.targets = in.args.tgt;
  a.N = N;
  a.H = H;
  a.V = V;
  a.temperature = in.args.temperature;
  a.accumulate = given && opt_bool(info[8], true);
  opt_knob(info[9], "cacheBytes", a.cache_bytes, 0);
  opt_knob(info[9], "tokenBlock", a.token_block, 1);
  opt_knob(info[9], "vocabChunk", a.vocab_chunk, 1);
  a.bf16 = precision_arg(info[10], -1);
  StoragePtr dh = storage_alloc(size_t(std::max<int64_t>(N * H, 1)) * 4, -1);
  StoragePtr lp = storage_alloc(size_t(std::max<int64_t>(N, 1)) * 4, -1), ls = storage_alloc(size_t(std::max<int64_t>(N, 1)) * 4, -1);
  auto keep = std::make_shared<LinearInputs>(in);
  StoragePtr k1 = dl.storage;
  const float* pd = dl.ptr<float>();
  return run_job(
      info.Env(), async,
      [=] {
        (void)keep, (void)k1;
        ScratchBuffer<float> dlogp{size_t(std::max<int64_t>(N, 1))};
        fused_head_cpu(a, static_cast<float*>(dh->data), pdw, static_cast<float*>(lp->data), static_cast<float*>(ls->data), dlogp.data(),
                       false, nullptr, [&](int64_t b, int64_t e, const float*, float* d) { std::copy(pd + b, pd + e, d); });
      },
      [=](Napi::Env env) -> Napi::Value {
        Napi::Object o = forward_result(env, lp, ls, nullptr).As<Napi::Object>();
        o.Set("dHidden", wrap_storage(env, dh));
        if (!given && dw) o.Set("dWeight", wrap_storage(env, dw));
        return o;
      });
}

void Init(Napi::Env env, Napi::Object exports) {
  exports.Set("gatherLogprobs", fn(env, "gatherLogprobs", GatherLogprobs));
  exports.Set("gatherLogprobsBackward", fn(env, "gatherLogprobsBackward", GatherLogprobsBackward));
  exports.Set("linearLogprobs", fn(env, "linearLogprobs", LinearLogprobs));
  exports.Set("linearLogprobsBackward", fn(env, "linearLogprobsBackward", LinearLogprobsBackward));
  exports.Set("linearLogprobsWithGrad", fn(env, "linearLogprobsWithGrad", LinearLogprobsWithGrad));
}

Register reg(&Init);

}  // namespace
}  // namespace addon
}  // namespace vt
