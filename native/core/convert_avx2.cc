// F16C / AVX2 bulk conversions. The hardware rounds to nearest even like half.h but quiets NaNs,
// where half.h keeps numpy's encodings: blocks holding a NaN take the scalar path (rare), the
// rest stay one instruction per 8 values. Tests compare both paths on all 65536 patterns.
#include <cstdint>

#include "convert.h"
#include "half.h"
#include "simd.h"

#if VT_X86
#include <immintrin.h>

VT_AVX2_BEGIN
namespace vt {
namespace detail {

void f32_to_f16_avx2(const float* src, uint16_t* dst, int64_t n) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    __m256 v = _mm256_loadu_ps(src + i);
    if (_mm256_movemask_ps(_mm256_cmp_ps(v, v, _CMP_UNORD_Q)) != 0) {
      for (int k = 0; k < 8; ++k) dst[i + k] = f32_to_f16(src[i + k]);
      continue;
    }
    __m128i h = _mm256_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    _mm_storeu_si128(reinterpret_cast<__m128i*>(dst + i), h);
  }
  for (; i < n; ++i) dst[i] = f32_to_f16(src[i]);
}

void f16_to_f32_avx2(const uint16_t* src, float* dst, int64_t n) {
  const __m128i exp_mask = _mm_set1_epi16(0x7C00);
  const __m128i man_mask = _mm_set1_epi16(0x03FF);
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(src + i));
    __m128i is_special = _mm_cmpeq_epi16(_mm_and_si128(h, exp_mask), exp_mask);
    __m128i has_man = _mm_xor_si128(_mm_cmpeq_epi16(_mm_and_si128(h, man_mask), _mm_setzero_si128()),
                                    _mm_set1_epi16(-1));
    if (_mm_movemask_epi8(_mm_and_si128(is_special, has_man)) != 0) {
      for (int k = 0; k < 8; ++k) dst[i + k] = f16_to_f32(src[i + k]);
    } else {
      _mm256_storeu_ps(dst + i, _mm256_cvtph_ps(h));
    }
  }
  for (; i < n; ++i) dst[i] = f16_to_f32(src[i]);
}

void f32_to_bf16_avx2(const float* src, uint16_t* dst, int64_t n) {
  const __m256i abs_mask = _mm256_set1_epi32(0x7FFFFFFF);
  const __m256i inf = _mm256_set1_epi32(0x7F800000);
  const __m256i qnan = _mm256_set1_epi32(0x7FC0);
  const __m256i one = _mm256_set1_epi32(1);
  const __m256i bias = _mm256_set1_epi32(0x7FFF);
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    __m256i u = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(src + i));
    __m256i is_nan = _mm256_cmpgt_epi32(_mm256_and_si256(u, abs_mask), inf);
    __m256i lsb = _mm256_and_si256(_mm256_srli_epi32(u, 16), one);
    __m256i r = _mm256_srli_epi32(_mm256_add_epi32(u, _mm256_add_epi32(bias, lsb)), 16);
    r = _mm256_blendv_epi8(r, qnan, is_nan);
    // pack 8 x u32 (values < 2^16) into 8 x u16
    __m128i lo = _mm256_castsi256_si128(r), hi = _mm256_extracti128_si256(r, 1);
    _mm_storeu_si128(reinterpret_cast<__m128i*>(dst + i), _mm_packus_epi32(lo, hi));
  }
  for (; i < n; ++i) dst[i] = f32_to_bf16(src[i]);
}

void bf16_to_f32_avx2(const uint16_t* src, float* dst, int64_t n) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    __m256i w = _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(src + i)));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst + i), _mm256_slli_epi32(w, 16));
  }
  for (; i < n; ++i) dst[i] = bf16_to_f32(src[i]);
}

}  // namespace detail
}  // namespace vt
VT_AVX2_END

#else
namespace vt {
namespace detail {
void f32_to_f16_avx2(const float* s, uint16_t* d, int64_t n) { for (int64_t i = 0; i < n; ++i) d[i] = f32_to_f16(s[i]); }
void f16_to_f32_avx2(const uint16_t* s, float* d, int64_t n) { for (int64_t i = 0; i < n; ++i) d[i] = f16_to_f32(s[i]); }
void f32_to_bf16_avx2(const float* s, uint16_t* d, int64_t n) { for (int64_t i = 0; i < n; ++i) d[i] = f32_to_bf16(s[i]); }
void bf16_to_f32_avx2(const uint16_t* s, float* d, int64_t n) { for (int64_t i = 0; i < n; ++i) d[i] = bf16_to_f32(s[i]); }
}  // namespace detail
}  // namespace vt
#endif
