// AVX2 tile kernels of the fused attention (flash_kern.h), for CPUs without AVX-512: a small
// register-blocked GEMM (4 rows x up to 32 columns, 16 accumulators) and a shifted exp.
#include <cmath>
#include <cstdint>

#include "../../core/simd.h"
#include "attention_kern.h"

#if VT_X86
#include <immintrin.h>

VT_AVX2_BEGIN
#define VT_VEXP_AVX2
#include "../../core/vexp.h"
namespace vt {
namespace flash {
namespace detail {
namespace {

inline __m256i lane_mask(int64_t n) {  // first n of 8 lanes
  const __m256i idx = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(int(n)), idx);
}

// GCC keeps c[][] in registers only when every loop over it is fully unrolled.
#define VT_UNROLL _Pragma("GCC unroll 16")
template <int MI, int NV>
inline void block(int64_t K, const float* A, int64_t lda, const float* B, int64_t ldb, float* C, int64_t ldc, bool acc,
                  __m256i last, const float* rs) {
  const __m256i full = _mm256_set1_epi32(-1);
  __m256 c[MI][NV];
  VT_UNROLL for (int r = 0; r < MI; ++r) {
    VT_UNROLL for (int v = 0; v < NV; ++v) c[r][v] = _mm256_setzero_ps();
  }
  if (acc) {
    VT_UNROLL for (int r = 0; r < MI; ++r) {
      VT_UNROLL for (int v = 0; v < NV; ++v) c[r][v] = _mm256_maskload_ps(C + r * ldc + 8 * v, v == NV - 1 ? last : full);
    }
    if (rs) {
      VT_UNROLL for (int r = 0; r < MI; ++r) {
        const __m256 f = _mm256_set1_ps(rs[r]);
        VT_UNROLL for (int v = 0; v < NV; ++v) c[r][v] = _mm256_mul_ps(c[r][v], f);
      }
    }
  }
  for (int64_t kk = 0; kk < K; ++kk) {
    __m256 b[NV];
    VT_UNROLL for (int v = 0; v < NV; ++v) b[v] = _mm256_maskload_ps(B + kk * ldb + 8 * v, v == NV - 1 ? last : full);
    VT_UNROLL for (int r = 0; r < MI; ++r) {
      const __m256 a = _mm256_broadcast_ss(A + r * lda + kk);
      VT_UNROLL for (int v = 0; v < NV; ++v) c[r][v] = _mm256_fmadd_ps(a, b[v], c[r][v]);
    }
  }
  VT_UNROLL for (int r = 0; r < MI; ++r) {
    VT_UNROLL for (int v = 0; v < NV; ++v) _mm256_maskstore_ps(C + r * ldc + 8 * v, v == NV - 1 ? last : full, c[r][v]);
  }
}

template <int MI>
inline void rows(int nv, int64_t K, const float* A, int64_t lda, const float* B, int64_t ldb, float* C, int64_t ldc,
                 bool acc, __m256i last, const float* rs) {
  switch (nv) {
    case 1: return block<MI, 1>(K, A, lda, B, ldb, C, ldc, acc, last, rs);
    case 2: return block<MI, 2>(K, A, lda, B, ldb, C, ldc, acc, last, rs);
    case 3: return block<MI, 3>(K, A, lda, B, ldb, C, ldc, acc, last, rs);
    default: return block<MI, 4>(K, A, lda, B, ldb, C, ldc, acc, last, rs);
  }
}

}  // namespace

void nn_avx2(int64_t M, int64_t N, int64_t K, const float* A, int64_t lda, const float* B, int64_t ldb, float* C,
             int64_t ldc, bool acc, const float* row_scale) {
  for (int64_t j0 = 0; j0 < N; j0 += 32) {
    const int64_t nj = N - j0 < 32 ? N - j0 : 32;
    const int nv = int((nj + 7) / 8);
    const __m256i last = lane_mask(nj - 8 * (nv - 1));
    int64_t i0 = 0;
    for (; i0 + 4 <= M; i0 += 4) rows<4>(nv, K, A + i0 * lda, lda, B + j0, ldb, C + i0 * ldc + j0, ldc, acc, last, row_scale ? row_scale + i0 : nullptr);
    for (; i0 < M; ++i0) rows<1>(nv, K, A + i0 * lda, lda, B + j0, ldb, C + i0 * ldc + j0, ldc, acc, last, row_scale ? row_scale + i0 : nullptr);
  }
}

float row_max_avx2(const float* s, int64_t n) {
  __m256 m = _mm256_set1_ps(-INFINITY);
  int64_t j = 0;
  for (; j + 8 <= n; j += 8) m = _mm256_max_ps(m, _mm256_loadu_ps(s + j));
  alignas(32) float t[8];
  _mm256_store_ps(t, m);
  float r = t[0];
  for (int i = 1; i < 8; ++i) r = r > t[i] ? r : t[i];
  for (; j < n; ++j) r = r > s[j] ? r : s[j];
  return r;
}

float exp_shift_avx2(const float* s, float* p, int64_t n, float m) {
  const __m256 vm = _mm256_set1_ps(m), ninf = _mm256_set1_ps(-INFINITY);
  __m256 acc = _mm256_setzero_ps();
  int64_t j = 0;
  for (; j + 8 <= n; j += 8) {
    const __m256 x = _mm256_loadu_ps(s + j);
    const __m256 e = _mm256_and_ps(_mm256_cmp_ps(x, ninf, _CMP_NEQ_UQ), vexp::exp256(_mm256_sub_ps(x, vm)));  // NaN stays NaN
    _mm256_storeu_ps(p + j, e);
    acc = _mm256_add_ps(acc, e);
  }
  alignas(32) float t[8];
  _mm256_store_ps(t, acc);
  float sum = t[0] + t[1] + t[2] + t[3] + t[4] + t[5] + t[6] + t[7];
  for (; j < n; ++j) {
    p[j] = s[j] == -INFINITY ? 0.0f : std::exp(s[j] - m);
    sum += p[j];
  }
  return sum;
}

}  // namespace detail
}  // namespace flash
}  // namespace vt
VT_AVX2_END
#endif
