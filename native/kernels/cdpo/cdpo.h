// The CDPO pull-push loss and the GRPO family (../shared/docs/cdpo.md): parameters and entry
// points. The per-token math lives in cdpo_math.h; the CPU path is cdpo_cpu.cc, the CUDA path
// cdpo_cuda.cu (cdpo_cuda_stub.cc stands in without CUDA), the fused LM-head form cdpo_linear.cc.
//
// Dimension letters: N tokens of all completions packed, B completions, H hidden, V vocabulary.
#pragma once
#include <cstdint>

#include "cdpo_math.h"

namespace vt {

// One cdpoLoss call. Pointers are on the device the call runs on (CPU or one CUDA device), except
// offsets, which the CUDA path also takes on the host (it copies them). Sizes are in elements.
struct CdpoParams {
  const float* logp = nullptr;      // (N) log-prob of each sampled token under the policy
  const float* old_logp = nullptr;  // (N) at sampling time, or nullptr: on-policy (ratio 1, with gradient)
  const float* ref_logp = nullptr;  // (N) reference model, or nullptr
  const float* bias_logp = nullptr; // (N) bias model, or nullptr
  const float* adv = nullptr;       // (B) advantage of each completion
  const int32_t* offsets = nullptr; // (B+1) completion i is tokens [offsets[i], offsets[i+1]); 0 .. N, non-decreasing
  int64_t N = 0, B = 0;
  double beta_ref = 0, beta_bias = 0.01, kl_clamp = 11, eps_low = 0.2, eps_high = 0.28;
  bool has_delta = false;
  double delta = 0;
  CdpoLossType loss_type = CdpoLossType::Grpo;
  bool seq_level = false;  // importance sampling per completion (GSPO) instead of per token
  double norm = 1;         // dr_grpo: max completion length; dapo: active tokens of the global batch

  CdpoConst<double> consts() const {
    return {beta_ref, beta_bias, kl_clamp, 1.0 - eps_low, 1.0 + eps_high, delta, has_delta};
  }
};

// Loss and token means of one call.
struct CdpoResult {
  double loss = 0;
  double kl_ref = 0, kl_bias = 0;       // mean k3 to the reference / bias model (0 when not given)
  double clip_low = 0, clip_high = 0;   // fraction of tokens clipped below (A < 0) / above (A > 0)
  double ratio_mean = 0;                // mean importance ratio
  int64_t tokens = 0;
};

// Turns the sums of cdpo_accumulate (over `tokens` tokens) into a result.
inline CdpoResult cdpo_result(const double* s, int64_t tokens) {
  CdpoResult r;
  r.loss = s[kSumLoss];
  r.tokens = tokens;
  if (tokens > 0) {
    const double inv = 1.0 / double(tokens);
    r.kl_ref = s[kSumKlRef] * inv;
    r.kl_bias = s[kSumKlBias] * inv;
    r.clip_low = s[kSumClipLow] * inv;
    r.clip_high = s[kSumClipHigh] * inv;
    r.ratio_mean = s[kSumRatio] * inv;
  }
  return r;
}

// A run of tokens of one completion (CPU): the unit the CPU paths hand to the per-token math.
struct CdpoSpan {
  const float* logp;                       // (n)
  const float *old, *ref, *bias;           // (n) each, or nullptr when not given
  float* dlogp;                            // (n) out: w * dl/dlogp
  int64_t n;
  double adv, w;                           // the completion's advantage and per-token weight
  const double* seq;                       // (3) rho, pol, dpol/drho of the completion (sequence level), or nullptr
};
// Adds the span's sums (cdpo_accumulate order per token) to sums[kNumCdpoSums]; picks the SIMD
// level in use (AVX-512, AVX2 or scalar; results agree to rounding).
void cdpo_span(const CdpoSpan& s, const CdpoConst<double>& c, double* sums);
// Sequence level: rho, pol and dpol/drho (out[3]) of a completion of n tokens from its mean log-ratio.
void cdpo_sequence(const float* logp, const float* old, int64_t n, double adv, const CdpoConst<double>& c, double* out);
namespace detail {
void cdpo_span_scalar(const CdpoSpan& s, const CdpoConst<double>& c, double* sums);
void cdpo_span_avx2(const CdpoSpan& s, const CdpoConst<double>& c, double* sums);
void cdpo_span_avx512(const CdpoSpan& s, const CdpoConst<double>& c, double* sums);
}  // namespace detail

// Writes dlogp (N) = dL/dlogp and returns the loss and metrics. CPU memory.
CdpoResult cdpo_loss_cpu(float* dlogp, const CdpoParams& p);

// The same on CUDA device `device` (p's arrays on that device except offsets, on the host).
// Throws "CUDA not compiled in" in builds without CUDA.
CdpoResult cdpo_loss_cuda(float* dlogp, const CdpoParams& p, int device);

// Group-normalised advantages (cdpo.md): A = (r - mean_group) / (std + eps), std with Bessel's
// correction over the group (scale Group) or over the whole batch (Batch), or A = r - mean_group
// (None). A group whose rewards are all equal gets exactly 0. B must be a multiple of group_size.
enum class AdvantageScale : int32_t { Group = 0, Batch = 1, None = 2 };
void group_advantages_cpu(float* adv, const float* rewards, int64_t B, int64_t group_size, AdvantageScale scale,
                          double eps);

}  // namespace vt
