// Per-element math of the optimizer family, shared by the CPU path and the CUDA kernels (VT_HD).
// AdamW as torch.optim.AdamW computes it (decoupled weight decay first, then the moments, then
// the bias-corrected step with eps added after the square root is divided by sqrt(bc2)):
//   p  <- p * (1 - lr * wd)
//   m  <- b1 m + (1 - b1) g          v <- b2 v + (1 - b2) g^2
//   p  <- p - (lr / bc1) * m / (sqrt(v) / sqrt(bc2) + eps),   bc_i = 1 - b_i^t
// g is the gradient times grad_scale (gradient clipping folded into the step).
#pragma once
#include <cmath>

#include "../../core/hostdevice.h"

namespace vt {

struct AdamWScalars {
  float lr = 1e-3f, beta1 = 0.9f, beta2 = 0.999f, eps = 1e-8f, weight_decay = 0.0f;
  float grad_scale = 1.0f;
  double bc1 = 1.0, bc2 = 1.0;  // bias corrections 1 - beta^t of this step
};

VT_HD void adamw_elem(float& p, float& m, float& v, float g, const AdamWScalars& s, float decay, float step_size,
                      float inv_sqrt_bc2) {
  g *= s.grad_scale;
  p *= decay;
  m = s.beta1 * m + (1.0f - s.beta1) * g;
  v = s.beta2 * v + (1.0f - s.beta2) * g * g;
  p -= step_size * m / (sqrtf(v) * inv_sqrt_bc2 + s.eps);
}

}  // namespace vt
