// Per-element math of RMSNorm, shared by the CPU path and the CUDA kernels (VT_HD).
//   forward  y_c = x_c * r * w_c,          r = 1 / sqrt(sum_c x_c^2 / C + eps)
//   backward with g_c = dy_c * w_c and m = sum_c g_c x_c / C:
//            dx_c = r * (g_c - x_c * r^2 * m),   dw_c += dy_c * x_c * r
#pragma once
#include <cmath>

#include "../core/hostdevice.h"

namespace vt {

// r from the row's sum of squares (accumulated in double by the caller).
VT_HD float rms_rstd(double sumsq, long long C, float eps) { return float(1.0 / sqrt(sumsq / double(C) + double(eps))); }
VT_HD float rms_forward_elem(float x, float r, float w) { return (x * r) * w; }
// m: sum_c dy_c w_c x_c / C of the row (double accumulated by the caller).
VT_HD float rms_backward_elem(float dy, float w, float x, float r, double m) {
  return r * (dy * w - x * r * r * float(m));
}

}  // namespace vt
