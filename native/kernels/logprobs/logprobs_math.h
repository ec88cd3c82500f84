// Per-row log-softmax math of the log-prob gathering family, shared by the CPU kernels and the
// CUDA kernels (VT_HD). A row's softmax state is (m, s, t): the running max m of the scaled
// logits z, s = sum exp(z - m) and t = sum exp(z - m) * (z - m) (for the entropy; relative to
// m, so that large logits do not cancel). States of disjoint pieces of a row merge exactly, in
// any fixed order.
#pragma once
#include <cmath>

#include "../../core/hostdevice.h"

namespace vt {

struct SoftmaxState {
  double m;  // -inf for an empty or all -inf piece
  double s;
  double t;
};

VT_HD SoftmaxState softmax_state_empty() { return {-INFINITY, 0.0, 0.0}; }

// Merge b into a.
VT_HD void softmax_state_merge(SoftmaxState& a, const SoftmaxState& b) {
  if (b.m == -INFINITY) return;
  if (a.m == -INFINITY) {
    a = b;
    return;
  }
  // Moving a piece from max m_p to m: s_p r and (t_p + (m_p - m) s_p) r with r = exp(m_p - m).
  if (b.m > a.m) {
    const double d = a.m - b.m, r = exp(d);
    a.t = (a.t + d * a.s) * r + b.t;
    a.s = a.s * r + b.s;
    a.m = b.m;
  } else {
    const double d = b.m - a.m, r = exp(d);
    a.t += (b.t + d * b.s) * r;
    a.s += b.s * r;
  }
}

// log sum exp z; -inf for a row that is all -inf.
VT_HD double softmax_state_lse(const SoftmaxState& st) { return st.m == -INFINITY ? -INFINITY : st.m + log(st.s); }

// log p(target) = (z_y - m) - log s, written so that it stays exact for large |m|.
VT_HD double softmax_state_logprob(const SoftmaxState& st, double z_y) {
  if (st.m == -INFINITY) return -INFINITY;
  return (z_y - st.m) - log(st.s);
}

// Entropy -sum p log p = lse - E_p[z]; 0 for a one-hot row; NaN-free for -inf entries, NaN for a
// row with a NaN logit (h != h: the clamp of rounding below 0 must not turn NaN into 0).
VT_HD double softmax_state_entropy(const SoftmaxState& st) {
  if (st.m == -INFINITY) return 0.0;
  const double h = log(st.s) - st.t / st.s;
  return h > 0.0 || h != h ? h : 0.0;
}

// The state of a piece that holds a NaN: merged into a row, it makes the row's lse, log-probs and
// entropy NaN, as a float64 log_softmax of that row gives them.
VT_HD SoftmaxState softmax_state_nan() { return {NAN, NAN, NAN}; }

// d logp(y) / d x_v for logits x with z = x / T: (delta(v, y) - p_v) / T. Scaled by g = dL/dlogp.
VT_HD float gather_grad(float z, double lse, float g_over_t, bool is_target) {
  const float p = lse == -INFINITY ? 0.0f : float(exp(double(z) - lse));
  return g_over_t * ((is_target ? 1.0f : 0.0f) - p);
}

}  // namespace vt
