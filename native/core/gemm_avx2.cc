// AVX2 and AVX-512 microkernels of the builtin GEMM (compiled for those ISAs only inside their
// BEGIN/END regions; called only when cpu() says the level is in use).
#include <cstdint>

#include "gemm.h"
#include "simd.h"

#if VT_X86
#include <immintrin.h>

VT_AVX2_BEGIN
namespace vt {
namespace detail {

// 6 x 16 tile: 12 accumulators + 2 B vectors + 1 broadcast = 15 of the 16 ymm registers.
// Two FMAs per loaded B pair per row keep both FMA ports busy (Zen 3: 2 FMA/cycle).
void gemm_ukr_avx2(int64_t kc, const float* ap, const float* bp, float* c, int64_t ldc, float alpha, float beta) {
  __m256 c00 = _mm256_setzero_ps(), c01 = _mm256_setzero_ps();
  __m256 c10 = _mm256_setzero_ps(), c11 = _mm256_setzero_ps();
  __m256 c20 = _mm256_setzero_ps(), c21 = _mm256_setzero_ps();
  __m256 c30 = _mm256_setzero_ps(), c31 = _mm256_setzero_ps();
  __m256 c40 = _mm256_setzero_ps(), c41 = _mm256_setzero_ps();
  __m256 c50 = _mm256_setzero_ps(), c51 = _mm256_setzero_ps();
  for (int64_t k = 0; k < kc; ++k) {
    const __m256 b0 = _mm256_load_ps(bp), b1 = _mm256_load_ps(bp + 8);
    __m256 a;
    a = _mm256_broadcast_ss(ap + 0); c00 = _mm256_fmadd_ps(a, b0, c00); c01 = _mm256_fmadd_ps(a, b1, c01);
    a = _mm256_broadcast_ss(ap + 1); c10 = _mm256_fmadd_ps(a, b0, c10); c11 = _mm256_fmadd_ps(a, b1, c11);
    a = _mm256_broadcast_ss(ap + 2); c20 = _mm256_fmadd_ps(a, b0, c20); c21 = _mm256_fmadd_ps(a, b1, c21);
    a = _mm256_broadcast_ss(ap + 3); c30 = _mm256_fmadd_ps(a, b0, c30); c31 = _mm256_fmadd_ps(a, b1, c31);
    a = _mm256_broadcast_ss(ap + 4); c40 = _mm256_fmadd_ps(a, b0, c40); c41 = _mm256_fmadd_ps(a, b1, c41);
    a = _mm256_broadcast_ss(ap + 5); c50 = _mm256_fmadd_ps(a, b0, c50); c51 = _mm256_fmadd_ps(a, b1, c51);
    ap += 6;
    bp += 16;
  }
  const __m256 va = _mm256_set1_ps(alpha);
  __m256 acc[12] = {c00, c01, c10, c11, c20, c21, c30, c31, c40, c41, c50, c51};
  if (beta == 0.0f) {
    for (int i = 0; i < 6; ++i) {
      _mm256_storeu_ps(c + i * ldc, _mm256_mul_ps(va, acc[2 * i]));
      _mm256_storeu_ps(c + i * ldc + 8, _mm256_mul_ps(va, acc[2 * i + 1]));
    }
  } else {
    const __m256 vb = _mm256_set1_ps(beta);
    for (int i = 0; i < 6; ++i) {
      float* ci = c + i * ldc;
      _mm256_storeu_ps(ci, _mm256_fmadd_ps(va, acc[2 * i], _mm256_mul_ps(vb, _mm256_loadu_ps(ci))));
      _mm256_storeu_ps(ci + 8, _mm256_fmadd_ps(va, acc[2 * i + 1], _mm256_mul_ps(vb, _mm256_loadu_ps(ci + 8))));
    }
  }
}

}  // namespace detail
}  // namespace vt
VT_AVX2_END

VT_AVX512_BEGIN
namespace vt {
namespace detail {

// 12 x 32 tile: 24 zmm accumulators + 2 B vectors + 1 broadcast = 27 of 32 registers, 12 FMAs
// per B load pair. Measured at 1024^3, 2 threads, AVX-512 Xeon: 283 GFLOP/s (AVX2 6x16: 158;
// OpenBLAS SkylakeX: 321; onnxruntime 1.30: 212-231 in the same runs).
void gemm_ukr_avx512_12x32(int64_t kc, const float* ap, const float* bp, float* c, int64_t ldc, float alpha,
                           float beta) {
  __m512 acc[12][2];
  for (int i = 0; i < 12; ++i) acc[i][0] = acc[i][1] = _mm512_setzero_ps();
  for (int64_t k = 0; k < kc; ++k) {
    const __m512 b0 = _mm512_load_ps(bp), b1 = _mm512_load_ps(bp + 16);
    for (int i = 0; i < 12; ++i) {
      const __m512 a = _mm512_set1_ps(ap[i]);
      acc[i][0] = _mm512_fmadd_ps(a, b0, acc[i][0]);
      acc[i][1] = _mm512_fmadd_ps(a, b1, acc[i][1]);
    }
    ap += 12;
    bp += 32;
  }
  const __m512 va = _mm512_set1_ps(alpha);
  if (beta == 0.0f) {
    for (int i = 0; i < 12; ++i) {
      _mm512_storeu_ps(c + i * ldc, _mm512_mul_ps(va, acc[i][0]));
      _mm512_storeu_ps(c + i * ldc + 16, _mm512_mul_ps(va, acc[i][1]));
    }
  } else {
    const __m512 vb = _mm512_set1_ps(beta);
    for (int i = 0; i < 12; ++i) {
      float* ci = c + i * ldc;
      _mm512_storeu_ps(ci, _mm512_fmadd_ps(va, acc[i][0], _mm512_mul_ps(vb, _mm512_loadu_ps(ci))));
      _mm512_storeu_ps(ci + 16, _mm512_fmadd_ps(va, acc[i][1], _mm512_mul_ps(vb, _mm512_loadu_ps(ci + 16))));
    }
  }
}

}  // namespace detail
}  // namespace vt
VT_AVX512_END

#else
namespace vt {
namespace detail {
void gemm_ukr_avx2(int64_t kc, const float* ap, const float* bp, float* c, int64_t ldc, float alpha, float beta) {
  gemm_ukr_scalar(kc, ap, bp, c, ldc, alpha, beta);
}
void gemm_ukr_avx512_12x32(int64_t, const float*, const float*, float*, int64_t, float, float) {}
}  // namespace detail
}  // namespace vt
#endif
