// RMSNorm on the CPU (norm.h): the row sums through the shared vector primitives, the element
// math from norm_math.h.
#include <algorithm>
#include <vector>

#include "../core/parallel.h"
#include "../core/storage.h"
#include "../core/vec.h"
#include "norm.h"
#include "norm_math.h"

namespace vt {

namespace {
// The weight as f32 (bf16/f16 widened once per call; C is small).
std::vector<float> widen_weight(WeightRef w, int64_t C) {
  std::vector<float> ww(size_t(C), 1.0f);
  if (w)
    for (int64_t c = 0; c < C; c++) ww[size_t(c)] = load_f32(w.data, w.dtype, c);
  return ww;
}
void forward_rows(float* y, float* rstd, const float* x, const float* ww, float eps, int64_t C, int64_t t0, int64_t t1) {
  for (int64_t t = t0; t < t1; t++) {
    const float* xr = x + t * C;
    float* yr = y + t * C;
    const float r = rms_rstd(vec_sumsq(xr, C), C, eps);
    if (rstd) rstd[t] = r;
    for (int64_t c = 0; c < C; c++) yr[c] = rms_forward_elem(xr[c], r, ww[c]);
  }
}
}  // namespace

void rmsnorm_forward_rows(float* y, float* rstd, const float* x, WeightRef w, float eps, int64_t C, int64_t t0,
                          int64_t t1) {
  if (t0 >= t1) return;
  if (w && w.dtype == DType::F32) {
    forward_rows(y, rstd, x, static_cast<const float*>(w.data), eps, C, t0, t1);
    return;
  }
  const std::vector<float> ww = widen_weight(w, C);
  forward_rows(y, rstd, x, ww.data(), eps, C, t0, t1);
}

void rmsnorm_forward_cpu(float* y, float* rstd, const float* x, WeightRef w, float eps, int64_t T, int64_t C) {
  const std::vector<float> ww = widen_weight(w, C);
  parallel_for(T, 16, [&](int64_t t0, int64_t t1) { forward_rows(y, rstd, x, ww.data(), eps, C, t0, t1); });
}

void rmsnorm_backward_cpu(float* dx, float* dw, const float* dy, const float* x, const float* rstd, WeightRef w,
                          int64_t T, int64_t C, bool accumulate_dx) {
  if (T <= 0) return;
  const std::vector<float> ww = widen_weight(w, C);
  // dw: one partial row per block of 64 rows, summed in block order afterwards.
  constexpr int64_t kBlock = 64;
  const int64_t nb = (T + kBlock - 1) / kBlock;
  ScratchBuffer<double> part(dw ? size_t(nb * C) : 0);
  parallel_for(nb, 1, [&](int64_t b0, int64_t b1) {
    for (int64_t b = b0; b < b1; b++) {
      double* pw = dw ? part.data() + b * C : nullptr;
      if (pw)
        for (int64_t c = 0; c < C; c++) pw[c] = 0.0;
      for (int64_t t = b * kBlock; t < std::min(T, (b + 1) * kBlock); t++) {
        const float* xr = x + t * C;
        const float* gr = dy + t * C;
        const float r = rstd[t];
        if (dx) {
          double m = 0.0;
          for (int64_t c = 0; c < C; c++) m += double(gr[c]) * ww[size_t(c)] * xr[c];
          m /= double(C);
          float* o = dx + t * C;
          for (int64_t c = 0; c < C; c++) {
            const float v = rms_backward_elem(gr[c], ww[size_t(c)], xr[c], r, m);
            o[c] = accumulate_dx ? o[c] + v : v;
          }
        }
        if (pw)
          for (int64_t c = 0; c < C; c++) pw[c] += double(gr[c]) * xr[c] * r;
      }
    }
  });
  if (dw)
    for (int64_t b = 0; b < nb; b++)
      for (int64_t c = 0; c < C; c++) dw[c] += float(part[size_t(b * C + c)]);
}

}  // namespace vt
