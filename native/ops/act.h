// Activations, forward and backward (CPU; CUDA forms in act.cu): SwiGLU (both towers' MLPs) and
// the exact GELU (the patch merger). Element-wise: outputs may alias inputs of the same index.
#pragma once
#include <cstdint>

namespace vt {

// n contiguous elements; parallel inside.
void swiglu_forward_cpu(float* y, const float* g, const float* u, int64_t n);
void swiglu_backward_cpu(float* dg, float* du, const float* dy, const float* g, const float* u, int64_t n);
void gelu_forward_cpu(float* y, const float* x, int64_t n);
void gelu_backward_cpu(float* dx, const float* dy, const float* x, int64_t n);
// Team form: columns [f0, f1) of T rows of stride ld, on the calling thread.
void swiglu_forward_cols(float* y, const float* g, const float* u, int64_t ld, int64_t T, int64_t f0, int64_t f1);

// The spans the dispatchers pick from (act_avx2.cc, act_avx512.cc: exp from core/vexp.h).
void swiglu_span_scalar(float* y, const float* g, const float* u, int64_t n);
void swiglu_span_avx2(float* y, const float* g, const float* u, int64_t n);
void swiglu_span_avx512(float* y, const float* g, const float* u, int64_t n);
void swiglu_grad_span_scalar(float* dg, float* du, const float* dy, const float* g, const float* u, int64_t n);
void swiglu_grad_span_avx2(float* dg, float* du, const float* dy, const float* g, const float* u, int64_t n);
void swiglu_grad_span_avx512(float* dg, float* du, const float* dy, const float* g, const float* u, int64_t n);

// CUDA forms (pointers on `device`).
void swiglu_forward_cuda(float* y, const float* g, const float* u, int64_t n, int device);
void swiglu_backward_cuda(float* dg, float* du, const float* dy, const float* g, const float* u, int64_t n, int device);
void gelu_forward_cuda(float* y, const float* x, int64_t n, int device);
void gelu_backward_cuda(float* dx, const float* dy, const float* x, int64_t n, int device);

}  // namespace vt
