// Per-row online-softmax steps of the fused attention, shared by the CPU path and the CUDA
// kernels (VT_HD). A query row keeps (m, l): the running max of its scaled scores and the sum of
// exp(s - m); its output accumulator is rescaled by alpha whenever m grows.
#pragma once
#include <cmath>

#include "../../core/hostdevice.h"

namespace vt {

struct OnlineRow {
  float m;  // running max (-inf before any visible key)
  float l;  // sum of exp(s - m)
};

// Starts a new block of scores whose max is bmax: returns alpha, the factor for the old
// accumulator, and moves m to the new max. With no visible key so far and none in the block,
// alpha is 1 and m stays -inf.
VT_HD float online_rescale(OnlineRow& r, float bmax) {
  const float mn = r.m > bmax ? r.m : bmax;
  if (mn == -INFINITY) return 1.0f;
  const float alpha = r.m == -INFINITY ? 0.0f : expf(r.m - mn);
  r.l *= alpha;
  r.m = mn;
  return alpha;
}

// Probability weight of one score under the row's current max (0 for a masked score).
VT_HD float online_weight(const OnlineRow& r, float s) { return s == -INFINITY ? 0.0f : expf(s - r.m); }

// lse = m + log l; -inf when the row saw no key; NaN when a score was NaN (l != l), as a float64
// softmax of that row gives it.
VT_HD float online_lse(const OnlineRow& r) { return r.l > 0.0f || r.l != r.l ? r.m + logf(r.l) : -INFINITY; }

// The key limit of a query in a segment: keys [0, limit) are visible.
VT_HD long long visible_keys(long long iq, long long Lq, long long Lk, bool causal) {
  if (!causal) return Lk;
  const long long lim = iq + (Lk - Lq) + 1;
  return lim < 0 ? 0 : (lim > Lk ? Lk : lim);
}

// Backward: p = exp(s - lse) recomputed (0 when masked or the row saw nothing), and
// ds = p (dp - D) with D = rowsum(dO * O).
VT_HD float recompute_p(float s, float lse) { return (s == -INFINITY || lse == -INFINITY) ? 0.0f : expf(s - lse); }
VT_HD float score_grad(float p, float dp, float drow) { return p * (dp - drow); }

}  // namespace vt
