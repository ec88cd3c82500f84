// AVX-512 tile kernels of the fused attention (flash_kern.h): a register-blocked small GEMM
// (4 rows x up to 64 columns, 16 accumulators) and a shifted exp over score rows.
#include <cmath>
#include <cstdint>

#include "../../core/simd.h"
#include "attention_kern.h"

#if VT_X86
#include <immintrin.h>

VT_AVX512_BEGIN
#define VT_VEXP_AVX512
#include "../../core/vexp.h"
namespace vt {
namespace flash {
namespace detail {
namespace {

// GCC keeps c[][] in registers only when every loop over it is fully unrolled.
#define VT_UNROLL _Pragma("GCC unroll 16")
template <int MI, int NV>
inline void block(int64_t K, const float* A, int64_t lda, const float* B, int64_t ldb, float* C, int64_t ldc, bool acc,
                  __mmask16 last, const float* rs) {
  __m512 c[MI][NV];
  VT_UNROLL for (int r = 0; r < MI; ++r) {
    VT_UNROLL for (int v = 0; v < NV; ++v) c[r][v] = _mm512_setzero_ps();
  }
  if (acc) {
    VT_UNROLL for (int r = 0; r < MI; ++r) {
      VT_UNROLL for (int v = 0; v < NV; ++v) c[r][v] = _mm512_maskz_loadu_ps(v == NV - 1 ? last : __mmask16(0xFFFF), C + r * ldc + 16 * v);
    }
    if (rs) {
      VT_UNROLL for (int r = 0; r < MI; ++r) {
        const __m512 f = _mm512_set1_ps(rs[r]);
        VT_UNROLL for (int v = 0; v < NV; ++v) c[r][v] = _mm512_mul_ps(c[r][v], f);
      }
    }
  }
  for (int64_t kk = 0; kk < K; ++kk) {
    __m512 b[NV];
    VT_UNROLL for (int v = 0; v < NV; ++v) b[v] = _mm512_maskz_loadu_ps(v == NV - 1 ? last : __mmask16(0xFFFF), B + kk * ldb + 16 * v);
    VT_UNROLL for (int r = 0; r < MI; ++r) {
      const __m512 a = _mm512_set1_ps(A[r * lda + kk]);
      VT_UNROLL for (int v = 0; v < NV; ++v) c[r][v] = _mm512_fmadd_ps(a, b[v], c[r][v]);
    }
  }
  VT_UNROLL for (int r = 0; r < MI; ++r) {
    VT_UNROLL for (int v = 0; v < NV; ++v) _mm512_mask_storeu_ps(C + r * ldc + 16 * v, v == NV - 1 ? last : __mmask16(0xFFFF), c[r][v]);
  }
}

template <int MI>
inline void rows(int nv, int64_t K, const float* A, int64_t lda, const float* B, int64_t ldb, float* C, int64_t ldc,
                 bool acc, __mmask16 last, const float* rs) {
  switch (nv) {
    case 1: return block<MI, 1>(K, A, lda, B, ldb, C, ldc, acc, last, rs);
    case 2: return block<MI, 2>(K, A, lda, B, ldb, C, ldc, acc, last, rs);
    case 3: return block<MI, 3>(K, A, lda, B, ldb, C, ldc, acc, last, rs);
    case 4: return block<MI, 4>(K, A, lda, B, ldb, C, ldc, acc, last, rs);
    case 5: return block<MI, 5>(K, A, lda, B, ldb, C, ldc, acc, last, rs);
    default: return block<MI, 6>(K, A, lda, B, ldb, C, ldc, acc, last, rs);
  }
}

}  // namespace

void nn_avx512(int64_t M, int64_t N, int64_t K, const float* A, int64_t lda, const float* B, int64_t ldb, float* C,
               int64_t ldc, bool acc, const float* row_scale) {
  // Column blocks of up to 64 (4 rows x 4 vectors), or one block of 65..96 columns (head sizes
  // 72, 80, 96: 3 rows x 5 vectors or 2 rows x 6), so no narrow tail block wastes the FMAs.
  for (int64_t j0 = 0; j0 < N;) {
    const int64_t rest = N - j0;
    const int64_t nj = rest > 64 && rest <= 96 ? rest : (rest < 64 ? rest : 64);
    const int nv = int((nj + 15) / 16);
    const int64_t tail = nj - 16 * (nv - 1);
    const __mmask16 last = tail == 16 ? __mmask16(0xFFFF) : __mmask16((1u << tail) - 1);
    // Row blocks that fill the 32 registers: 6 x 4 vectors (24 accumulators) or 4 x 5..6.
    int64_t i0 = 0;
    if (nv <= 4) {
      for (; i0 + 6 <= M; i0 += 6) rows<6>(nv, K, A + i0 * lda, lda, B + j0, ldb, C + i0 * ldc + j0, ldc, acc, last, row_scale ? row_scale + i0 : nullptr);
      for (; i0 + 2 <= M; i0 += 2) rows<2>(nv, K, A + i0 * lda, lda, B + j0, ldb, C + i0 * ldc + j0, ldc, acc, last, row_scale ? row_scale + i0 : nullptr);
    } else {
      for (; i0 + 4 <= M; i0 += 4) rows<4>(nv, K, A + i0 * lda, lda, B + j0, ldb, C + i0 * ldc + j0, ldc, acc, last, row_scale ? row_scale + i0 : nullptr);
      for (; i0 + 2 <= M; i0 += 2) rows<2>(nv, K, A + i0 * lda, lda, B + j0, ldb, C + i0 * ldc + j0, ldc, acc, last, row_scale ? row_scale + i0 : nullptr);
    }
    for (; i0 < M; ++i0) rows<1>(nv, K, A + i0 * lda, lda, B + j0, ldb, C + i0 * ldc + j0, ldc, acc, last, row_scale ? row_scale + i0 : nullptr);
    j0 += nj;
  }
}

float row_max_avx512(const float* s, int64_t n) {
  __m512 m = _mm512_set1_ps(-INFINITY);
  for (int64_t j = 0; j < n; j += 16) {
    const __mmask16 k = n - j >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << (n - j)) - 1);
    m = _mm512_max_ps(m, _mm512_mask_loadu_ps(_mm512_set1_ps(-INFINITY), k, s + j));
  }
  return _mm512_reduce_max_ps(m);
}

void softmax_tile_avx512(const float* s, float* p, int64_t br, int64_t bc, int64_t ld, float* m, float* l, float* alpha) {
  const __m512 ninf = _mm512_set1_ps(-INFINITY);
  for (int64_t i = 0; i < br; ++i) {
    const float* si = s + i * ld;
    float* pi = p + i * ld;
    __m512 mx = ninf;
    for (int64_t j = 0; j < bc; j += 16) {
      const __mmask16 k = bc - j >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << (bc - j)) - 1);
      mx = _mm512_max_ps(mx, _mm512_mask_loadu_ps(ninf, k, si + j));
    }
    float bmax = _mm512_reduce_max_ps(mx);
    // A NaN score among -inf ones would be lost by the max: it must make the row NaN.
    if (bmax == -INFINITY && has_nan(si, bc)) bmax = NAN;
    const float mn = m[i] > bmax ? m[i] : bmax;
    if (mn == -INFINITY) {  // nothing visible yet
      alpha[i] = 1.0f;
      for (int64_t j = 0; j < bc; ++j) pi[j] = 0.0f;
      continue;
    }
    alpha[i] = m[i] == -INFINITY ? 0.0f : std::exp(m[i] - mn);
    m[i] = mn;
    const __m512 vm = _mm512_set1_ps(mn);
    __m512 acc = _mm512_setzero_ps();
    for (int64_t j = 0; j < bc; j += 16) {
      const __mmask16 k = bc - j >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << (bc - j)) - 1);
      const __m512 x = _mm512_mask_loadu_ps(ninf, k, si + j);
      const __mmask16 live = _mm512_mask_cmp_ps_mask(k, x, ninf, _CMP_NEQ_UQ);  // unordered: NaN is live
      const __m512 e = _mm512_maskz_mov_ps(live, vexp::exp512_nonpos(_mm512_sub_ps(x, vm)));
      _mm512_mask_storeu_ps(pi + j, k, e);
      acc = _mm512_add_ps(acc, e);
    }
    l[i] = l[i] * alpha[i] + _mm512_reduce_add_ps(acc);
  }
}

float exp_shift_avx512(const float* s, float* p, int64_t n, float m) {
  const __m512 vm = _mm512_set1_ps(m);
  __m512 acc = _mm512_setzero_ps();
  for (int64_t j = 0; j < n; j += 16) {
    const __mmask16 k = n - j >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << (n - j)) - 1);
    const __m512 x = _mm512_mask_loadu_ps(_mm512_set1_ps(-INFINITY), k, s + j);
    // -inf scores (masked keys) give exactly 0.
    const __mmask16 live = _mm512_cmp_ps_mask(x, _mm512_set1_ps(-INFINITY), _CMP_NEQ_UQ);  // NaN scores give NaN
    const __m512 e = _mm512_maskz_mov_ps(live, vexp::exp512_nonpos(_mm512_sub_ps(x, vm)));
    _mm512_mask_storeu_ps(p + j, k, e);
    acc = _mm512_add_ps(acc, e);
  }
  return _mm512_reduce_add_ps(acc);
}


namespace {
// In-register 16x16 transpose: r[i] (row i) becomes column i.
inline void transpose16(__m512 r[16]) {
  __m512 t[16], u[16], v[16];
  for (int i = 0; i < 8; ++i) {
    t[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);
    t[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);
  }
  for (int i = 0; i < 4; ++i) {
    const __m512d a = _mm512_castps_pd(t[4 * i]), b = _mm512_castps_pd(t[4 * i + 1]);
    const __m512d c = _mm512_castps_pd(t[4 * i + 2]), d = _mm512_castps_pd(t[4 * i + 3]);
    u[4 * i] = _mm512_castpd_ps(_mm512_unpacklo_pd(a, c));
    u[4 * i + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(a, c));
    u[4 * i + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(b, d));
    u[4 * i + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(b, d));
  }
  for (int k = 0; k < 4; ++k) {
    v[k] = _mm512_shuffle_f32x4(u[k], u[4 + k], 0x88);
    v[4 + k] = _mm512_shuffle_f32x4(u[k], u[4 + k], 0xdd);
    v[8 + k] = _mm512_shuffle_f32x4(u[8 + k], u[12 + k], 0x88);
    v[12 + k] = _mm512_shuffle_f32x4(u[8 + k], u[12 + k], 0xdd);
  }
  for (int k = 0; k < 4; ++k) {
    r[k] = _mm512_shuffle_f32x4(v[k], v[8 + k], 0x88);
    r[8 + k] = _mm512_shuffle_f32x4(v[k], v[8 + k], 0xdd);
    r[4 + k] = _mm512_shuffle_f32x4(v[4 + k], v[12 + k], 0x88);
    r[12 + k] = _mm512_shuffle_f32x4(v[4 + k], v[12 + k], 0xdd);
  }
}
}  // namespace

// Rows [r0, r0 + n) of head h (row stride H * D) transposed into dst [D, ld]: 16 x 16 blocks
// loaded as rows, transposed in registers, stored as columns (masked at both tails).
void pack_cols_avx512(const float* x, int64_t H, int64_t D, int64_t r0, int64_t n, int64_t h, float* dst, int64_t ld) {
  const float* base = x + (r0 * H + h) * D;
  const int64_t stride = H * D;
  for (int64_t i = 0; i < n; i += 16) {
    const int rows = int(n - i < 16 ? n - i : 16);
    const __mmask16 krow = rows == 16 ? __mmask16(0xFFFF) : __mmask16((1u << rows) - 1);
    for (int64_t d0 = 0; d0 < D; d0 += 16) {
      const int cols = int(D - d0 < 16 ? D - d0 : 16);
      const __mmask16 kcol = cols == 16 ? __mmask16(0xFFFF) : __mmask16((1u << cols) - 1);
      __m512 r[16];
      for (int q = 0; q < 16; ++q)
        r[q] = q < rows ? _mm512_maskz_loadu_ps(kcol, base + (i + q) * stride + d0) : _mm512_setzero_ps();
      transpose16(r);
      for (int c = 0; c < cols; ++c) _mm512_mask_storeu_ps(dst + (d0 + c) * ld + i, krow, r[c]);
    }
  }
}
}  // namespace detail
}  // namespace flash
}  // namespace vt
VT_AVX512_END
#endif
