// What the AVX-512 GEMM packers share (gemm_avx512.cc for f32 panels, gemm_bf16_avx512.cc for
// panels of bf16 pairs): the lane mask and the 16 x 16 register transpose of 32-bit lanes.
// Include it inside a file's AVX-512 target region (VT_AVX512_BEGIN or its own pragma), after
// <immintrin.h>: its static inline functions are compiled for that target.
#pragma once

namespace vt {
namespace detail {

// The first n of 16 lanes (none for n <= 0, all for n >= 16).
static inline __mmask16 lanes(int n) { return n <= 0 ? __mmask16(0) : n >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << n) - 1); }

// In place: r[c] (row c of a 16 x 16 block) becomes column c. 48 shuffles for 256 floats.
static inline void transpose16(__m512 r[16]) {
  __m512 t[16];
  for (int i = 0; i < 8; ++i) {
    t[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);
    t[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);
  }
  // s[4i + c], 128-bit lane L: rows 4i..4i+3 of column 4L + c.
  __m512 s[16];
  for (int i = 0; i < 4; ++i) {
    const __m512d a = _mm512_castps_pd(t[4 * i]), b = _mm512_castps_pd(t[4 * i + 2]);
    const __m512d c = _mm512_castps_pd(t[4 * i + 1]), d = _mm512_castps_pd(t[4 * i + 3]);
    s[4 * i + 0] = _mm512_castpd_ps(_mm512_unpacklo_pd(a, b));
    s[4 * i + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(a, b));
    s[4 * i + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(c, d));
    s[4 * i + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(c, d));
  }
  // Column 4L + c = lane L of s[c], s[4 + c], s[8 + c], s[12 + c].
  for (int c = 0; c < 4; ++c) {
    const __m512 v = _mm512_shuffle_f32x4(s[c], s[4 + c], 0x44), w = _mm512_shuffle_f32x4(s[c], s[4 + c], 0xEE);
    const __m512 v2 = _mm512_shuffle_f32x4(s[8 + c], s[12 + c], 0x44), w2 = _mm512_shuffle_f32x4(s[8 + c], s[12 + c], 0xEE);
    r[c] = _mm512_shuffle_f32x4(v, v2, 0x88);
    r[4 + c] = _mm512_shuffle_f32x4(v, v2, 0xDD);
    r[8 + c] = _mm512_shuffle_f32x4(w, w2, 0x88);
    r[12 + c] = _mm512_shuffle_f32x4(w, w2, 0xDD);
  }
}

}  // namespace detail
}  // namespace vt
