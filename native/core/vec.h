// Vector primitives shared by every CPU kernel of the model: one definition each, with scalar,
// AVX2 and AVX-512 forms picked at run time (cpu().use_avx2 / use_avx512). Weights may be stored
// as f32, bf16 or f16 and are widened to f32 as they are read; arithmetic is f32 (sums of
// squares in double).
#pragma once
#include <cstdint>

#include "dtype.h"

namespace vt {

// sum_i a[i] * b[i]
float vec_dot(const float* a, const float* b, int64_t n);
// y[i] += a * x[i]
void vec_axpy(float* y, float a, const float* x, int64_t n);
// sum_i x[i]^2, accumulated in double (RMSNorm over thousands of channels keeps f32 accuracy).
double vec_sumsq(const float* x, int64_t n);
// dst (n1 - n0, K) f32 = rows [n0, n1) of w (N, K) stored as wdt.
void widen_rows(float* dst, const void* w, DType wdt, int64_t K, int64_t n0, int64_t n1);
// y (T, ldy)[:, n0:n1] = x (T, ldx) @ w[n0:n1] (rows of K, stored as wdt)^T: the weight rows are
// streamed once for up to 8 activation rows (decode, short prompts).
void gemv_rows(float* y, int64_t ldy, const float* x, int64_t ldx, int64_t T, const void* w, DType wdt, int64_t K,
               int64_t n0, int64_t n1);
// max of x[0..n) (-inf for n = 0; NaN elements are skipped by the SIMD forms' max instruction).
float vec_max(const float* x, int64_t n);
// p[j] = exp(scale * x[j] - shift) (exactly 0 where x[j] is -inf); returns the sum of p. p may
// alias x. For softmax rows: shift = scale * max(x), so every exponent is <= 0.
float vec_exp_sum(const float* x, float* p, int64_t n, float scale, float shift);
// One element of w stored as wdt, as f32.
float load_f32(const void* w, DType wdt, int64_t i);

// The ISA forms (vec.cc dispatches).
float vec_dot_scalar(const float* a, const float* b, int64_t n);
float vec_dot_avx2(const float* a, const float* b, int64_t n);
float vec_dot_avx512(const float* a, const float* b, int64_t n);
void vec_axpy_scalar(float* y, float a, const float* x, int64_t n);
void vec_axpy_avx2(float* y, float a, const float* x, int64_t n);
void vec_axpy_avx512(float* y, float a, const float* x, int64_t n);
double vec_sumsq_scalar(const float* x, int64_t n);
double vec_sumsq_avx2(const float* x, int64_t n);
double vec_sumsq_avx512(const float* x, int64_t n);
void widen_rows_scalar(float* dst, const void* w, DType wdt, int64_t K, int64_t n0, int64_t n1);
void widen_rows_avx2(float* dst, const void* w, DType wdt, int64_t K, int64_t n0, int64_t n1);
void widen_rows_avx512(float* dst, const void* w, DType wdt, int64_t K, int64_t n0, int64_t n1);
float vec_max_scalar(const float* x, int64_t n);
float vec_max_avx2(const float* x, int64_t n);
float vec_max_avx512(const float* x, int64_t n);
float vec_exp_sum_scalar(const float* x, float* p, int64_t n, float scale, float shift);
float vec_exp_sum_avx2(const float* x, float* p, int64_t n, float scale, float shift);
float vec_exp_sum_avx512(const float* x, float* p, int64_t n, float scale, float shift);
void gemv_rows_scalar(float* y, int64_t ldy, const float* x, int64_t ldx, int64_t T, const void* w, DType wdt,
                      int64_t K, int64_t n0, int64_t n1);
void gemv_rows_avx2(float* y, int64_t ldy, const float* x, int64_t ldx, int64_t T, const void* w, DType wdt,
                    int64_t K, int64_t n0, int64_t n1);
void gemv_rows_avx512(float* y, int64_t ldy, const float* x, int64_t ldx, int64_t T, const void* w, DType wdt,
                      int64_t K, int64_t n0, int64_t n1);

}  // namespace vt
