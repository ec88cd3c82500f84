// AVX2 + FMA kernels of the builtin GEMM (gemm_kernels.h): the 6 x 16 microkernel and the packers.
// Compiled for AVX2 only inside VT_AVX2_BEGIN/END; gemm.cc calls them only when cpu() allows.
#include <cstdint>
#include <cstring>

#include "gemm_kernels.h"
#include "simd.h"

#if VT_X86
#include <immintrin.h>

VT_AVX2_BEGIN
namespace vt {
namespace detail {
namespace {

constexpr int MR = 6, NR = 16;

// Lanes j < n of a vector of 8 (n clamped to [0, 8]), as a maskload/maskstore mask.
inline __m256i lanes(int n) {
  n = n < 0 ? 0 : n > 8 ? 8 : n;
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

// R rows of the 6 x 16 tile: 2R accumulators + 2 B vectors + 1 broadcast (15 of 16 ymm at R = 6).
// Two FMAs per loaded B pair per row keep both FMA ports busy (Zen 3: 2 FMA/cycle).
template <int R>
void ukr(int64_t kc, const float* ap, const float* bp, float* c, int64_t ldc, float alpha, float beta, int n) {
  // Named accumulators, not an array: with `__m256 acc[R][2]` GCC 12 kept the array in memory and
  // stored all 12 accumulators on every k step (42 instead of ~100 GFLOP/s on one Zen 4 core).
  __m256 c00 = _mm256_setzero_ps(), c01 = c00, c10 = c00, c11 = c00, c20 = c00, c21 = c00;
  __m256 c30 = c00, c31 = c00, c40 = c00, c41 = c00, c50 = c00, c51 = c00;
#define VT_ROW(i)                                                   \
  if constexpr (R > i) {                                            \
    const __m256 a = _mm256_broadcast_ss(ap + i);                   \
    c##i##0 = _mm256_fmadd_ps(a, b0, c##i##0);                      \
    c##i##1 = _mm256_fmadd_ps(a, b1, c##i##1);                      \
  }
  for (int64_t k = 0; k < kc; ++k) {
    const __m256 b0 = _mm256_load_ps(bp), b1 = _mm256_load_ps(bp + 8);
    VT_ROW(0) VT_ROW(1) VT_ROW(2) VT_ROW(3) VT_ROW(4) VT_ROW(5)
    ap += MR;
    bp += NR;
  }
#undef VT_ROW
  const __m256 acc[6][2] = {{c00, c01}, {c10, c11}, {c20, c21}, {c30, c31}, {c40, c41}, {c50, c51}};
  __m256 res[R][2];
  const __m256 va = _mm256_set1_ps(alpha), vb = _mm256_set1_ps(beta);
  for (int i = 0; i < R; ++i) {
    res[i][0] = _mm256_mul_ps(va, acc[i][0]);
    res[i][1] = _mm256_mul_ps(va, acc[i][1]);
  }
  if (n == NR) {
    for (int i = 0; i < R; ++i) {
      float* ci = c + i * ldc;
      __m256 r0 = res[i][0], r1 = res[i][1];
      if (beta != 0.0f) {
        r0 = _mm256_fmadd_ps(vb, _mm256_loadu_ps(ci), r0);
        r1 = _mm256_fmadd_ps(vb, _mm256_loadu_ps(ci + 8), r1);
      }
      _mm256_storeu_ps(ci, r0);
      _mm256_storeu_ps(ci + 8, r1);
    }
    return;
  }
  const __m256i m0 = lanes(n), m1 = lanes(n - 8);
  for (int i = 0; i < R; ++i) {
    float* ci = c + i * ldc;
    __m256 r0 = res[i][0], r1 = res[i][1];
    if (beta != 0.0f) {
      r0 = _mm256_fmadd_ps(vb, _mm256_maskload_ps(ci, m0), r0);
      r1 = _mm256_fmadd_ps(vb, _mm256_maskload_ps(ci + 8, m1), r1);
    }
    _mm256_maskstore_ps(ci, m0, r0);
    _mm256_maskstore_ps(ci + 8, m1, r1);
  }
}

void ukr_any(int64_t kc, const float* ap, const float* bp, float* c, int64_t ldc, float alpha, float beta, int m,
             int n) {
  switch (m) {
    case 1: return ukr<1>(kc, ap, bp, c, ldc, alpha, beta, n);
    case 2: return ukr<2>(kc, ap, bp, c, ldc, alpha, beta, n);
    case 3: return ukr<3>(kc, ap, bp, c, ldc, alpha, beta, n);
    case 4: return ukr<4>(kc, ap, bp, c, ldc, alpha, beta, n);
    case 5: return ukr<5>(kc, ap, bp, c, ldc, alpha, beta, n);
    default: return ukr<6>(kc, ap, bp, c, ldc, alpha, beta, n);
  }
}

// In place: r[c] (row c of an 8 x 8 block) becomes column c.
inline void transpose8(__m256 r[8]) {
  __m256 t[8];
  for (int i = 0; i < 4; ++i) {
    t[2 * i] = _mm256_unpacklo_ps(r[2 * i], r[2 * i + 1]);
    t[2 * i + 1] = _mm256_unpackhi_ps(r[2 * i], r[2 * i + 1]);
  }
  // s[4i + c], 128-bit lane L: rows 4i..4i+3 of column 4L + c.
  __m256 s[8];
  for (int i = 0; i < 2; ++i) {
    const __m256d a = _mm256_castps_pd(t[4 * i]), b = _mm256_castps_pd(t[4 * i + 2]);
    const __m256d c = _mm256_castps_pd(t[4 * i + 1]), d = _mm256_castps_pd(t[4 * i + 3]);
    s[4 * i + 0] = _mm256_castpd_ps(_mm256_unpacklo_pd(a, b));
    s[4 * i + 1] = _mm256_castpd_ps(_mm256_unpackhi_pd(a, b));
    s[4 * i + 2] = _mm256_castpd_ps(_mm256_unpacklo_pd(c, d));
    s[4 * i + 3] = _mm256_castpd_ps(_mm256_unpackhi_pd(c, d));
  }
  for (int c = 0; c < 4; ++c) {
    r[c] = _mm256_permute2f128_ps(s[c], s[4 + c], 0x20);
    r[4 + c] = _mm256_permute2f128_ps(s[c], s[4 + c], 0x31);
  }
}

// Groups of 8 rows, 8 values of k at a time: masked loads for the k tail, zero rows past `rows`,
// and only the panel's W lanes stored.
void pack_trans(const float* src, int64_t ld, int64_t rows, int64_t kc, float* out, int W) {
  for (int g = 0; g < W; g += 8) {
    const int valid = int(rows - g < 0 ? 0 : rows - g > 8 ? 8 : rows - g);
    const int width = W - g < 8 ? W - g : 8;
    const __m256i store_mask = lanes(width);
    for (int64_t k0 = 0; k0 < kc; k0 += 8) {
      const int kn = int(kc - k0 < 8 ? kc - k0 : 8);
      const __m256i kmask = lanes(kn);
      __m256 r[8];
      for (int i = 0; i < 8; ++i) {
        const float* p = src + (g + i) * ld + k0;
        r[i] = i >= valid ? _mm256_setzero_ps() : kn == 8 ? _mm256_loadu_ps(p) : _mm256_maskload_ps(p, kmask);
      }
      transpose8(r);
      float* o = out + k0 * W + g;
      if (width == 8) {
        for (int k = 0; k < kn; ++k) _mm256_storeu_ps(o + k * W, r[k]);
      } else {
        for (int k = 0; k < kn; ++k) _mm256_maskstore_ps(o + k * W, store_mask, r[k]);
      }
    }
  }
}

void pack_copy(const float* src, int64_t ld, int64_t kc, int64_t cols, float* out, int W) {
  if (cols == W && W == NR) {
    for (int64_t k = 0; k < kc; ++k) {
      _mm256_storeu_ps(out + k * NR, _mm256_loadu_ps(src + k * ld));
      _mm256_storeu_ps(out + k * NR + 8, _mm256_loadu_ps(src + k * ld + 8));
    }
    return;
  }
  gemm_pack_copy_scalar(src, ld, kc, cols, out, W);
}

}  // namespace

// KC 512, MC 60 (packed A 120 KiB: half the 256 KiB L2 of a Haswell), NC 1536 (packed B 3 MiB).
// At the AVX2 level on one Zen 4 core: 1024^3 92 -> 102 GFLOP/s against KC 256 / MC 120, the
// LM-head tile 87 -> 96 (OpenBLAS Haswell kernels on the same core: 105 and 96).
GemmKernels gemm_kernels_avx2() { return {MR, NR, 512, 60, 1536, ukr_any, pack_copy, pack_trans}; }

}  // namespace detail
}  // namespace vt
VT_AVX2_END

#else
namespace vt {
namespace detail {
GemmKernels gemm_kernels_avx2() { return gemm_kernels_scalar(); }
}  // namespace detail
}  // namespace vt
#endif
