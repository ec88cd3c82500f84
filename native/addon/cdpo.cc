// N-API boundary of the CDPO family: argument checks and jobs only, the math is in cdpo_*.
//   cdpoLoss(logp, old|null, ref|null, bias|null, adv, offsets, opts, async, out|null)
//     -> { loss, dlogp: Storage (absent when out was given), klRef, klBias, clipLow, clipHigh, ratioMean, tokens }
//   groupAdvantages(rewards, groupSize, scale, eps, async) -> Storage (f32 [B])
// The TS layer (src/kernels/cdpo.ts) validates first with the public names; these checks repeat
// the ones that guard memory safety.
#include <cmath>
#include <string>

#include "napi_util.h"
#include "cdpo_args.h"
#include "owned_copy.h"

namespace vt {
namespace addon {

namespace {

double opt_num(const Napi::Object& o, const char* key, double dflt) {
  Napi::Value v = o.Get(key);
  if (v.IsUndefined() || v.IsNull()) return dflt;
  if (!v.IsNumber()) throw_type(std::string("Expected a number for ") + key);
  return v.As<Napi::Number>().DoubleValue();
}

TensorArg vec_arg(const Napi::Value& v, const std::string& name, DType dt) {
  TensorArg t = tensor_arg(v, name);
  require_dtype(t, {dt});
  require_ndim(t, 1, "[n]");
  require_contiguous(t);
  return t;
}

}  // namespace

CdpoArgs cdpo_args(const Napi::CallbackInfo& info, int first, int64_t N, int device, const char* logp_name) {
  CdpoArgs a;
  auto opt_vec = [&](int k, const char* name) -> std::optional<TensorArg> {
    if (info[k].IsNull() || info[k].IsUndefined()) return std::nullopt;
    TensorArg t = vec_arg(info[k], name, DType::F32);
    if (t.shape[0] != N)
      throw_range("Expected " + std::to_string(N) + " elements (one per token, as " + logp_name + ") for " + name +
                  " but received shape " + t.shape_str());
    if (t.storage->device != device) throw_type(std::string("Expected ") + name + " on the device of " + logp_name);
    return t;
  };
  a.old = opt_vec(first, "oldLogprobs");
  a.ref = opt_vec(first + 1, "refLogprobs");
  a.bias = opt_vec(first + 2, "biasLogprobs");
  a.adv = vec_arg(info[first + 3], "advantages", DType::F32);
  // Validated on the copy the worker reads (owned_copy.h).
  a.off = owned_copy(vec_arg(info[first + 4], "seqOffsets", DType::I32));
  if (a.adv.storage->device != device) throw_type(std::string("Expected advantages on the device of ") + logp_name);
  const int64_t B = a.off.shape[0] - 1;
  if (B < 1)
    throw_range("Expected at least one completion (seqOffsets of length >= 2) for seqOffsets but received shape " +
                a.off.shape_str());
  if (a.adv.shape[0] != B)
    throw_range("Expected " + std::to_string(B) + " elements (one per completion) for advantages but received shape " +
                a.adv.shape_str());
  const int32_t* off = a.off.ptr<int32_t>();
  if (off[0] != 0) throw_range("Expected seqOffsets[0] = 0 but received " + std::to_string(off[0]));
  for (int64_t i = 0; i < B; ++i)
    if (off[i + 1] < off[i])
      throw_range("Expected non-decreasing seqOffsets but seqOffsets[" + std::to_string(i + 1) + "] = " +
                  std::to_string(off[i + 1]) + " < seqOffsets[" + std::to_string(i) + "] = " + std::to_string(off[i]));
  if (off[B] != N)
    throw_range("Expected seqOffsets[" + std::to_string(B) + "] = " + std::to_string(N) + " (the token count of " +
                logp_name + ") but received " + std::to_string(off[B]));
  int64_t longest = 0;
  for (int64_t i = 0; i < B; ++i) longest = std::max<int64_t>(longest, off[i + 1] - off[i]);

  if (!info[first + 5].IsObject()) throw_type("Expected an options object");
  Napi::Object o = info[first + 5].As<Napi::Object>();
  CdpoParams& p = a.p;
  p.N = N;
  p.B = B;
  p.beta_ref = opt_num(o, "betaRef", 0);
  p.beta_bias = opt_num(o, "betaBias", a.bias ? 0.01 : 0);
  p.kl_clamp = opt_num(o, "klClamp", 11);
  p.eps_low = opt_num(o, "epsLow", 0.2);
  p.eps_high = opt_num(o, "epsHigh", 0.28);
  const double delta = opt_num(o, "delta", NAN);
  p.has_delta = !std::isnan(delta);
  p.delta = p.has_delta ? delta : 0;
  const double lt = opt_num(o, "lossType", 0);
  if (!(lt == 0 || lt == 1 || lt == 2 || lt == 3)) throw_range("Expected lossType code 0..3");
  p.loss_type = CdpoLossType(int32_t(lt));
  p.seq_level = opt_bool(o.Get("seqLevel"), false);
  if (!(p.beta_ref >= 0 && std::isfinite(p.beta_ref))) throw_range("Expected a finite number >= 0 for betaRef");
  if (!(p.beta_bias >= 0 && std::isfinite(p.beta_bias))) throw_range("Expected a finite number >= 0 for betaBias");
  if (!(p.kl_clamp > 0)) throw_range("Expected a number > 0 for klClamp");
  if (!(p.eps_low >= 0 && p.eps_low <= 1)) throw_range("Expected a number in [0, 1] for epsLow");
  if (!(p.eps_high >= 0 && std::isfinite(p.eps_high))) throw_range("Expected a finite number >= 0 for epsHigh");
  if (p.has_delta && !(p.delta > 0 && std::isfinite(p.delta))) throw_range("Expected a finite number > 0 for delta");
  if (p.beta_ref > 0 && !a.ref) throw_type("Expected refLogprobs when betaRef > 0");
  if (p.beta_bias > 0 && !a.bias) throw_type("Expected biasLogprobs when betaBias > 0");
  if (p.loss_type == CdpoLossType::DrGrpo) {
    p.norm = opt_num(o, "maxCompletionLength", double(std::max<int64_t>(longest, 1)));
    if (!(p.norm >= double(longest) && p.norm >= 1 && std::floor(p.norm) == p.norm))
      throw_range("Expected an integer >= the longest completion (" + std::to_string(longest) + ") and >= 1 for maxCompletionLength");
  } else if (p.loss_type == CdpoLossType::Dapo) {
    p.norm = opt_num(o, "activeTokens", double(std::max<int64_t>(N, 1)));
    if (!(p.norm >= double(N) && p.norm >= 1 && std::floor(p.norm) == p.norm))
      throw_range("Expected an integer >= the token count (" + std::to_string(N) + ") and >= 1 for activeTokens");
  }
  p.old_logp = a.old ? a.old->ptr<float>() : nullptr;
  p.ref_logp = a.ref ? a.ref->ptr<float>() : nullptr;
  p.bias_logp = a.bias ? a.bias->ptr<float>() : nullptr;
  p.adv = a.adv.ptr<float>();
  p.offsets = off;
  return a;
}

Napi::Object cdpo_result_object(Napi::Env env, const CdpoResult& r, bool has_ref, bool has_bias) {
  Napi::Object o = Napi::Object::New(env);
  o.Set("loss", r.loss);
  o.Set("klRef", has_ref ? Napi::Value(Napi::Number::New(env, r.kl_ref)) : env.Null());
  o.Set("klBias", has_bias ? Napi::Value(Napi::Number::New(env, r.kl_bias)) : env.Null());
  o.Set("clipLow", r.clip_low);
  o.Set("clipHigh", r.clip_high);
  o.Set("ratioMean", r.ratio_mean);
  o.Set("tokens", double(r.tokens));
  return o;
}

namespace {

Napi::Value CdpoLoss(const Napi::CallbackInfo& info) {
  TensorArg logp = vec_arg(info[0], "logprobs", DType::F32);
  const int device = logp.storage->device;
  const int64_t N = logp.shape[0];
  auto args = std::make_shared<CdpoArgs>(cdpo_args(info, 1, N, device, "logprobs"));
  args->p.logp = logp.ptr<float>();
  bool async = opt_bool(info[7], false);
  // out (info[8]): a caller's [N] f32 tensor for the gradient, else a new one
  StoragePtr out;
  float* d = nullptr;
  const bool given_out = !info[8].IsNull() && !info[8].IsUndefined();
  if (given_out) {
    TensorArg o = vec_arg(info[8], "out", DType::F32);
    if (o.shape[0] != N) throw_range("Expected out of shape [" + std::to_string(N) + "] but received " + o.shape_str());
    if (o.storage->device != device) throw_type("Expected out on the device of logprobs");
    out = o.storage;
    d = o.ptr<float>();
  } else {
    out = storage_alloc(size_t(std::max<int64_t>(N, 1)) * sizeof(float), device);
    d = static_cast<float*>(out->data);
  }
  auto res = std::make_shared<CdpoResult>();
  auto keep = logp.storage;
  return run_job(
      info.Env(), async,
      [=] {
        (void)keep;
        *res = device >= 0 ? cdpo_loss_cuda(d, args->p, device) : cdpo_loss_cpu(d, args->p);
      },
      [=](Napi::Env env) -> Napi::Value {
        Napi::Object o = cdpo_result_object(env, *res, bool(args->ref), bool(args->bias));
        if (!given_out) o.Set("dlogp", wrap_storage(env, out));
        return o;
      });
}

Napi::Value GroupAdvantages(const Napi::CallbackInfo& info) {
  // Checked finite on the copy the worker reads (owned_copy.h).
  TensorArg r = owned_copy(vec_arg(info[0], "rewards", DType::F32));
  const int64_t B = r.shape[0];
  const double G = info[1].IsNumber() ? info[1].As<Napi::Number>().DoubleValue() : NAN;
  if (!(G >= 1 && std::floor(G) == G)) throw_range("Expected an integer >= 1 for groupSize");
  if (B < 1) throw_range("Expected at least one reward for rewards but received shape " + r.shape_str());
  if (B % int64_t(G) != 0)
    throw_range("Expected a multiple of groupSize (" + std::to_string(int64_t(G)) + ") rewards but received " + std::to_string(B));
  const double sc = info[2].IsNumber() ? info[2].As<Napi::Number>().DoubleValue() : NAN;
  if (!(sc == 0 || sc == 1 || sc == 2)) throw_range("Expected scale code 0..2");
  const double eps = info[3].IsNumber() ? info[3].As<Napi::Number>().DoubleValue() : NAN;
  if (!(eps >= 0 && std::isfinite(eps))) throw_range("Expected a finite number >= 0 for eps");
  const float* pr = r.ptr<float>();
  for (int64_t i = 0; i < B; ++i)
    if (!std::isfinite(pr[i])) throw_range("Expected finite rewards but rewards[" + std::to_string(i) + "] is " + std::to_string(pr[i]));
  bool async = opt_bool(info[4], false);
  StoragePtr out = storage_alloc(size_t(B) * sizeof(float));
  auto keep = r.storage;
  const int64_t g = int64_t(G);
  return run_job(
      info.Env(), async,
      [=] { group_advantages_cpu(static_cast<float*>(out->data), pr, B, g, AdvantageScale(int32_t(sc)), eps); (void)keep; },
      [out](Napi::Env env) -> Napi::Value { return wrap_storage(env, out); });
}

void Init(Napi::Env env, Napi::Object exports) {
  exports.Set("cdpoLoss", fn(env, "cdpoLoss", CdpoLoss));
  exports.Set("groupAdvantages", fn(env, "groupAdvantages", GroupAdvantages));
}

Register reg(&Init);

}  // namespace
}  // namespace addon
}  // namespace vt
