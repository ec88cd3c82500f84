// AVX-512 forms of the vector primitives (vec.h): the stored-dtype GEMV that decode spends its time in
// (memory-bound: one pass over the weight rows, up to 8 activation rows kept in registers), the
// weight widening for the GEMM path, and the dot/axpy/sum-of-squares helpers.
#include <immintrin.h>

#include <cmath>
#include <cstdint>
#include <cstring>

#include "half.h"
#include "simd.h"
#include "vec.h"

#if VT_X86
VT_AVX512_BEGIN
#define VT_VEXP_AVX512
#include "vexp.h"
namespace vt {
namespace {

// 16 weights widened to f32: bf16 is the high half of an f32; f16 by vcvtph2ps.
inline __m512 load16(const void* w, DType dt, int64_t i) {
  if (dt == DType::BF16) {
    __m256i h = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(static_cast<const uint16_t*>(w) + i));
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
  }
  if (dt == DType::F16)
    return _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(static_cast<const uint16_t*>(w) + i)));
  return _mm512_loadu_ps(static_cast<const float*>(w) + i);
}
inline __m512 load16_tail(const void* w, DType dt, int64_t i, __mmask16 m) {
  if (dt == DType::BF16) {
    __m256i h = _mm256_maskz_loadu_epi16(m, static_cast<const uint16_t*>(w) + i);
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
  }
  if (dt == DType::F16) return _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, static_cast<const uint16_t*>(w) + i));
  return _mm512_maskz_loadu_ps(m, static_cast<const float*>(w) + i);
}
inline const void* row(const void* w, DType dt, int64_t n, int64_t K) {
  return static_cast<const char*>(w) + n * K * int64_t(dtype_size(dt));
}

template <int TT>
void gemv_t(float* y, int64_t ldy, const float* x, int64_t ldx, const void* w, DType dt, int64_t K, int64_t n0,
            int64_t n1) {
  const int64_t K16 = K & ~int64_t(15);
  const __mmask16 tail = __mmask16((1u << (K - K16)) - 1u);
  int64_t n = n0;
  const int64_t es = int64_t(dtype_size(dt));
  if (TT == 1) {
    // Decode: four weight rows per pass (four DRAM streams per thread keep more lines in flight).
    for (; n + 4 <= n1; n += 4) {
      const void* w0 = row(w, dt, n, K);
      const void* w1 = row(w, dt, n + 1, K);
      const void* w2 = row(w, dt, n + 2, K);
      const void* w3 = row(w, dt, n + 3, K);
      __m512 a0 = _mm512_setzero_ps(), a1 = _mm512_setzero_ps(), a2 = _mm512_setzero_ps(), a3 = _mm512_setzero_ps();
      // The next group of four rows is contiguous after this one: prefetch it at the pace this
      // group is consumed (64 * es bytes per step), so DRAM requests run ahead of the FMAs.
      const char* nb = static_cast<const char*>(row(w, dt, n + 4 < n1 ? n + 4 : n, K));
      for (int64_t i = 0; i < K16; i += 16) {
        for (int64_t c = 0; c < es; c++) _mm_prefetch(nb + i * 4 * es + 64 * c, _MM_HINT_T0);
        const __m512 xv = _mm512_loadu_ps(x + i);
        a0 = _mm512_fmadd_ps(load16(w0, dt, i), xv, a0);
        a1 = _mm512_fmadd_ps(load16(w1, dt, i), xv, a1);
        a2 = _mm512_fmadd_ps(load16(w2, dt, i), xv, a2);
        a3 = _mm512_fmadd_ps(load16(w3, dt, i), xv, a3);
      }
      if (K16 < K) {
        const __m512 xv = _mm512_maskz_loadu_ps(tail, x + K16);
        a0 = _mm512_fmadd_ps(load16_tail(w0, dt, K16, tail), xv, a0);
        a1 = _mm512_fmadd_ps(load16_tail(w1, dt, K16, tail), xv, a1);
        a2 = _mm512_fmadd_ps(load16_tail(w2, dt, K16, tail), xv, a2);
        a3 = _mm512_fmadd_ps(load16_tail(w3, dt, K16, tail), xv, a3);
      }
      y[n] = _mm512_reduce_add_ps(a0);
      y[n + 1] = _mm512_reduce_add_ps(a1);
      y[n + 2] = _mm512_reduce_add_ps(a2);
      y[n + 3] = _mm512_reduce_add_ps(a3);
    }
  }
  // Two weight rows per pass: 2*TT independent accumulator chains hide the FMA latency.
  for (; n + 2 <= n1; n += 2) {
    const void* w0 = row(w, dt, n, K);
    const void* w1 = row(w, dt, n + 1, K);
    __m512 a0[TT], a1[TT];
    for (int t = 0; t < TT; t++) a0[t] = a1[t] = _mm512_setzero_ps();
    for (int64_t i = 0; i < K16; i += 16) {
      __m512 v0 = load16(w0, dt, i), v1 = load16(w1, dt, i);
      for (int t = 0; t < TT; t++) {
        __m512 xv = _mm512_loadu_ps(x + t * ldx + i);
        a0[t] = _mm512_fmadd_ps(v0, xv, a0[t]);
        a1[t] = _mm512_fmadd_ps(v1, xv, a1[t]);
      }
    }
    if (K16 < K) {
      __m512 v0 = load16_tail(w0, dt, K16, tail), v1 = load16_tail(w1, dt, K16, tail);
      for (int t = 0; t < TT; t++) {
        __m512 xv = _mm512_maskz_loadu_ps(tail, x + t * ldx + K16);
        a0[t] = _mm512_fmadd_ps(v0, xv, a0[t]);
        a1[t] = _mm512_fmadd_ps(v1, xv, a1[t]);
      }
    }
    for (int t = 0; t < TT; t++) {
      y[t * ldy + n] = _mm512_reduce_add_ps(a0[t]);
      y[t * ldy + n + 1] = _mm512_reduce_add_ps(a1[t]);
    }
  }
  for (; n < n1; n++) {
    const void* w0 = row(w, dt, n, K);
    __m512 a0[TT];
    for (int t = 0; t < TT; t++) a0[t] = _mm512_setzero_ps();
    for (int64_t i = 0; i < K16; i += 16) {
      __m512 v0 = load16(w0, dt, i);
      for (int t = 0; t < TT; t++) a0[t] = _mm512_fmadd_ps(v0, _mm512_loadu_ps(x + t * ldx + i), a0[t]);
    }
    if (K16 < K) {
      __m512 v0 = load16_tail(w0, dt, K16, tail);
      for (int t = 0; t < TT; t++) a0[t] = _mm512_fmadd_ps(v0, _mm512_maskz_loadu_ps(tail, x + t * ldx + K16), a0[t]);
    }
    for (int t = 0; t < TT; t++) y[t * ldy + n] = _mm512_reduce_add_ps(a0[t]);
  }
}

}  // namespace

void gemv_rows_avx512(float* y, int64_t ldy, const float* x, int64_t ldx, int64_t T, const void* w, DType wdt,
                      int64_t K, int64_t n0, int64_t n1) {
  // Up to 8 activation rows per pass over the weights (2 weight rows x 8 = 16 accumulators fit
  // the 32 registers): n = 8 samples decoding together read the weights once, not twice.
  for (int64_t t = 0; t < T; t += 8) {
    const int64_t r = T - t < 8 ? T - t : 8;
    float* yy = y + t * ldy;
    const float* xx = x + t * ldx;
    switch (r) {
      case 8: gemv_t<8>(yy, ldy, xx, ldx, w, wdt, K, n0, n1); break;
      case 7: gemv_t<7>(yy, ldy, xx, ldx, w, wdt, K, n0, n1); break;
      case 6: gemv_t<6>(yy, ldy, xx, ldx, w, wdt, K, n0, n1); break;
      case 5: gemv_t<5>(yy, ldy, xx, ldx, w, wdt, K, n0, n1); break;
      case 4: gemv_t<4>(yy, ldy, xx, ldx, w, wdt, K, n0, n1); break;
      case 3: gemv_t<3>(yy, ldy, xx, ldx, w, wdt, K, n0, n1); break;
      case 2: gemv_t<2>(yy, ldy, xx, ldx, w, wdt, K, n0, n1); break;
      default: gemv_t<1>(yy, ldy, xx, ldx, w, wdt, K, n0, n1);
    }
  }
}

void widen_rows_avx512(float* dst, const void* w, DType wdt, int64_t K, int64_t n0, int64_t n1) {
  const int64_t K16 = K & ~int64_t(15);
  const __mmask16 tail = __mmask16((1u << (K - K16)) - 1u);
  for (int64_t n = n0; n < n1; n++) {
    const void* wr = row(w, wdt, n, K);
    float* d = dst + (n - n0) * K;
    for (int64_t i = 0; i < K16; i += 16) _mm512_storeu_ps(d + i, load16(wr, wdt, i));
    if (K16 < K) _mm512_mask_storeu_ps(d + K16, tail, load16_tail(wr, wdt, K16, tail));
  }
}

float vec_max_avx512(const float* x, int64_t n) {
  const __m512 ninf = _mm512_set1_ps(-INFINITY);
  __m512 m = ninf;
  for (int64_t i = 0; i < n; i += 16) {
    const __mmask16 k = n - i >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << (n - i)) - 1u);
    m = _mm512_max_ps(m, _mm512_mask_loadu_ps(ninf, k, x + i));
  }
  return _mm512_reduce_max_ps(m);
}

float vec_exp_sum_avx512(const float* x, float* p, int64_t n, float scale, float shift) {
  const __m512 vs = _mm512_set1_ps(scale), vsh = _mm512_set1_ps(shift), ninf = _mm512_set1_ps(-INFINITY);
  __m512 acc = _mm512_setzero_ps();
  for (int64_t i = 0; i < n; i += 16) {
    const __mmask16 k = n - i >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << (n - i)) - 1u);
    const __m512 v = _mm512_mask_loadu_ps(ninf, k, x + i);
    // NaN compares unequal (unordered): it flows through exp into the sum, as it should.
    const __mmask16 live = _mm512_cmp_ps_mask(v, ninf, _CMP_NEQ_UQ);
    const __m512 e = _mm512_maskz_mov_ps(live, vexp::exp512(_mm512_fmsub_ps(v, vs, vsh)));
    _mm512_mask_storeu_ps(p + i, k, e);
    acc = _mm512_add_ps(acc, e);
  }
  return _mm512_reduce_add_ps(acc);
}

float vec_dot_avx512(const float* a, const float* b, int64_t n) {
  __m512 s0 = _mm512_setzero_ps(), s1 = _mm512_setzero_ps();
  int64_t i = 0;
  for (; i + 32 <= n; i += 32) {
    s0 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i), _mm512_loadu_ps(b + i), s0);
    s1 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i + 16), _mm512_loadu_ps(b + i + 16), s1);
  }
  for (; i < n; i += 16) {
    const __mmask16 m = n - i >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << (n - i)) - 1u);
    s0 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, a + i), _mm512_maskz_loadu_ps(m, b + i), s0);
  }
  return _mm512_reduce_add_ps(_mm512_add_ps(s0, s1));
}

void vec_axpy_avx512(float* y, float a, const float* x, int64_t n) {
  const __m512 av = _mm512_set1_ps(a);
  for (int64_t i = 0; i < n; i += 16) {
    const __mmask16 m = n - i >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << (n - i)) - 1u);
    _mm512_mask_storeu_ps(y + i, m, _mm512_fmadd_ps(av, _mm512_maskz_loadu_ps(m, x + i), _mm512_maskz_loadu_ps(m, y + i)));
  }
}

// In double: RMSNorm's mean of squares over thousands of channels keeps full f32 accuracy.
double vec_sumsq_avx512(const float* x, int64_t n) {
  __m512d s0 = _mm512_setzero_pd(), s1 = _mm512_setzero_pd();
  for (int64_t i = 0; i < n; i += 16) {
    const __mmask16 m = n - i >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << (n - i)) - 1u);
    __m512 v = _mm512_maskz_loadu_ps(m, x + i);
    __m512d lo = _mm512_cvtps_pd(_mm512_castps512_ps256(v));
    __m512d hi = _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1)));
    s0 = _mm512_fmadd_pd(lo, lo, s0);
    s1 = _mm512_fmadd_pd(hi, hi, s1);
  }
  return _mm512_reduce_add_pd(_mm512_add_pd(s0, s1));
}

}  // namespace vt
VT_AVX512_END
#else
namespace vt {
void gemv_rows_avx512(float* y, int64_t ldy, const float* x, int64_t ldx, int64_t T, const void* w, DType wdt,
                      int64_t K, int64_t n0, int64_t n1) {
  gemv_rows_scalar(y, ldy, x, ldx, T, w, wdt, K, n0, n1);
}
void widen_rows_avx512(float* dst, const void* w, DType wdt, int64_t K, int64_t n0, int64_t n1) {
  widen_rows_scalar(dst, w, wdt, K, n0, n1);
}
float vec_dot_avx512(const float* a, const float* b, int64_t n) { return vec_dot_scalar(a, b, n); }
float vec_max_avx512(const float* x, int64_t n) { return vec_max_scalar(x, n); }
float vec_exp_sum_avx512(const float* x, float* p, int64_t n, float scale, float shift) { return vec_exp_sum_scalar(x, p, n, scale, shift); }
void vec_axpy_avx512(float* y, float a, const float* x, int64_t n) { vec_axpy_scalar(y, a, x, n); }
double vec_sumsq_avx512(const float* x, int64_t n) { return vec_sumsq_scalar(x, n); }
}  // namespace vt
#endif
