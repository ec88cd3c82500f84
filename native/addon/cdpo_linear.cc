// N-API boundary of linearCdpo (the CDPO loss fused with the LM head):
//   linearCdpo(hidden, weight, targets, temperature, old|null, ref|null, bias|null, adv, offsets, opts, async, dweight|null, accumulate, precision)
//     -> { loss, dhidden: Storage, dweight: Storage (absent when dweight was given: accumulated into it),
//          logp: Storage, klRef, klBias, clipLow, clipHigh, ratioMean, tokens }
#include <cmath>
#include <string>
#include <tuple>

#include "napi_util.h"
#include "cdpo_args.h"
#include "owned_copy.h"
#include "../kernels/cdpo/cdpo_linear.h"

namespace vt {
namespace addon {
namespace {

Napi::Value LinearCdpo(const Napi::CallbackInfo& info) {
  TensorArg hidden = tensor_arg(info[0], "hidden"), weight = tensor_arg(info[1], "weight"), targets = tensor_arg(info[2], "targets");
  require_dtype(hidden, {DType::F32});
  require_dtype(weight, {DType::F32});
  require_dtype(targets, {DType::I32});
  require_ndim(hidden, 2, "[N, H]");
  require_ndim(weight, 2, "[V, H]");
  require_ndim(targets, 1, "[N]");
  require_contiguous(hidden);
  require_contiguous(weight);
  require_contiguous(targets);
  // Validated on the copy the worker reads (owned_copy.h).
  targets = owned_copy(targets);
  const int device = hidden.storage->device;
  if (weight.storage->device != device) throw_type("Expected weight on the device of hidden");
  const int64_t N = hidden.shape[0], H = hidden.shape[1], V = weight.shape[0];
  if (weight.shape[1] != H)
    throw_range("Expected weight of shape [V, " + std::to_string(H) + "] (H of hidden) but received " + weight.shape_str());
  if (V < 1) throw_range("Expected a vocabulary of at least 1 for weight but received shape " + weight.shape_str());
  if (targets.shape[0] != N)
    throw_range("Expected " + std::to_string(N) + " elements for targets but received shape " + targets.shape_str());
  const int32_t* tg = targets.ptr<int32_t>();
  for (int64_t i = 0; i < N; ++i)
    if (tg[i] < 0 || tg[i] >= V)
      throw_range("Expected token ids in [0, " + std::to_string(V) + ") for targets but targets[" + std::to_string(i) + "] = " + std::to_string(tg[i]));
  const double temp = info[3].IsNumber() ? info[3].As<Napi::Number>().DoubleValue() : NAN;
  // float32 logits / T overflow below 1e-6 (MIN_TEMPERATURE in src/errors.ts).
  if (!(temp >= 1e-6 && std::isfinite(temp))) throw_range("Expected a finite number >= 1e-6 for temperature");
  auto args = std::make_shared<CdpoArgs>(cdpo_args(info, 4, N, device, "hidden"));
  const bool async = opt_bool(info[10], false);
  auto lp = std::make_shared<LinearCdpoParams>();
  lp->hidden = hidden.ptr<float>();
  lp->weight = weight.ptr<float>();
  lp->targets = tg;
  lp->H = H;
  lp->V = V;
  lp->temperature = float(temp);
  lp->loss = args->p;
  // A GPU caches the logits of many more tokens (1 GiB). cacheBytes, tokenBlock and vocabChunk are
  // development knobs of the tests (small tiles cover the tiling logic).
  if (device >= 0) lp->cache_bytes = int64_t(1) << 30;
  opt_knob(info[9], "cacheBytes", lp->cache_bytes, 0);
  opt_knob(info[9], "tokenBlock", lp->token_block, 1);
  opt_knob(info[9], "vocabChunk", lp->vocab_chunk, 1);
  lp->bf16 = precision_arg(info[13], device);
  StoragePtr dh = storage_alloc(size_t(std::max<int64_t>(N * H, 1)) * sizeof(float), device);
  StoragePtr dw;
  float* dw_ptr = nullptr;
  const bool given_dw = !info[11].IsNull() && !info[11].IsUndefined();
  if (given_dw) {
    TensorArg g = tensor_arg(info[11], "dWeight");
    require_dtype(g, {DType::F32});
    require_contiguous(g);
    if (g.storage->device != device) throw_type("Expected dWeight on the device of hidden");
    if (g.ndim() != 2 || g.shape[0] != V || g.shape[1] != H)
      throw_range("Expected dWeight of shape [" + std::to_string(V) + ", " + std::to_string(H) + "] but received " + g.shape_str());
    dw = g.storage;
    dw_ptr = g.ptr<float>();
    lp->accumulate = opt_bool(info[12], true);  // false: overwrite the given buffer
  } else {
    dw = storage_alloc(size_t(V * H) * sizeof(float), device);
    dw_ptr = static_cast<float*>(dw->data);
  }
  StoragePtr logp = storage_alloc(size_t(std::max<int64_t>(N, 1)) * sizeof(float), device);
  auto res = std::make_shared<CdpoResult>();
  auto keep = std::make_tuple(hidden.storage, weight.storage, targets.storage);
  return run_job(
      info.Env(), async,
      [=] {
        (void)keep;
        float* pdh = static_cast<float*>(dh->data);
        float* plp = static_cast<float*>(logp->data);
        *res = device >= 0 ? linear_cdpo_cuda(pdh, dw_ptr, plp, *lp, device) : linear_cdpo_cpu(pdh, dw_ptr, plp, *lp);
      },
      [=](Napi::Env env) -> Napi::Value {
        Napi::Object o = cdpo_result_object(env, *res, bool(args->ref), bool(args->bias));
        o.Set("dhidden", wrap_storage(env, dh));
        if (!given_dw) o.Set("dweight", wrap_storage(env, dw));
        o.Set("logp", wrap_storage(env, logp));
        return o;
      });
}

void Init(Napi::Env env, Napi::Object exports) { exports.Set("linearCdpo", fn(env, "linearCdpo", LinearCdpo)); }

Register reg(&Init);

}  // namespace
}  // namespace addon
}  // namespace vt
