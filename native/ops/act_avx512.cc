// AVX-512 SwiGLU spans (act.h): sigmoid through the shared vector exp (core/vexp.h).
#include <immintrin.h>

#include <cstdint>

#include "../core/simd.h"
#include "act.h"

#if VT_X86
VT_AVX512_BEGIN
#define VT_VEXP_AVX512
#include "../core/vexp.h"
namespace vt {
namespace {
// sigmoid(g) = 1 / (1 + e^-g); e^-g saturates to inf for g < -88.7, giving 0 as it should.
inline __m512 sigmoid16(__m512 g) {
  const __m512 e = vexp::exp512(_mm512_sub_ps(_mm512_setzero_ps(), g));
  return _mm512_div_ps(_mm512_set1_ps(1.0f), _mm512_add_ps(_mm512_set1_ps(1.0f), e));
}
inline __mmask16 tail(int64_t left) { return left >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << left) - 1u); }
}  // namespace

void swiglu_span_avx512(float* y, const float* g, const float* u, int64_t n) {
  for (int64_t i = 0; i < n; i += 16) {
    const __mmask16 m = tail(n - i);
    const __m512 gv = _mm512_maskz_loadu_ps(m, g + i), uv = _mm512_maskz_loadu_ps(m, u + i);
    _mm512_mask_storeu_ps(y + i, m, _mm512_mul_ps(_mm512_mul_ps(gv, sigmoid16(gv)), uv));
  }
}
void swiglu_grad_span_avx512(float* dg, float* du, const float* dy, const float* g, const float* u, int64_t n) {
  const __m512 one = _mm512_set1_ps(1.0f);
  for (int64_t i = 0; i < n; i += 16) {
    const __mmask16 m = tail(n - i);
    const __m512 gv = _mm512_maskz_loadu_ps(m, g + i), uv = _mm512_maskz_loadu_ps(m, u + i);
    const __m512 d = _mm512_maskz_loadu_ps(m, dy + i);
    const __m512 s = sigmoid16(gv);
    const __m512 dgv = _mm512_mul_ps(_mm512_mul_ps(_mm512_mul_ps(d, uv), s),
                                     _mm512_fmadd_ps(gv, _mm512_sub_ps(one, s), one));
    const __m512 duv = _mm512_mul_ps(_mm512_mul_ps(d, gv), s);
    _mm512_mask_storeu_ps(dg + i, m, dgv);
    _mm512_mask_storeu_ps(du + i, m, duv);
  }
}
}  // namespace vt
VT_AVX512_END
#else
namespace vt {
void swiglu_span_avx512(float* y, const float* g, const float* u, int64_t n) { swiglu_span_scalar(y, g, u, n); }
void swiglu_grad_span_avx512(float* dg, float* du, const float* dy, const float* g, const float* u, int64_t n) {
  swiglu_grad_span_scalar(dg, du, dy, g, u, n);
}
}  // namespace vt
#endif
