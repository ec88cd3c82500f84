// Scalar forms of the vector primitives (vec.h) and the run-time dispatch.
#include "vec.h"

#include <cmath>

#include "half.h"
#include "simd.h"

namespace vt {

float load_f32(const void* w, DType dt, int64_t i) {
  if (dt == DType::BF16) return bf16_to_f32(static_cast<const uint16_t*>(w)[i]);
  if (dt == DType::F16) return f16_to_f32(static_cast<const uint16_t*>(w)[i]);
  return static_cast<const float*>(w)[i];
}

namespace {
inline const void* row_ptr(const void* w, DType dt, int64_t n, int64_t K) {
  return static_cast<const char*>(w) + n * K * int64_t(dtype_size(dt));
}
}  // namespace

// Eight partial sums, combined pairwise: the same association as the SIMD forms' lanes roughly
// have, so the scalar level stays close to them.
void gemv_rows_scalar(float* y, int64_t ldy, const float* x, int64_t ldx, int64_t T, const void* w, DType wdt,
                      int64_t K, int64_t n0, int64_t n1) {
  for (int64_t n = n0; n < n1; n++) {
    const void* wr = row_ptr(w, wdt, n, K);
    for (int64_t t = 0; t < T; t++) {
      float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
      int64_t i = 0;
      for (; i + 8 <= K; i += 8)
        for (int l = 0; l < 8; l++) acc[l] += load_f32(wr, wdt, i + l) * x[t * ldx + i + l];
      float s = ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
      for (; i < K; i++) s += load_f32(wr, wdt, i) * x[t * ldx + i];
      y[t * ldy + n] = s;
    }
  }
}
void widen_rows_scalar(float* dst, const void* w, DType wdt, int64_t K, int64_t n0, int64_t n1) {
  for (int64_t n = n0; n < n1; n++) {
    const void* wr = row_ptr(w, wdt, n, K);
    for (int64_t i = 0; i < K; i++) dst[(n - n0) * K + i] = load_f32(wr, wdt, i);
  }
}
float vec_dot_scalar(const float* a, const float* b, int64_t n) {
  float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    for (int l = 0; l < 8; l++) acc[l] += a[i + l] * b[i + l];
  float s = ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
  for (; i < n; i++) s += a[i] * b[i];
  return s;
}
void vec_axpy_scalar(float* y, float a, const float* x, int64_t n) {
  for (int64_t i = 0; i < n; i++) y[i] += a * x[i];
}
double vec_sumsq_scalar(const float* x, int64_t n) {
  double s = 0;
  for (int64_t i = 0; i < n; i++) s += double(x[i]) * x[i];
  return s;
}

float vec_max_scalar(const float* x, int64_t n) {
  float m = -INFINITY;
  for (int64_t i = 0; i < n; i++) m = x[i] > m ? x[i] : m;
  return m;
}
float vec_exp_sum_scalar(const float* x, float* p, int64_t n, float scale, float shift) {
  float s = 0.0f;
  for (int64_t i = 0; i < n; i++) {
    const float e = x[i] == -INFINITY ? 0.0f : std::exp(scale * x[i] - shift);
    p[i] = e;
    s += e;
  }
  return s;
}
float vec_max(const float* x, int64_t n) {
  return cpu().use_avx512 ? vec_max_avx512(x, n) : cpu().use_avx2 ? vec_max_avx2(x, n) : vec_max_scalar(x, n);
}
float vec_exp_sum(const float* x, float* p, int64_t n, float scale, float shift) {
  return cpu().use_avx512 ? vec_exp_sum_avx512(x, p, n, scale, shift)
         : cpu().use_avx2 ? vec_exp_sum_avx2(x, p, n, scale, shift)
                          : vec_exp_sum_scalar(x, p, n, scale, shift);
}

void gemv_rows(float* y, int64_t ldy, const float* x, int64_t ldx, int64_t T, const void* w, DType wdt, int64_t K,
               int64_t n0, int64_t n1) {
  if (cpu().use_avx512) gemv_rows_avx512(y, ldy, x, ldx, T, w, wdt, K, n0, n1);
  else if (cpu().use_avx2) gemv_rows_avx2(y, ldy, x, ldx, T, w, wdt, K, n0, n1);
  else gemv_rows_scalar(y, ldy, x, ldx, T, w, wdt, K, n0, n1);
}
void widen_rows(float* dst, const void* w, DType wdt, int64_t K, int64_t n0, int64_t n1) {
  if (cpu().use_avx512) widen_rows_avx512(dst, w, wdt, K, n0, n1);
  else if (cpu().use_avx2) widen_rows_avx2(dst, w, wdt, K, n0, n1);
  else widen_rows_scalar(dst, w, wdt, K, n0, n1);
}
float vec_dot(const float* a, const float* b, int64_t n) {
  return cpu().use_avx512 ? vec_dot_avx512(a, b, n) : cpu().use_avx2 ? vec_dot_avx2(a, b, n) : vec_dot_scalar(a, b, n);
}
void vec_axpy(float* y, float a, const float* x, int64_t n) {
  if (cpu().use_avx512) vec_axpy_avx512(y, a, x, n);
  else if (cpu().use_avx2) vec_axpy_avx2(y, a, x, n);
  else vec_axpy_scalar(y, a, x, n);
}
double vec_sumsq(const float* x, int64_t n) {
  return cpu().use_avx512 ? vec_sumsq_avx512(x, n) : cpu().use_avx2 ? vec_sumsq_avx2(x, n) : vec_sumsq_scalar(x, n);
}

}  // namespace vt
