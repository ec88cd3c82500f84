// AVX2 AdamW span (optim.h): optim_math.h's element math, 8 lanes at a time; the tail scalar.
#include <immintrin.h>

#include <cstdint>

#include "../../core/simd.h"
#include "optim.h"

#if VT_X86
VT_AVX2_BEGIN
namespace vt {
void adamw_span_avx2(float* p, float* m, float* v, const float* g, int64_t n, const AdamWScalars& s, float decay,
                     float step_size, float inv_sqrt_bc2) {
  const __m256 b1 = _mm256_set1_ps(s.beta1), c1 = _mm256_set1_ps(1.0f - s.beta1), b2 = _mm256_set1_ps(s.beta2),
               c2 = _mm256_set1_ps(1.0f - s.beta2), gs = _mm256_set1_ps(s.grad_scale), dec = _mm256_set1_ps(decay),
               st = _mm256_set1_ps(step_size), ib = _mm256_set1_ps(inv_sqrt_bc2), eps = _mm256_set1_ps(s.eps);
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256 gv = _mm256_mul_ps(_mm256_loadu_ps(g + i), gs);
    __m256 pv = _mm256_mul_ps(_mm256_loadu_ps(p + i), dec);
    const __m256 mv = _mm256_add_ps(_mm256_mul_ps(b1, _mm256_loadu_ps(m + i)), _mm256_mul_ps(c1, gv));
    const __m256 vv = _mm256_add_ps(_mm256_mul_ps(b2, _mm256_loadu_ps(v + i)), _mm256_mul_ps(_mm256_mul_ps(c2, gv), gv));
    const __m256 den = _mm256_add_ps(_mm256_mul_ps(_mm256_sqrt_ps(vv), ib), eps);
    pv = _mm256_sub_ps(pv, _mm256_mul_ps(st, _mm256_div_ps(mv, den)));
    _mm256_storeu_ps(p + i, pv);
    _mm256_storeu_ps(m + i, mv);
    _mm256_storeu_ps(v + i, vv);
  }
  for (; i < n; i++) adamw_elem(p[i], m[i], v[i], g[i], s, decay, step_size, inv_sqrt_bc2);
}
}  // namespace vt
VT_AVX2_END
#else
namespace vt {
void adamw_span_avx2(float* p, float* m, float* v, const float* g, int64_t n, const AdamWScalars& s, float decay,
                     float step_size, float inv_sqrt_bc2) {
  for (int64_t i = 0; i < n; i++) adamw_elem(p[i], m[i], v[i], g[i], s, decay, step_size, inv_sqrt_bc2);
}
}  // namespace vt
#endif
