// Single-precision GEMM, row-major:  C (M, N) = alpha * op(A) (M, K) * op(B) (K, N) + beta * C
// op(A) = A (M, K) with row stride lda, or A^T when transA (A stored (K, M), row stride lda).
// op(B) = B (K, N) with row stride ldb, or B^T when transB (B stored (N, K), row stride ldb).
// Strides are in elements. When beta == 0, C is not read (it may hold NaN).
#pragma once
#include <cstdint>
#include <functional>

namespace vt {

enum class GemmImpl { Auto, Blas, Builtin, Naive };

// Every GEMM of the package goes through here. Auto: gemm_auto() for these sizes (the builtin
// GEMM or the BLAS, by the rule gemm.cc explains); Blas falls back to the builtin GEMM when no BLAS
// is linked or the sizes pass its 32-bit indices.
void sgemm(bool transA, bool transB, int64_t M, int64_t N, int64_t K, float alpha, const float* A, int64_t lda,
           const float* B, int64_t ldb, float beta, float* C, int64_t ldc, GemmImpl impl = GemmImpl::Auto);

// The builtin blocked GEMM on the calling thread only (for use inside other kernels' threads,
// where a BLAS would start threads of its own).
void sgemm_serial(bool transA, bool transB, int64_t M, int64_t N, int64_t K, float alpha, const float* A,
                  int64_t lda, const float* B, int64_t ldb, float beta, float* C, int64_t ldc);

// The builtin GEMMs' threading (f32 and bf16 alike): the wider output dimension is split among
// the threads in whole register tiles (mr rows or nr columns), so that each thread owns its
// outputs and the bits do not depend on the thread count. run(split_n, b, e) computes rows
// [b, e) of C (split_n false) or its columns [b, e); one call on this thread for small problems.
void gemm_split(int64_t M, int64_t N, int64_t K, int mr, int nr,
                const std::function<void(bool split_n, int64_t b, int64_t e)>& run);

// What GemmImpl::Auto runs on this CPU at the current SIMD level, and why (for backend()).
struct GemmChoice {
  GemmImpl impl;       // Builtin or Blas
  const char* reason;  // one sentence, static storage
};
GemmChoice gemm_auto();

}  // namespace vt
