// AVX2 + FMA + F16C forms of the vector primitives (vec.h); tails are finished by scalar code.
#include <immintrin.h>

#include <cmath>
#include <cstdint>
#include <cstring>

#include "half.h"
#include "simd.h"
#include "vec.h"

#if VT_X86
VT_AVX2_BEGIN
#define VT_VEXP_AVX2
#include "vexp.h"
namespace vt {
namespace {

inline __m256 load8(const void* w, DType dt, int64_t i) {
  if (dt == DType::BF16) {
    __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(static_cast<const uint16_t*>(w) + i));
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
  }
  if (dt == DType::F16)
    return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(static_cast<const uint16_t*>(w) + i)));
  return _mm256_loadu_ps(static_cast<const float*>(w) + i);
}
inline float load1(const void* w, DType dt, int64_t i) {
  if (dt == DType::BF16) return bf16_to_f32(static_cast<const uint16_t*>(w)[i]);
  if (dt == DType::F16) return f16_to_f32(static_cast<const uint16_t*>(w)[i]);
  return static_cast<const float*>(w)[i];
}
inline float hsum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}
inline const void* row(const void* w, DType dt, int64_t n, int64_t K) {
  return static_cast<const char*>(w) + n * K * int64_t(dtype_size(dt));
}

template <int TT>
void gemv_t(float* y, int64_t ldy, const float* x, int64_t ldx, const void* w, DType dt, int64_t K, int64_t n0,
            int64_t n1) {
  const int64_t K8 = K & ~int64_t(7);
  const int64_t es = int64_t(dtype_size(dt));
  int64_t n = n0;
  if (TT == 1) {
    // Decode: four rows per pass, and the next four (contiguous) prefetched at the pace these are
    // read (32 * es bytes per step), as in the AVX-512 path.
    for (; n + 4 <= n1; n += 4) {
      const void* w0 = row(w, dt, n, K);
      const void* w1 = row(w, dt, n + 1, K);
      const void* w2 = row(w, dt, n + 2, K);
      const void* w3 = row(w, dt, n + 3, K);
      const char* nb = static_cast<const char*>(row(w, dt, n + 4 < n1 ? n + 4 : n, K));
      __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps(), a2 = _mm256_setzero_ps(), a3 = _mm256_setzero_ps();
      for (int64_t i = 0; i < K8; i += 8) {
        if ((i & 15) == 0) {
          for (int64_t c = 0; c < es; c++) _mm_prefetch(nb + i * 4 * es + 64 * c, _MM_HINT_T0);
        }
        const __m256 xv = _mm256_loadu_ps(x + i);
        a0 = _mm256_fmadd_ps(load8(w0, dt, i), xv, a0);
        a1 = _mm256_fmadd_ps(load8(w1, dt, i), xv, a1);
        a2 = _mm256_fmadd_ps(load8(w2, dt, i), xv, a2);
        a3 = _mm256_fmadd_ps(load8(w3, dt, i), xv, a3);
      }
      float s[4] = {hsum(a0), hsum(a1), hsum(a2), hsum(a3)};
      const void* ws[4] = {w0, w1, w2, w3};
      for (int r = 0; r < 4; r++) {
        for (int64_t i = K8; i < K; i++) s[r] += load1(ws[r], dt, i) * x[i];
        y[n + r] = s[r];
      }
    }
  }
  for (; n + 2 <= n1; n += 2) {
    const void* w0 = row(w, dt, n, K);
    const void* w1 = row(w, dt, n + 1, K);
    __m256 a0[TT], a1[TT];
    for (int t = 0; t < TT; t++) a0[t] = a1[t] = _mm256_setzero_ps();
    for (int64_t i = 0; i < K8; i += 8) {
      __m256 v0 = load8(w0, dt, i), v1 = load8(w1, dt, i);
      for (int t = 0; t < TT; t++) {
        __m256 xv = _mm256_loadu_ps(x + t * ldx + i);
        a0[t] = _mm256_fmadd_ps(v0, xv, a0[t]);
        a1[t] = _mm256_fmadd_ps(v1, xv, a1[t]);
      }
    }
    for (int t = 0; t < TT; t++) {
      float s0 = hsum(a0[t]), s1 = hsum(a1[t]);
      for (int64_t i = K8; i < K; i++) {
        s0 += load1(w0, dt, i) * x[t * ldx + i];
        s1 += load1(w1, dt, i) * x[t * ldx + i];
      }
      y[t * ldy + n] = s0;
      y[t * ldy + n + 1] = s1;
    }
  }
  for (; n < n1; n++) {
    const void* w0 = row(w, dt, n, K);
    __m256 a0[TT];
    for (int t = 0; t < TT; t++) a0[t] = _mm256_setzero_ps();
    for (int64_t i = 0; i < K8; i += 8) {
      __m256 v0 = load8(w0, dt, i);
      for (int t = 0; t < TT; t++) a0[t] = _mm256_fmadd_ps(v0, _mm256_loadu_ps(x + t * ldx + i), a0[t]);
    }
    for (int t = 0; t < TT; t++) {
      float s0 = hsum(a0[t]);
      for (int64_t i = K8; i < K; i++) s0 += load1(w0, dt, i) * x[t * ldx + i];
      y[t * ldy + n] = s0;
    }
  }
}

}  // namespace

void gemv_rows_avx2(float* y, int64_t ldy, const float* x, int64_t ldx, int64_t T, const void* w, DType wdt, int64_t K,
                    int64_t n0, int64_t n1) {
  for (int64_t t = 0; t < T; t += 4) {
    const int64_t r = T - t < 4 ? T - t : 4;
    float* yy = y + t * ldy;
    const float* xx = x + t * ldx;
    if (r == 4) gemv_t<4>(yy, ldy, xx, ldx, w, wdt, K, n0, n1);
    else if (r == 3) gemv_t<3>(yy, ldy, xx, ldx, w, wdt, K, n0, n1);
    else if (r == 2) gemv_t<2>(yy, ldy, xx, ldx, w, wdt, K, n0, n1);
    else gemv_t<1>(yy, ldy, xx, ldx, w, wdt, K, n0, n1);
  }
}

void widen_rows_avx2(float* dst, const void* w, DType wdt, int64_t K, int64_t n0, int64_t n1) {
  const int64_t K8 = K & ~int64_t(7);
  for (int64_t n = n0; n < n1; n++) {
    const void* wr = row(w, wdt, n, K);
    float* d = dst + (n - n0) * K;
    for (int64_t i = 0; i < K8; i += 8) _mm256_storeu_ps(d + i, load8(wr, wdt, i));
    for (int64_t i = K8; i < K; i++) d[i] = load1(wr, wdt, i);
  }
}

float vec_max_avx2(const float* x, int64_t n) {
  __m256 m = _mm256_set1_ps(-INFINITY);
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) m = _mm256_max_ps(m, _mm256_loadu_ps(x + i));
  alignas(32) float t[8];
  _mm256_store_ps(t, m);
  float r = t[0];
  for (int j = 1; j < 8; j++) r = t[j] > r ? t[j] : r;
  for (; i < n; i++) r = x[i] > r ? x[i] : r;
  return r;
}

float vec_exp_sum_avx2(const float* x, float* p, int64_t n, float scale, float shift) {
  const __m256 vs = _mm256_set1_ps(scale), vsh = _mm256_set1_ps(shift), ninf = _mm256_set1_ps(-INFINITY);
  __m256 acc = _mm256_setzero_ps();
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256 v = _mm256_loadu_ps(x + i);
    const __m256 live = _mm256_cmp_ps(v, ninf, _CMP_NEQ_UQ);  // NaN propagates
    const __m256 e = _mm256_and_ps(live, vexp::exp256(_mm256_fmsub_ps(v, vs, vsh)));
    _mm256_storeu_ps(p + i, e);
    acc = _mm256_add_ps(acc, e);
  }
  alignas(32) float t[8];
  _mm256_store_ps(t, acc);
  float s = ((t[0] + t[1]) + (t[2] + t[3])) + ((t[4] + t[5]) + (t[6] + t[7]));
  return s + vec_exp_sum_scalar(x + i, p + i, n - i, scale, shift);
}

float vec_dot_avx2(const float* a, const float* b, int64_t n) {
  __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps();
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), s0);
    s1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 8), _mm256_loadu_ps(b + i + 8), s1);
  }
  float s = hsum(_mm256_add_ps(s0, s1));
  for (; i < n; i++) s += a[i] * b[i];
  return s;
}

void vec_axpy_avx2(float* y, float a, const float* x, int64_t n) {
  const __m256 av = _mm256_set1_ps(a);
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, _mm256_fmadd_ps(av, _mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i)));
  for (; i < n; i++) y[i] += a * x[i];
}

double vec_sumsq_avx2(const float* x, int64_t n) {
  __m256d s0 = _mm256_setzero_pd(), s1 = _mm256_setzero_pd();
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    __m256 v = _mm256_loadu_ps(x + i);
    __m256d lo = _mm256_cvtps_pd(_mm256_castps256_ps128(v)), hi = _mm256_cvtps_pd(_mm256_extractf128_ps(v, 1));
    s0 = _mm256_fmadd_pd(lo, lo, s0);
    s1 = _mm256_fmadd_pd(hi, hi, s1);
  }
  __m256d s = _mm256_add_pd(s0, s1);
  __m128d h = _mm_add_pd(_mm256_castpd256_pd128(s), _mm256_extractf128_pd(s, 1));
  double r = _mm_cvtsd_f64(_mm_add_sd(h, _mm_unpackhi_pd(h, h)));
  for (; i < n; i++) r += double(x[i]) * x[i];
  return r;
}

}  // namespace vt
VT_AVX2_END
#else
namespace vt {
void gemv_rows_avx2(float* y, int64_t ldy, const float* x, int64_t ldx, int64_t T, const void* w, DType wdt, int64_t K,
                    int64_t n0, int64_t n1) {
  gemv_rows_scalar(y, ldy, x, ldx, T, w, wdt, K, n0, n1);
}
void widen_rows_avx2(float* dst, const void* w, DType wdt, int64_t K, int64_t n0, int64_t n1) {
  widen_rows_scalar(dst, w, wdt, K, n0, n1);
}
float vec_dot_avx2(const float* a, const float* b, int64_t n) { return vec_dot_scalar(a, b, n); }
float vec_max_avx2(const float* x, int64_t n) { return vec_max_scalar(x, n); }
float vec_exp_sum_avx2(const float* x, float* p, int64_t n, float scale, float shift) { return vec_exp_sum_scalar(x, p, n, scale, shift); }
void vec_axpy_avx2(float* y, float a, const float* x, int64_t n) { vec_axpy_scalar(y, a, x, n); }
double vec_sumsq_avx2(const float* x, int64_t n) { return vec_sumsq_scalar(x, n); }
}  // namespace vt
#endif
