// Internals of the builtin GEMM (gemm.cc): the register microkernel and the two panel packers of
// one SIMD level. Each level's file defines its set; gemm.cc picks one per call from cpu().level.
//
// Packed panels are k-major. An A panel holds W = mr rows of op(A): ap[k * mr + i]; a B panel
// holds W = nr columns of op(B): bp[k * nr + j]. Rows/columns past the matrix edge are zero.
#pragma once
#include <cstdint>

namespace vt {
namespace detail {

// C (m x n corner of an mr x nr tile, row stride ldc) = alpha * sum_k ap[k] bp[k]^T + beta * C.
// m <= mr, n <= nr; C is not read when beta == 0 (it may hold NaN), and nothing outside the
// m x n corner is touched, so edge tiles need no scratch copy.
using GemmUkr = void (*)(int64_t kc, const float* ap, const float* bp, float* c, int64_t ldc, float alpha, float beta,
                         int m, int n);

// Copying pack: out[k * W + j] = src[k * ld + j] for j < cols, 0 for cols <= j < W (k < kc).
// Serves op(A) = A^T (A stored (K, M)) and op(B) = B (stored (K, N)): rows of src run along the
// panel's width.
using GemmPackCopy = void (*)(const float* src, int64_t ld, int64_t kc, int64_t cols, float* out, int W);

// Transposing pack: out[k * W + r] = src[r * ld + k] for r < rows, 0 for rows <= r < W (k < kc).
// Serves op(A) = A (stored (M, K)) and op(B) = B^T (B stored (N, K)): rows of src run along k,
// so the panel is a transpose of rows x kc, done in SIMD registers 16 x 16 (8 x 8 for AVX2).
using GemmPackTrans = void (*)(const float* src, int64_t ld, int64_t rows, int64_t kc, float* out, int W);

// One level's register tile, cache blocking and functions. Blocking: the jc/pc/ic loops of gemm.cc
// walk NC columns, KC depth and MC rows at a time; a packed A block (MC x KC) should sit in L2 and
// a packed B block (KC x NC) in L3.
struct GemmKernels {
  int mr, nr;
  int64_t kc, mc, nc;
  GemmUkr ukr;
  GemmPackCopy pack_copy;
  GemmPackTrans pack_trans;
};

// 12 x 32 tile (24 zmm accumulators), 16 x 16 register transposes.
GemmKernels gemm_kernels_avx512();
// 6 x 16 tile (12 ymm accumulators), 8 x 8 register transposes.
GemmKernels gemm_kernels_avx2();
// 6 x 16 tile in plain C++ (the same tile_fma the CUDA kernel runs), scalar packers.
GemmKernels gemm_kernels_scalar();

// The scalar packers, for tests of the SIMD ones and for levels without their own.
void gemm_pack_copy_scalar(const float* src, int64_t ld, int64_t kc, int64_t cols, float* out, int W);
void gemm_pack_trans_scalar(const float* src, int64_t ld, int64_t rows, int64_t kc, float* out, int W);

}  // namespace detail
}  // namespace vt
