// Tile kernels of the CPU fused attention (flash_cpu.cc dispatches by cpu()).
#pragma once
#include <cstdint>

namespace vt {
namespace flash {

// C[M, N] = (acc ? C : 0) + A[M, K] B[K, N]; row-major with leading dimensions; small sizes.
// With acc and row_scale, row i of C is first multiplied by row_scale[i] (the online softmax's
// rescale folded into the accumulation).
void nn(int64_t M, int64_t N, int64_t K, const float* A, int64_t lda, const float* B, int64_t ldb, float* C, int64_t ldc,
        bool acc, const float* row_scale = nullptr);
// p[j] = exp(s[j] - m) (0 where s is -inf); returns the sum.
float exp_shift(const float* s, float* p, int64_t n, float m);

// max of s[0..n) (-inf for n = 0).
float row_max(const float* s, int64_t n);

namespace detail {
float row_max_avx512(const float* s, int64_t n);
float row_max_avx2(const float* s, int64_t n);
void nn_avx512(int64_t M, int64_t N, int64_t K, const float* A, int64_t lda, const float* B, int64_t ldb, float* C,
               int64_t ldc, bool acc, const float* row_scale);
float exp_shift_avx512(const float* s, float* p, int64_t n, float m);
void nn_avx2(int64_t M, int64_t N, int64_t K, const float* A, int64_t lda, const float* B, int64_t ldb, float* C,
             int64_t ldc, bool acc, const float* row_scale);
float exp_shift_avx2(const float* s, float* p, int64_t n, float m);
}  // namespace detail

}  // namespace flash
}  // namespace vt
