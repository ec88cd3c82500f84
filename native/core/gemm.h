// Single-precision GEMM, row-major:  C (M, N) = alpha * op(A) (M, K) * op(B) (K, N) + beta * C
// op(A) = A (M, K) with row stride lda, or A^T when transA (A stored (K, M), row stride lda).
// op(B) = B (K, N) with row stride ldb, or B^T when transB (B stored (N, K), row stride ldb).
// Strides are in elements. When beta == 0, C is not read (it may hold NaN).
#pragma once
#include <cstdint>

namespace vt {

enum class GemmImpl { Auto, Blas, Builtin, Naive };

// Auto: the BLAS when the build has one and the sizes fit its 32-bit indices, else builtin.
void sgemm(bool transA, bool transB, int64_t M, int64_t N, int64_t K, float alpha, const float* A, int64_t lda,
           const float* B, int64_t ldb, float beta, float* C, int64_t ldc, GemmImpl impl = GemmImpl::Auto);

// The builtin blocked GEMM on the calling thread only (for use inside other kernels' threads).
void sgemm_serial(bool transA, bool transB, int64_t M, int64_t N, int64_t K, float alpha, const float* A,
                  int64_t lda, const float* B, int64_t ldb, float beta, float* C, int64_t ldc);

// Register-tile sizes of the builtin microkernel (6 rows x 16 columns: 12 ymm accumulators).
constexpr int kGemmMR = 6;
constexpr int kGemmNR = 16;

// Microkernel over packed panels: ap holds kc x MR (k-major), bp holds kc x NR (k-major).
// Writes the full MR x NR tile: C = alpha * acc + beta * C (C not read when beta == 0).
using GemmMicroKernel = void (*)(int64_t kc, const float* ap, const float* bp, float* c, int64_t ldc, float alpha,
                                 float beta);
GemmMicroKernel gemm_microkernel();  // AVX2+FMA when the CPU has it, else scalar

namespace detail {
// 12 x 32 AVX-512 microkernel (24 zmm accumulators); panels packed 12 rows / 32 columns wide.
void gemm_ukr_avx512_12x32(int64_t kc, const float* ap, const float* bp, float* c, int64_t ldc, float alpha, float beta);
void gemm_ukr_scalar(int64_t kc, const float* ap, const float* bp, float* c, int64_t ldc, float alpha, float beta);
void gemm_ukr_avx2(int64_t kc, const float* ap, const float* bp, float* c, int64_t ldc, float alpha, float beta);
}  // namespace detail

}  // namespace vt
