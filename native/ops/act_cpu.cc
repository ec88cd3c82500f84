// Activations on the CPU (act.h): scalar spans from act_math.h, SIMD spans for SwiGLU (its exp
// runs over tokens x intermediate elements per layer, about 2.5 M per 512-token layer of a
// 0.5B model: scalar expf there cost a quarter of the layer's GEMM time), run-time dispatch.
#include "../core/parallel.h"
#include "../core/simd.h"
#include "act.h"
#include "act_math.h"

namespace vt {

void swiglu_span_scalar(float* y, const float* g, const float* u, int64_t n) {
  for (int64_t i = 0; i < n; i++) y[i] = swiglu_elem(g[i], u[i]);
}
void swiglu_grad_span_scalar(float* dg, float* du, const float* dy, const float* g, const float* u, int64_t n) {
  for (int64_t i = 0; i < n; i++) {
    float a, b;
    swiglu_grad_elem(dy[i], g[i], u[i], a, b);
    dg[i] = a;
    du[i] = b;
  }
}

namespace {
void swiglu_span(float* y, const float* g, const float* u, int64_t n) {
  if (cpu().use_avx512) swiglu_span_avx512(y, g, u, n);
  else if (cpu().use_avx2) swiglu_span_avx2(y, g, u, n);
  else swiglu_span_scalar(y, g, u, n);
}
void swiglu_grad_span(float* dg, float* du, const float* dy, const float* g, const float* u, int64_t n) {
  if (cpu().use_avx512) swiglu_grad_span_avx512(dg, du, dy, g, u, n);
  else if (cpu().use_avx2) swiglu_grad_span_avx2(dg, du, dy, g, u, n);
  else swiglu_grad_span_scalar(dg, du, dy, g, u, n);
}
}  // namespace

void swiglu_forward_cpu(float* y, const float* g, const float* u, int64_t n) {
  parallel_for(n, 4096, [&](int64_t i0, int64_t i1) { swiglu_span(y + i0, g + i0, u + i0, i1 - i0); });
}
void swiglu_backward_cpu(float* dg, float* du, const float* dy, const float* g, const float* u, int64_t n) {
  parallel_for(n, 4096, [&](int64_t i0, int64_t i1) { swiglu_grad_span(dg + i0, du + i0, dy + i0, g + i0, u + i0, i1 - i0); });
}
void swiglu_forward_cols(float* y, const float* g, const float* u, int64_t ld, int64_t T, int64_t f0, int64_t f1) {
  if (f0 >= f1) return;
  for (int64_t t = 0; t < T; t++) swiglu_span(y + t * ld + f0, g + t * ld + f0, u + t * ld + f0, f1 - f0);
}
void gelu_forward_cpu(float* y, const float* x, int64_t n) {
  parallel_for(n, 4096, [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; i++) y[i] = gelu_elem(x[i]);
  });
}
void gelu_backward_cpu(float* dx, const float* dy, const float* x, int64_t n) {
  parallel_for(n, 4096, [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; i++) dx[i] = gelu_grad_elem(dy[i], x[i]);
  });
}

}  // namespace vt
