// Vector exp for the kernels' softmax rows. Include inside a VT_AVX512_BEGIN / VT_AVX2_BEGIN
// region (after the standard headers and <immintrin.h>); the functions are `static` so that each
// translation unit keeps its own copy compiled for its own ISA (no cross-ISA ODR merging).
//
// exp(x) = 2^n e^r with x = n ln2 + r, |r| <= ln2/2; e^r = 1 + r q(r), q of degree 4 fitted for
// relative error (max 9.5e-8 over the interval; ~2 ulp overall).
#pragma once

namespace vt {
namespace vexp {

#define VT_VEXP_POLY(PFX, T, r)                                    \
  T p = PFX##_set1_ps(0.00829032f);                                 \
  p = PFX##_fmadd_ps(p, r, PFX##_set1_ps(0.04189793f));             \
  p = PFX##_fmadd_ps(p, r, PFX##_set1_ps(0.16667636f));             \
  p = PFX##_fmadd_ps(p, r, PFX##_set1_ps(0.4999915f));              \
  p = PFX##_fmadd_ps(p, r, PFX##_set1_ps(0.9999997f));              \
  p = PFX##_fmadd_ps(p, r, PFX##_set1_ps(1.0f));

#if defined(VT_VEXP_AVX512)
// For x <= ~0 (shifted scores): no overflow clamp, no zero mask. Below -87 the result stays at
// e^-87 = 1.6e-38, the smallest normal range: never a denormal (denormal arithmetic costs a
// microcode assist per operation: with logits spread over ~100, that made row sums 5x slower),
// and no sum of values >= 1 notices it.
// A NaN input gives NaN: max/min return their second operand when either is NaN, so the
// clamps take the constant first (a NaN score or logit must not turn into a weight of e^-87).
static inline __m512 exp512_nonpos(__m512 x) {
  x = _mm512_max_ps(_mm512_set1_ps(-87.0f), x);
  const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), x);
  r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);
  VT_VEXP_POLY(_mm512, __m512, r)
  return _mm512_scalef_ps(p, n);
}

// Any x: exactly 0 below -87.3 (so -inf adds nothing), inf above 88.7.
static inline __m512 exp512(__m512 x) {
  const __mmask16 tiny = _mm512_cmp_ps_mask(x, _mm512_set1_ps(-87.3f), _CMP_LT_OQ);
  const __m512 e = exp512_nonpos(_mm512_min_ps(_mm512_set1_ps(88.7f), x));
  return _mm512_mask_mov_ps(e, tiny, _mm512_setzero_ps());
}
#endif

#if defined(VT_VEXP_AVX2)
// Any x: exactly 0 below -87.3, inf above 88.7; 2^n built in the exponent bits as two factors so
// that n = 128 stays finite where it should.
static inline __m256 exp256(__m256 x) {
  const __m256 tiny = _mm256_cmp_ps(x, _mm256_set1_ps(-87.3f), _CMP_LT_OQ);
  x = _mm256_max_ps(_mm256_set1_ps(-87.3f), x);  // constant first: NaN stays NaN (see exp512_nonpos)
  x = _mm256_min_ps(_mm256_set1_ps(88.7f), x);
  const __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x);
  r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
  VT_VEXP_POLY(_mm256, __m256, r)
  const __m256i ni = _mm256_cvtps_epi32(n);
  const __m256i h = _mm256_srai_epi32(ni, 1);
  const __m256 f1 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(h, _mm256_set1_epi32(127)), 23));
  const __m256 f2 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(_mm256_sub_epi32(ni, h), _mm256_set1_epi32(127)), 23));
  p = _mm256_mul_ps(_mm256_mul_ps(p, f1), f2);
  return _mm256_andnot_ps(tiny, p);
}
#endif

#undef VT_VEXP_POLY

}  // namespace vexp
}  // namespace vt
