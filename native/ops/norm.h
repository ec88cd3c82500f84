// RMSNorm over the last dimension, forward and backward (CPU; CUDA forms in norm.cu), the norm
// of every Qwen2.5-VL block (the decoder's, the vision tower's and the merger's ln_q).
// x, y, dy, dx (T, C) f32; w (C) stored as f32/bf16/f16; rstd (T) f32, saved by the forward.
#pragma once
#include <cstdint>

#include "../core/dtype.h"

namespace vt {

// y = x * rstd * w; rstd written when not null. y may alias x. Parallel inside.
void rmsnorm_forward_cpu(float* y, float* rstd, const float* x, WeightRef w, float eps, int64_t T, int64_t C);
// Rows [t0, t1) only, on the calling thread (team form).
void rmsnorm_forward_rows(float* y, float* rstd, const float* x, WeightRef w, float eps, int64_t C, int64_t t0,
                          int64_t t1);
// dx (written, or added to when accumulate_dx); dw (C) += sum_t dy * x * rstd when not null.
// The dw sums are taken over fixed row blocks and added in block order (deterministic).
void rmsnorm_backward_cpu(float* dx, float* dw, const float* dy, const float* x, const float* rstd, WeightRef w,
                          int64_t T, int64_t C, bool accumulate_dx);

// CUDA forms (pointers on `device`, w f32 or null for ones).
void rmsnorm_forward_cuda(float* y, float* rstd, const float* x, const float* w, float eps, int64_t T, int64_t C,
                          int device);
void rmsnorm_backward_cuda(float* dx, float* dw, const float* dy, const float* x, const float* rstd, const float* w,
                           int64_t T, int64_t C, bool accumulate_dx, int device);

}  // namespace vt
