// AVX2 SwiGLU spans (act.h): sigmoid through the shared vector exp (core/vexp.h); tails scalar.
#include <immintrin.h>

#include <cstdint>

#include "../core/simd.h"
#include "act.h"

#if VT_X86
VT_AVX2_BEGIN
#define VT_VEXP_AVX2
#include "../core/vexp.h"
namespace vt {
namespace {
inline __m256 sigmoid8(__m256 g) {
  const __m256 e = vexp::exp256(_mm256_sub_ps(_mm256_setzero_ps(), g));
  return _mm256_div_ps(_mm256_set1_ps(1.0f), _mm256_add_ps(_mm256_set1_ps(1.0f), e));
}
}  // namespace

void swiglu_span_avx2(float* y, const float* g, const float* u, int64_t n) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256 gv = _mm256_loadu_ps(g + i), uv = _mm256_loadu_ps(u + i);
    _mm256_storeu_ps(y + i, _mm256_mul_ps(_mm256_mul_ps(gv, sigmoid8(gv)), uv));
  }
  swiglu_span_scalar(y + i, g + i, u + i, n - i);
}
void swiglu_grad_span_avx2(float* dg, float* du, const float* dy, const float* g, const float* u, int64_t n) {
  const __m256 one = _mm256_set1_ps(1.0f);
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256 gv = _mm256_loadu_ps(g + i), uv = _mm256_loadu_ps(u + i), d = _mm256_loadu_ps(dy + i);
    const __m256 s = sigmoid8(gv);
    const __m256 dgv = _mm256_mul_ps(_mm256_mul_ps(_mm256_mul_ps(d, uv), s), _mm256_fmadd_ps(gv, _mm256_sub_ps(one, s), one));
    const __m256 duv = _mm256_mul_ps(_mm256_mul_ps(d, gv), s);
    _mm256_storeu_ps(dg + i, dgv);
    _mm256_storeu_ps(du + i, duv);
  }
  swiglu_grad_span_scalar(dg + i, du + i, dy + i, g + i, u + i, n - i);
}
}  // namespace vt
VT_AVX2_END
#else
namespace vt {
void swiglu_span_avx2(float* y, const float* g, const float* u, int64_t n) { swiglu_span_scalar(y, g, u, n); }
void swiglu_grad_span_avx2(float* dg, float* du, const float* dy, const float* g, const float* u, int64_t n) {
  swiglu_grad_span_scalar(dg, du, dy, g, u, n);
}
}  // namespace vt
#endif
