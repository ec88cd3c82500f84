// Per-token math of the CDPO pull-push loss and the GRPO family (../shared/docs/cdpo.md), shared
// by the CPU path (cdpo_cpu.cc, cdpo_linear.cc) and the CUDA kernels (cdpo_cuda.cu). Templated on
// the scalar type; both paths instantiate it with double: the advantages of a group sum to zero,
// so the loss is a small difference of O(1) terms and f32 per-token math would lose ~1e-5 of it.
//
// Per token t of completion i (lengths len_i, weights w_t from the loss type):
//   rho      = exp(logp - old)                       token-level importance sampling
//            = exp(mean_{s in i}(logp_s - old_s))    sequence level (GSPO); old missing: rho = 1
//   c1       = min(rho, delta)                       delta given (two-sided clipping), else rho
//   c2       = clamp(rho, 1 - eps_low, 1 + eps_high)
//   pol      = -min(c1 * A_i, c2 * A_i)
//   k3(q)    = exp(d) - d - 1, d = clamp(logq - logp, -kl_clamp, kl_clamp)
//   l_t      = pol + beta_ref * k3(ref) - beta_bias * k3(bias)
//   L        = sum_t w_t * l_t
// Gradients follow what autograd gives for this formula: clamp passes the gradient where the
// argument lies inside the closed interval (bounds included) and blocks it outside; an elementwise
// min whose two arguments are equal sends half the gradient to each. Since
// d rho_i / d logp_s = rho_i / len_i at sequence level and the weights are uniform within a
// completion, the gradient of the policy term is w_t * dpol/drho * rho at both levels.
#pragma once
#include <cmath>
#include <cstdint>

#include "../../core/hostdevice.h"

namespace vt {

// Loss aggregation: the per-token weight w_t.
enum class CdpoLossType : int32_t {
  Grpo = 0,    // mean over completions of the per-completion token mean: 1 / (B * len_i)
  Bnpo = 1,    // token mean over the batch: 1 / N
  DrGrpo = 2,  // 1 / (B * max_completion_length)
  Dapo = 3,    // 1 / (active tokens of the global batch)
};

// Constants of the per-token math (the options of a call).
template <class T>
struct CdpoConst {
  T beta_ref;   // pull toward the reference model (>= 0)
  T beta_bias;  // push away from the bias model (>= 0)
  T kl_clamp;   // |log-ratio| bound of the k3 estimators
  T lo, hi;     // 1 - eps_low, 1 + eps_high
  T delta;      // cap of the unclipped ratio when has_delta
  bool has_delta;
};

// pol = -min(c1 * A, c2 * A) and dpol/drho.
template <class T>
VT_HD void cdpo_policy(T rho, T adv, const CdpoConst<T>& c, T* pol, T* dpol_drho) {
  T c1 = rho, g1 = T(1);
  if (c.has_delta && rho > c.delta) { c1 = c.delta; g1 = T(0); }
  T c2 = rho, g2 = T(1);
  if (rho < c.lo) { c2 = c.lo; g2 = T(0); }
  else if (rho > c.hi) { c2 = c.hi; g2 = T(0); }
  const T p1 = c1 * adv, p2 = c2 * adv;
  if (p1 < p2) { *pol = -p1; *dpol_drho = -adv * g1; }
  else if (p2 < p1) { *pol = -p2; *dpol_drho = -adv * g2; }
  else { *pol = -p1; *dpol_drho = -adv * T(0.5) * (g1 + g2); }  // a tie (or NaN) splits the gradient
}

// k3 = exp(d) - d - 1 with d = clamp(logq - logp, -C, C), and dk3/dlogp (zero where |d| > C).
// expm1 keeps the small-d values exact (exp(d) - 1 would cancel).
template <class T>
VT_HD void cdpo_k3(T logq, T logp, T C, T* k3, T* dk3_dlogp) {
  T d = logq - logp;
  T g = T(1);
  if (d < -C) { d = -C; g = T(0); }
  else if (d > C) { d = C; g = T(0); }
  const T em1 = expm1(d);
  *k3 = em1 - d;
  *dk3_dlogp = -em1 * g;
}

// What one token contributes (weights not yet applied).
template <class T>
struct CdpoToken {
  T loss;   // l_t
  T dlogp;  // dl_t / dlogp_t (at sequence level: the token's share through rho_i)
  T k3_ref, k3_bias;
};

// The token's loss and gradient given its importance ratio and the policy term evaluated at it
// (per token, or once per completion at sequence level). ref / bias are read when has_ref /
// has_bias; the k3 values are reported even where the matching beta is 0 (for the metrics).
template <class T>
VT_HD CdpoToken<T> cdpo_token(T logp, T rho, T pol, T dpol_drho, bool has_ref, T ref, bool has_bias, T bias,
                              const CdpoConst<T>& c) {
  CdpoToken<T> o;
  o.loss = pol;
  o.dlogp = dpol_drho * rho;
  o.k3_ref = T(0);
  o.k3_bias = T(0);
  if (has_ref) {
    T k3, dk3;
    cdpo_k3(ref, logp, c.kl_clamp, &k3, &dk3);
    o.k3_ref = k3;
    o.loss += c.beta_ref * k3;
    o.dlogp += c.beta_ref * dk3;
  }
  if (has_bias) {
    T k3, dk3;
    cdpo_k3(bias, logp, c.kl_clamp, &k3, &dk3);
    o.k3_bias = k3;
    o.loss -= c.beta_bias * k3;
    o.dlogp -= c.beta_bias * dk3;
  }
  return o;
}

// Per-token weight of completion i (length len) under the loss type; norm is
// max_completion_length (dr_grpo) or the active-token count (dapo), n_tokens the batch's tokens.
template <class T>
VT_HD T cdpo_weight(CdpoLossType type, int64_t B, int64_t len, int64_t n_tokens, T norm) {
  switch (type) {
    case CdpoLossType::Grpo: return T(1) / (T(B) * T(len > 0 ? len : 1));
    case CdpoLossType::Bnpo: return T(1) / T(n_tokens > 0 ? n_tokens : 1);
    case CdpoLossType::DrGrpo: return T(1) / (T(B) * norm);
    case CdpoLossType::Dapo: return T(1) / norm;
  }
  return T(0);
}

// Sums a call reports (metrics are token means of them).
enum CdpoSum : int { kSumLoss = 0, kSumKlRef, kSumKlBias, kSumClipLow, kSumClipHigh, kSumRatio, kNumCdpoSums };

// Adds one token's contributions (weight w applied to the loss) to s[kNumCdpoSums].
template <class T, class Acc>
VT_HD void cdpo_accumulate(Acc* s, const CdpoToken<T>& t, T w, T rho, T adv, const CdpoConst<T>& c) {
  s[kSumLoss] += Acc(w * t.loss);
  s[kSumKlRef] += Acc(t.k3_ref);
  s[kSumKlBias] += Acc(t.k3_bias);
  s[kSumClipLow] += (rho < c.lo && adv < T(0)) ? Acc(1) : Acc(0);
  s[kSumClipHigh] += (rho > c.hi && adv > T(0)) ? Acc(1) : Acc(0);
  s[kSumRatio] += Acc(rho);
}

}  // namespace vt
