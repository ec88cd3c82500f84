// What the AVX-512 GEMM kernels share (gemm_avx512.cc for f32 panels, gemm_bf16_avx512.cc for
// panels of bf16 pairs): the lane mask, the 12 x 32 tile's frame around a kernel's k loop (C
// prefetch, the alpha/beta store, the dispatch on the row count) and the 16 x 16 register
// transpose of 32-bit lanes.
// Include it inside a file's AVX-512 target region (VT_AVX512_BEGIN or its own pragma), after
// <immintrin.h>: its static inline functions are compiled for that target.
#pragma once
#include <cstdint>

namespace vt {
namespace detail {

// The first n of 16 lanes (none for n <= 0, all for n >= 16).
static inline __mmask16 lanes(int n) { return n <= 0 ? __mmask16(0) : n >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << n) - 1); }

// C rows of an R-row tile, prefetched before the k loop: they are read (beta != 0) or written only
// after it, and a tile's rows lie ldc apart, on separate pages for large N.
template <int R>
static inline void prefetch_tile_rows(const float* c, int64_t ldc) {
  for (int i = 0; i < R; ++i) {
    _mm_prefetch(reinterpret_cast<const char*>(c + i * ldc), _MM_HINT_T0);
    _mm_prefetch(reinterpret_cast<const char*>(c + i * ldc + 16), _MM_HINT_T0);
  }
}

// C (R x n corner of a 32-wide tile) = alpha * acc + beta * C; C is not read when beta == 0.
template <int R>
static inline void store_tile_rows(const __m512 (&acc)[R][2], float* c, int64_t ldc, float alpha, float beta, int n) {
  const __m512 va = _mm512_set1_ps(alpha), vb = _mm512_set1_ps(beta);
  const __mmask16 m0 = lanes(n), m1 = lanes(n - 16);
  for (int i = 0; i < R; ++i) {
    float* ci = c + i * ldc;
    __m512 r0 = _mm512_mul_ps(va, acc[i][0]), r1 = _mm512_mul_ps(va, acc[i][1]);
    if (beta != 0.0f) {
      r0 = _mm512_fmadd_ps(vb, _mm512_maskz_loadu_ps(m0, ci), r0);
      r1 = _mm512_fmadd_ps(vb, _mm512_maskz_loadu_ps(m1, ci + 16), r1);
    }
    _mm512_mask_storeu_ps(ci, m0, r0);
    _mm512_mask_storeu_ps(ci + 16, m1, r1);
  }
}

// Kernel::run<R>(args...) for a tile of m rows (1 to 12; 12 for more): the row count is a template
// argument so that the accumulators stay in registers.
template <class Kernel, class... Args>
static inline void run_rows(int m, Args... args) {
  switch (m) {
    case 1: return Kernel::template run<1>(args...);
    case 2: return Kernel::template run<2>(args...);
    case 3: return Kernel::template run<3>(args...);
    case 4: return Kernel::template run<4>(args...);
    case 5: return Kernel::template run<5>(args...);
    case 6: return Kernel::template run<6>(args...);
    case 7: return Kernel::template run<7>(args...);
    case 8: return Kernel::template run<8>(args...);
    case 9: return Kernel::template run<9>(args...);
    case 10: return Kernel::template run<10>(args...);
    case 11: return Kernel::template run<11>(args...);
    default: return Kernel::template run<12>(args...);
  }
}

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
