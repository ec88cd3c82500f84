// AVX-512 row kernels of the log-prob gathering family (gather_rows.h).
#include <cmath>
#include <cstdint>

#include "../core/simd.h"
#include "gather_rows.h"

#if VT_X86
#include <immintrin.h>

VT_AVX512_BEGIN
namespace vt {
namespace gather {
namespace detail {
namespace {

// exp(x) to ~1 ulp: x = n ln2 + r, |r| <= ln2/2, degree-6 polynomial, 2^n by scalef.
// Below -87.3 the result is 0 (exactly, so -inf logits add nothing); above 88.7, inf.
inline __m512 exp512(__m512 x) {
  const __m512 lo = _mm512_set1_ps(-87.3f);
  const __mmask16 tiny = _mm512_cmp_ps_mask(x, lo, _CMP_LT_OQ);
  x = _mm512_max_ps(x, lo);
  x = _mm512_min_ps(x, _mm512_set1_ps(88.7f));
  const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), x);
  r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);
  __m512 p = _mm512_set1_ps(1.0f / 720.0f);
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 120.0f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 24.0f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 6.0f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(0.5f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
  p = _mm512_scalef_ps(p, n);
  return _mm512_mask_mov_ps(p, tiny, _mm512_setzero_ps());
}

inline float chunk_max(const float* x, int64_t n) {
  __m512 m0 = _mm512_set1_ps(-INFINITY), m1 = m0;
  int64_t v = 0;
  for (; v + 32 <= n; v += 32) {
    m0 = _mm512_max_ps(m0, _mm512_loadu_ps(x + v));
    m1 = _mm512_max_ps(m1, _mm512_loadu_ps(x + v + 16));
  }
  for (; v < n; v += 16) {
    const __mmask16 k = n - v >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << (n - v)) - 1);
    m0 = _mm512_max_ps(m0, _mm512_mask_loadu_ps(_mm512_set1_ps(-INFINITY), k, x + v));
  }
  return _mm512_reduce_max_ps(_mm512_max_ps(m0, m1));
}

}  // namespace

SoftmaxState row_state_avx512(const float* x, int64_t n, float scale, bool entropy) {
  SoftmaxState st = softmax_state_empty();
  const __m512 vs = _mm512_set1_ps(scale);
  for (int64_t c0 = 0; c0 < n; c0 += kChunk) {
    const int64_t len = n - c0 < kChunk ? n - c0 : kChunk;
    const float* xc = x + c0;
    const float cm = chunk_max(xc, len) * scale;
    if (cm == -INFINITY) continue;
    const __m512 vm = _mm512_set1_ps(cm);
    __m512 s0 = _mm512_setzero_ps(), s1 = s0, t0 = s0, t1 = s0;
    int64_t v = 0;
    if (!entropy) {
      for (; v + 32 <= len; v += 32) {
        s0 = _mm512_add_ps(s0, exp512(_mm512_fmsub_ps(_mm512_loadu_ps(xc + v), vs, vm)));
        s1 = _mm512_add_ps(s1, exp512(_mm512_fmsub_ps(_mm512_loadu_ps(xc + v + 16), vs, vm)));
      }
      for (; v < len; v += 16) {
        const __mmask16 k = len - v >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << (len - v)) - 1);
        const __m512 z = _mm512_mask_loadu_ps(_mm512_set1_ps(-INFINITY), k, xc + v);
        s0 = _mm512_add_ps(s0, exp512(_mm512_fmsub_ps(z, vs, vm)));
      }
    } else {
      for (; v < len; v += 16) {
        const __mmask16 k = len - v >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << (len - v)) - 1);
        const __m512 z = _mm512_mul_ps(_mm512_mask_loadu_ps(_mm512_set1_ps(-INFINITY), k, xc + v), vs);
        const __m512 e = exp512(_mm512_sub_ps(z, vm));
        s0 = _mm512_add_ps(s0, e);
        // e * z, with -inf entries (e == 0) adding 0 rather than NaN.
        const __mmask16 live = _mm512_cmp_ps_mask(e, _mm512_setzero_ps(), _CMP_NEQ_OQ);
        t0 = _mm512_mask3_fmadd_ps(e, z, t0, live);
      }
    }
    SoftmaxState c{double(cm), double(_mm512_reduce_add_ps(_mm512_add_ps(s0, s1))),
                   double(_mm512_reduce_add_ps(_mm512_add_ps(t0, t1)))};
    softmax_state_merge(st, c);
  }
  return st;
}

void row_grad_avx512(const float* x, int64_t n, float scale, float lse, float coef, float* out) {
  const __m512 vs = _mm512_set1_ps(scale), vl = _mm512_set1_ps(lse), vc = _mm512_set1_ps(-coef);
  int64_t v = 0;
  for (; v + 16 <= n; v += 16)
    _mm512_storeu_ps(out + v, _mm512_mul_ps(vc, exp512(_mm512_fmsub_ps(_mm512_loadu_ps(x + v), vs, vl))));
  if (v < n) {
    const __mmask16 k = __mmask16((1u << (n - v)) - 1);
    const __m512 z = _mm512_mask_loadu_ps(_mm512_set1_ps(-INFINITY), k, x + v);
    _mm512_mask_storeu_ps(out + v, k, _mm512_mul_ps(vc, exp512(_mm512_fmsub_ps(z, vs, vl))));
  }
}

}  // namespace detail
}  // namespace gather
}  // namespace vt
VT_AVX512_END
#endif
