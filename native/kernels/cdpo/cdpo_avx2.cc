// AVX2 form of cdpo_span (4 tokens at once, in double): the same formulas and gradient rules as
// cdpo_math.h and cdpo_avx512.cc, for CPUs without AVX-512 (the project's Zen 3 CI machines).
// The last n % 4 tokens of a span go through the scalar form.
#include <cmath>
#include <cstdint>

#include "../../core/simd.h"
#include "cdpo.h"
#include "cdpo_linear.h"

#if VT_X86
#include <immintrin.h>

VT_AVX2_BEGIN
namespace vt {
namespace detail {
namespace {

// expm1(r), |r| <= ln2/2, Taylor to r^11 (as cdpo_avx512.cc), and 2^k as a double.
inline __m256d expm1_reduced4(__m256d x, __m256d* pow2k) {
  // Constants first: max/min return their second operand when either is NaN, so NaN stays NaN.
  x = _mm256_min_pd(_mm256_set1_pd(709.0), _mm256_max_pd(_mm256_set1_pd(-708.0), x));
  const __m256d k = _mm256_round_pd(_mm256_mul_pd(x, _mm256_set1_pd(1.4426950408889634)), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m256d r = _mm256_fnmadd_pd(k, _mm256_set1_pd(6.93147180369123816490e-01), x);
  r = _mm256_fnmadd_pd(k, _mm256_set1_pd(1.90821492927058770002e-10), r);
  // k (|k| <= 1023) to an integer through the 1.5 * 2^52 trick, then into the exponent field
  const __m256d magic = _mm256_set1_pd(6755399441055744.0);
  const __m256i ki = _mm256_sub_epi64(_mm256_castpd_si256(_mm256_add_pd(k, magic)), _mm256_castpd_si256(magic));
  *pow2k = _mm256_castsi256_pd(_mm256_slli_epi64(_mm256_add_epi64(ki, _mm256_set1_epi64x(1023)), 52));
  __m256d q = _mm256_set1_pd(1.0 / 39916800.0);
  q = _mm256_fmadd_pd(q, r, _mm256_set1_pd(1.0 / 3628800.0));
  q = _mm256_fmadd_pd(q, r, _mm256_set1_pd(1.0 / 362880.0));
  q = _mm256_fmadd_pd(q, r, _mm256_set1_pd(1.0 / 40320.0));
  q = _mm256_fmadd_pd(q, r, _mm256_set1_pd(1.0 / 5040.0));
  q = _mm256_fmadd_pd(q, r, _mm256_set1_pd(1.0 / 720.0));
  q = _mm256_fmadd_pd(q, r, _mm256_set1_pd(1.0 / 120.0));
  q = _mm256_fmadd_pd(q, r, _mm256_set1_pd(1.0 / 24.0));
  q = _mm256_fmadd_pd(q, r, _mm256_set1_pd(1.0 / 6.0));
  q = _mm256_fmadd_pd(q, r, _mm256_set1_pd(0.5));
  return _mm256_fmadd_pd(q, _mm256_mul_pd(r, r), r);
}

inline __m256d exp4(__m256d x) {
  __m256d s;
  const __m256d p = expm1_reduced4(x, &s);
  return _mm256_fmadd_pd(p, s, s);  // 2^k (1 + p)
}

inline __m256d expm1_4(__m256d x) {
  __m256d s;
  const __m256d p = expm1_reduced4(x, &s);
  return _mm256_add_pd(_mm256_mul_pd(p, s), _mm256_sub_pd(s, _mm256_set1_pd(1.0)));
}

inline __m256d load4(const float* p) { return _mm256_cvtps_pd(_mm_loadu_ps(p)); }
inline __m256d sel(__m256d mask, __m256d a, __m256d b) { return _mm256_blendv_pd(a, b, mask); }  // mask ? b : a

inline void k3_4(__m256d logq, __m256d lp, __m256d C, __m256d* k3, __m256d* dk3) {
  const __m256d d = _mm256_sub_pd(logq, lp);
  const __m256d negC = _mm256_sub_pd(_mm256_setzero_pd(), C);
  const __m256d inside = _mm256_and_pd(_mm256_cmp_pd(d, negC, _CMP_GE_OQ), _mm256_cmp_pd(d, C, _CMP_LE_OQ));
  const __m256d dc = _mm256_min_pd(C, _mm256_max_pd(negC, d));  // NaN stays NaN (constants first)
  const __m256d em1 = expm1_4(dc);
  *k3 = _mm256_sub_pd(em1, dc);
  // -em1 * g (g = 0 outside the clamp) as a product: a NaN d gives NaN, as autograd's 0 * NaN.
  *dk3 = _mm256_sub_pd(_mm256_setzero_pd(), _mm256_mul_pd(em1, _mm256_and_pd(inside, _mm256_set1_pd(1.0))));
}

inline double hsum(__m256d v) {
  const __m128d s = _mm_add_pd(_mm256_castpd256_pd128(v), _mm256_extractf128_pd(v, 1));
  return _mm_cvtsd_f64(_mm_add_sd(s, _mm_unpackhi_pd(s, s)));
}

}  // namespace

void cdpo_span_avx2(const CdpoSpan& sp, const CdpoConst<double>& c, double* s) {
  const __m256d zero = _mm256_setzero_pd(), one = _mm256_set1_pd(1.0), half = _mm256_set1_pd(0.5);
  const __m256d A = _mm256_set1_pd(sp.adv), w = _mm256_set1_pd(sp.w);
  const __m256d lo = _mm256_set1_pd(c.lo), hi = _mm256_set1_pd(c.hi), delta = _mm256_set1_pd(c.delta);
  const __m256d bref = _mm256_set1_pd(c.beta_ref), bbias = _mm256_set1_pd(c.beta_bias), C = _mm256_set1_pd(c.kl_clamp);
  __m256d acc_loss = zero, acc_kr = zero, acc_kb = zero, acc_rho = zero;
  int64_t clip_low = 0, clip_high = 0;
  const bool count_low = sp.adv < 0, count_high = sp.adv > 0;
  const int64_t n4 = sp.n / 4 * 4;
  for (int64_t t = 0; t < n4; t += 4) {
    const __m256d lp = load4(sp.logp + t);
    __m256d rho, pol, dpol;
    if (sp.seq) {
      rho = _mm256_set1_pd(sp.seq[0]);
      pol = _mm256_set1_pd(sp.seq[1]);
      dpol = _mm256_set1_pd(sp.seq[2]);
    } else {
      // on-policy: 1 + 0 * logp (NaN for a NaN / infinite log-prob, as cdpo_cpu.cc)
      rho = sp.old ? exp4(_mm256_sub_pd(lp, load4(sp.old + t))) : _mm256_fmadd_pd(zero, lp, one);
      __m256d c1 = rho, g1 = one;
      if (c.has_delta) {
        const __m256d md = _mm256_cmp_pd(rho, delta, _CMP_GT_OQ);
        c1 = sel(md, rho, delta);
        g1 = sel(md, one, zero);
      }
      const __m256d mlo = _mm256_cmp_pd(rho, lo, _CMP_LT_OQ), mhi = _mm256_cmp_pd(rho, hi, _CMP_GT_OQ);
      const __m256d c2 = sel(mhi, sel(mlo, rho, lo), hi);
      const __m256d g2 = sel(_mm256_or_pd(mlo, mhi), one, zero);
      const __m256d p1 = _mm256_mul_pd(c1, A), p2 = _mm256_mul_pd(c2, A);
      const __m256d lt = _mm256_cmp_pd(p1, p2, _CMP_LT_OQ), gt = _mm256_cmp_pd(p2, p1, _CMP_LT_OQ);
      pol = _mm256_sub_pd(zero, sel(gt, p1, p2));
      __m256d dm = _mm256_mul_pd(_mm256_mul_pd(half, _mm256_add_pd(g1, g2)), A);
      dm = sel(lt, dm, _mm256_mul_pd(A, g1));
      dm = sel(gt, dm, _mm256_mul_pd(A, g2));
      dpol = _mm256_sub_pd(zero, dm);
    }
    __m256d loss = pol, d = _mm256_mul_pd(dpol, rho);
    if (sp.ref) {
      __m256d k3, dk3;
      k3_4(load4(sp.ref + t), lp, C, &k3, &dk3);
      loss = _mm256_fmadd_pd(bref, k3, loss);
      d = _mm256_fmadd_pd(bref, dk3, d);
      acc_kr = _mm256_add_pd(acc_kr, k3);
    }
    if (sp.bias) {
      __m256d k3, dk3;
      k3_4(load4(sp.bias + t), lp, C, &k3, &dk3);
      loss = _mm256_fnmadd_pd(bbias, k3, loss);
      d = _mm256_fnmadd_pd(bbias, dk3, d);
      acc_kb = _mm256_add_pd(acc_kb, k3);
    }
    _mm_storeu_ps(sp.dlogp + t, _mm256_cvtpd_ps(_mm256_mul_pd(w, d)));
    acc_loss = _mm256_fmadd_pd(w, loss, acc_loss);
    acc_rho = _mm256_add_pd(acc_rho, rho);
    if (count_low) clip_low += __builtin_popcount(unsigned(_mm256_movemask_pd(_mm256_cmp_pd(rho, lo, _CMP_LT_OQ))));
    if (count_high) clip_high += __builtin_popcount(unsigned(_mm256_movemask_pd(_mm256_cmp_pd(rho, hi, _CMP_GT_OQ))));
  }
  s[kSumLoss] += hsum(acc_loss);
  s[kSumKlRef] += hsum(acc_kr);
  s[kSumKlBias] += hsum(acc_kb);
  s[kSumClipLow] += double(clip_low);
  s[kSumClipHigh] += double(clip_high);
  s[kSumRatio] += hsum(acc_rho);
  if (n4 < sp.n) {
    CdpoSpan tail = sp;
    tail.logp += n4;
    if (tail.old) tail.old += n4;
    if (tail.ref) tail.ref += n4;
    if (tail.bias) tail.bias += n4;
    tail.dlogp += n4;
    tail.n = sp.n - n4;
    cdpo_span_scalar(tail, c, s);
  }
}

}  // namespace detail
}  // namespace vt
VT_AVX2_END

#endif

// ---- f32 row kernels of the fused LM-head pass (cdpo_linear.cc) ----
#if VT_X86
VT_AVX2_BEGIN
namespace vt {
namespace detail {

// exp on 8 floats (as exp16 in cdpo_avx512.cc); 2^k built in the exponent field.
static inline __m256 exp8f(__m256 x) {
  x = _mm256_max_ps(_mm256_set1_ps(-87.0f), x);  // constant first: a NaN logit stays NaN
  const __m256 k = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504f)), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m256 r = _mm256_fnmadd_ps(k, _mm256_set1_ps(0.693145751953125f), x);
  r = _mm256_fnmadd_ps(k, _mm256_set1_ps(1.428606765330187e-06f), r);
  __m256 q = _mm256_set1_ps(1.0f / 720.0f);
  q = _mm256_fmadd_ps(q, r, _mm256_set1_ps(1.0f / 120.0f));
  q = _mm256_fmadd_ps(q, r, _mm256_set1_ps(1.0f / 24.0f));
  q = _mm256_fmadd_ps(q, r, _mm256_set1_ps(1.0f / 6.0f));
  q = _mm256_fmadd_ps(q, r, _mm256_set1_ps(0.5f));
  q = _mm256_fmadd_ps(q, r, _mm256_set1_ps(1.0f));
  q = _mm256_fmadd_ps(q, r, _mm256_set1_ps(1.0f));
  const __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(k), _mm256_set1_epi32(127)), 23);
  return _mm256_mul_ps(q, _mm256_castsi256_ps(e));
}

static inline float hsum8(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  return _mm_cvtss_f32(_mm_add_ss(s, _mm_shuffle_ps(s, s, 1)));
}

float cdpo_row_max_avx2(const float* z, int64_t n) {
  __m256 m = _mm256_set1_ps(-INFINITY);
  int64_t v = 0;
  for (; v + 8 <= n; v += 8) m = _mm256_max_ps(m, _mm256_loadu_ps(z + v));
  __m128 h = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
  h = _mm_max_ps(h, _mm_movehl_ps(h, h));
  float r = _mm_cvtss_f32(_mm_max_ss(h, _mm_shuffle_ps(h, h, 1)));
  for (; v < n; ++v) r = z[v] > r ? z[v] : r;
  return r;
}

double cdpo_row_exp_sum_avx2(float* z, int64_t n, float m) {
  const __m256 mv = _mm256_set1_ps(m);
  double total = 0;
  int64_t v = 0;
  while (v + 16 <= n) {
    const int64_t stop = n - 15 < v + 4096 ? n - 15 : v + 4096;
    __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
    for (; v < stop; v += 16) {
      const __m256 e0 = exp8f(_mm256_sub_ps(_mm256_loadu_ps(z + v), mv));
      const __m256 e1 = exp8f(_mm256_sub_ps(_mm256_loadu_ps(z + v + 8), mv));
      _mm256_storeu_ps(z + v, e0);
      _mm256_storeu_ps(z + v + 8, e1);
      acc0 = _mm256_add_ps(acc0, e0);
      acc1 = _mm256_add_ps(acc1, e1);
    }
    total += double(hsum8(_mm256_add_ps(acc0, acc1)));
  }
  for (; v < n; ++v) {
    z[v] = std::exp(z[v] - m);
    total += z[v];
  }
  return total;
}

}  // namespace detail
}  // namespace vt
VT_AVX2_END
#endif
