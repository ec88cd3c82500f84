// Per-element math of the activations, shared by the CPU scalar path and the CUDA kernels (VT_HD).
//   SwiGLU  y = silu(g) * u,  silu(g) = g * sigmoid(g)
//           dg = dy * u * s * (1 + g * (1 - s)),  du = dy * silu(g),  s = sigmoid(g)
//   GELU    y = x/2 * (1 + erf(x / sqrt 2))       (exact form, the vision merger's nn.GELU())
//           dx = dy * (Phi(x) + x * phi(x))
#pragma once
#include <cmath>

#include "../core/hostdevice.h"

namespace vt {

VT_HD float sigmoidf_(float g) { return 1.0f / (1.0f + expf(-g)); }
VT_HD float swiglu_elem(float g, float u) { return g * sigmoidf_(g) * u; }
VT_HD void swiglu_grad_elem(float dy, float g, float u, float& dg, float& du) {
  const float s = sigmoidf_(g);
  du = dy * g * s;
  dg = dy * u * s * (1.0f + g * (1.0f - s));
}
VT_HD float gelu_elem(float x) { return 0.5f * x * (1.0f + erff(x * 0.70710678118654752f)); }
VT_HD float gelu_grad_elem(float dy, float x) {
  const float cdf = 0.5f * (1.0f + erff(x * 0.70710678118654752f));
  const float pdf = 0.39894228040143268f * expf(-0.5f * x * x);
  return dy * (cdf + x * pdf);
}

}  // namespace vt
