// AVX-512 row kernels of the log-prob gathering family (gather_rows.h).
#include <cmath>
#include <cstdint>

#include "../../core/simd.h"
#include "logprobs_rows.h"

#if VT_X86
#include <immintrin.h>

VT_AVX512_BEGIN
#define VT_VEXP_AVX512
#include "../../core/vexp.h"
namespace vt {
namespace gather {
namespace detail {
namespace {

using vexp::exp512;
using vexp::exp512_nonpos;


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

namespace {

// Sum of exp(x * scale - shift) over n values (4 accumulators), and the max of x on the way.
// Sum of exp(x * scale - shift) over n values (4 accumulators).
inline float shifted_sum(const float* xc, int64_t len, __m512 vs, float shift) {
  const __m512 vm = _mm512_set1_ps(shift);
  __m512 s0 = _mm512_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;
  int64_t v = 0;
  for (; v + 64 <= len; v += 64) {
    s0 = _mm512_add_ps(s0, exp512_nonpos(_mm512_fmsub_ps(_mm512_loadu_ps(xc + v), vs, vm)));
    s1 = _mm512_add_ps(s1, exp512_nonpos(_mm512_fmsub_ps(_mm512_loadu_ps(xc + v + 16), vs, vm)));
    s2 = _mm512_add_ps(s2, exp512_nonpos(_mm512_fmsub_ps(_mm512_loadu_ps(xc + v + 32), vs, vm)));
    s3 = _mm512_add_ps(s3, exp512_nonpos(_mm512_fmsub_ps(_mm512_loadu_ps(xc + v + 48), vs, vm)));
  }
  for (; v < len; v += 16) {
    const __mmask16 k = len - v >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << (len - v)) - 1);
    const __m512 a = _mm512_mask_loadu_ps(_mm512_set1_ps(-INFINITY), k, xc + v);
    // Masked-off lanes add exactly 0.
    s0 = _mm512_mask_add_ps(s0, k, s0, exp512_nonpos(_mm512_fmsub_ps(a, vs, vm)));
  }
  return _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(s0, s1), _mm512_add_ps(s2, s3)));
}

}  // namespace

SoftmaxState row_state_avx512(const float* x, int64_t n, float scale, bool entropy) {
  SoftmaxState st = softmax_state_empty();
  const __m512 vs = _mm512_set1_ps(scale);
  for (int64_t c0 = 0; c0 < n; c0 += kChunk) {
    const int64_t len = n - c0 < kChunk ? n - c0 : kChunk;
    const float* xc = x + c0;
    if (!entropy && st.m != -INFINITY) {
      // One pass, shifted by the running max. A sum below 1e13 proves that no value exceeds the
      // shift by more than 30 (e^30 = 1.07e13), where precision and overflow are no concern (the
      // shift only needs to bound the values, not be their max); a chunk that rises further, or
      // overflows to inf, is summed again with its own max.
      const float shift = float(st.m);
      const float s = shifted_sum(xc, len, vs, shift);
      if (s < 1e13f) {
        softmax_state_merge(st, SoftmaxState{double(shift), double(s), 0.0});
        continue;
      }
    }
    const float cm = chunk_max(xc, len) * scale;
    if (cm == -INFINITY) {
      if (has_nan(xc, len)) softmax_state_merge(st, softmax_state_nan());
      continue;
    }
    if (!entropy) {
      const float s = shifted_sum(xc, len, vs, cm);
      softmax_state_merge(st, SoftmaxState{double(cm), double(s), 0.0});
      continue;
    }
    const __m512 vm = _mm512_set1_ps(cm);
    __m512 s0 = _mm512_setzero_ps(), t0 = s0;
    for (int64_t v = 0; v < len; v += 16) {
      const __mmask16 k = len - v >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << (len - v)) - 1);
      const __m512 d = _mm512_fmsub_ps(_mm512_mask_loadu_ps(_mm512_set1_ps(-INFINITY), k, xc + v), vs, vm);
      const __m512 e = exp512(d);
      s0 = _mm512_add_ps(s0, e);
      // e * (z - m), with -inf entries (e == 0) adding 0 rather than NaN.
      const __mmask16 live = _mm512_cmp_ps_mask(e, _mm512_setzero_ps(), _CMP_NEQ_OQ);
      t0 = _mm512_mask3_fmadd_ps(e, d, t0, live);
    }
    softmax_state_merge(st, SoftmaxState{double(cm), double(_mm512_reduce_add_ps(s0)), double(_mm512_reduce_add_ps(t0))});
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
