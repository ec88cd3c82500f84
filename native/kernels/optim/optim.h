// The optimizer family: AdamW over flat f32 buffers (a model's parameter store: master weights,
// gradients and both moments in one layout), the gradient's squared norm and scaling for
// clipping. CPU here; CUDA forms in optim.cu. Memory-bound: one pass, 16 bytes read and 12
// written per parameter for the step.
#pragma once
#include <cstdint>

#include "optim_math.h"

namespace vt {

// One run of parameters sharing a weight decay: [offset, offset + numel) of the flat buffers.
struct OptimSegment {
  int64_t offset = 0, numel = 0;
  float weight_decay = 0.0f;
};

// AdamW on every segment (s.weight_decay is ignored: each segment has its own).
void adamw_step_cpu(float* p, float* m, float* v, const float* g, const OptimSegment* segs, int64_t nseg,
                    const AdamWScalars& s);
// sum of g^2 over the segments, in double, in a fixed order (NaN or inf when any g is).
double grad_sumsq_cpu(const float* g, const OptimSegment* segs, int64_t nseg);
// g *= scale over the segments.
void grad_scale_cpu(float* g, const OptimSegment* segs, int64_t nseg, float scale);

// The SIMD spans adamw_step_cpu dispatches to (adamw_elem's arithmetic in the same order; the
// compiler may fuse a multiply and an add, so levels can differ in the last bit).
void adamw_span_avx2(float* p, float* m, float* v, const float* g, int64_t n, const AdamWScalars& s, float decay,
                     float step_size, float inv_sqrt_bc2);
void adamw_span_avx512(float* p, float* m, float* v, const float* g, int64_t n, const AdamWScalars& s, float decay,
                       float step_size, float inv_sqrt_bc2);

// CUDA forms (buffers on `device`, segments on the host).
void adamw_step_cuda(float* p, float* m, float* v, const float* g, const OptimSegment* segs, int64_t nseg,
                     const AdamWScalars& s, int device);
double grad_sumsq_cuda(const float* g, const OptimSegment* segs, int64_t nseg, int device);
void grad_scale_cuda(float* g, const OptimSegment* segs, int64_t nseg, float scale, int device);

}  // namespace vt
