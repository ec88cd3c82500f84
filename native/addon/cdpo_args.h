// Shared by the N-API functions of the CDPO family (cdpo_addon.cc, cdpo_linear_addon.cc): parsing
// of the cdpoLoss arguments that follow the log-probs, and the result object.
#pragma once
#include <optional>

#include "napi_util.h"
#include "../kernels/cdpo/cdpo.h"

namespace vt {
namespace addon {

// The checked arguments; the TensorArgs hold their storages alive while a job runs.
struct CdpoArgs {
  std::optional<TensorArg> old, ref, bias;
  TensorArg adv, off;
  CdpoParams p;  // everything but p.logp
};

// Reads info[first .. first + 5] = old|null, ref|null, bias|null, adv, offsets, opts for N tokens
// on `device` (offsets on the CPU); logp_name names the tensor that gives N in messages.
CdpoArgs cdpo_args(const Napi::CallbackInfo& info, int first, int64_t N, int device, const char* logp_name);

// { loss, klRef, klBias, clipLow, clipHigh, ratioMean, tokens } (klRef / klBias null when absent).
Napi::Object cdpo_result_object(Napi::Env env, const CdpoResult& r, bool has_ref, bool has_bias);

}  // namespace addon
}  // namespace vt
