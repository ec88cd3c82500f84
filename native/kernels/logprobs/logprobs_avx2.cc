// AVX2 row kernels of the log-prob gathering family (gather_rows.h), for CPUs without AVX-512.
#include <cmath>
#include <cstdint>

#include "../../core/simd.h"
#include "logprobs_rows.h"

#if VT_X86
#include <immintrin.h>

VT_AVX2_BEGIN
#define VT_VEXP_AVX2
#include "../../core/vexp.h"
namespace vt {
namespace gather {
namespace detail {
namespace {

using vexp::exp256;

inline __m256 load_tail(const float* x, int64_t left, float fill) {
  alignas(32) float buf[8];
  for (int i = 0; i < 8; ++i) buf[i] = i < left ? x[i] : fill;
  return _mm256_load_ps(buf);
}

inline float hmax(__m256 v) {
  __m128 m = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  m = _mm_max_ps(m, _mm_movehl_ps(m, m));
  m = _mm_max_ss(m, _mm_shuffle_ps(m, m, 1));
  return _mm_cvtss_f32(m);
}
inline float hsum(__m256 v) {
  __m128 m = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  m = _mm_add_ps(m, _mm_movehl_ps(m, m));
  m = _mm_add_ss(m, _mm_shuffle_ps(m, m, 1));
  return _mm_cvtss_f32(m);
}

}  // namespace

SoftmaxState row_state_avx2(const float* x, int64_t n, float scale, bool entropy) {
  SoftmaxState st = softmax_state_empty();
  const __m256 vs = _mm256_set1_ps(scale);
  for (int64_t c0 = 0; c0 < n; c0 += kChunk) {
    const int64_t len = n - c0 < kChunk ? n - c0 : kChunk;
    const float* xc = x + c0;
    __m256 m0 = _mm256_set1_ps(-INFINITY), m1 = m0;
    int64_t v = 0;
    for (; v + 16 <= len; v += 16) {
      m0 = _mm256_max_ps(m0, _mm256_loadu_ps(xc + v));
      m1 = _mm256_max_ps(m1, _mm256_loadu_ps(xc + v + 8));
    }
    for (; v < len; v += 8) m0 = _mm256_max_ps(m0, len - v >= 8 ? _mm256_loadu_ps(xc + v) : load_tail(xc + v, len - v, -INFINITY));
    const float cm = hmax(_mm256_max_ps(m0, m1)) * scale;
    if (cm == -INFINITY) {
      if (has_nan(xc, len)) softmax_state_merge(st, softmax_state_nan());
      continue;
    }
    const __m256 vm = _mm256_set1_ps(cm);
    __m256 s0 = _mm256_setzero_ps(), t0 = s0;
    for (v = 0; v < len; v += 8) {
      const __m256 d = _mm256_fmsub_ps(len - v >= 8 ? _mm256_loadu_ps(xc + v) : load_tail(xc + v, len - v, -INFINITY), vs, vm);
      const __m256 e = exp256(d);
      s0 = _mm256_add_ps(s0, e);
      if (entropy) {
        const __m256 live = _mm256_cmp_ps(e, _mm256_setzero_ps(), _CMP_NEQ_OQ);
        t0 = _mm256_add_ps(t0, _mm256_and_ps(live, _mm256_mul_ps(e, d)));
      }
    }
    softmax_state_merge(st, SoftmaxState{double(cm), double(hsum(s0)), double(hsum(t0))});
  }
  return st;
}

void row_grad_avx2(const float* x, int64_t n, float scale, float lse, float coef, float* out) {
  const __m256 vs = _mm256_set1_ps(scale), vl = _mm256_set1_ps(lse), vc = _mm256_set1_ps(-coef);
  int64_t v = 0;
  for (; v + 8 <= n; v += 8)
    _mm256_storeu_ps(out + v, _mm256_mul_ps(vc, exp256(_mm256_fmsub_ps(_mm256_loadu_ps(x + v), vs, vl))));
  for (; v < n; ++v) out[v] = -coef * std::exp(x[v] * scale - lse);
}

}  // namespace detail
}  // namespace gather
}  // namespace vt
VT_AVX2_END
#endif
