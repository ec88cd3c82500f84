// GEMM with bf16 products: C (M, N) = alpha * op(A) op(B) + beta * C, where every element of
// op(A) and op(B) is rounded to bf16 (round to nearest even; bf16 storage is taken as it is) and
// the products, exact in f32, are summed in f32. The conventions are sgemm's (gemm.h): row-major,
// strides in elements, C not read when beta == 0.
//
// Why: on CPUs with AVX512_BF16 (Cooper Lake, Sapphire Rapids, Zen 4) one VDPBF16PS does the work
// of two f32 FMAs, so a GEMM that rounds its operands to bf16 runs at up to twice the f32 peak
// (measured on Zen 4: 234 against 117 GFLOP/s per core in a register-bound loop). The price is
// the operands' precision: 8 significant bits instead of 24, as in PyTorch's bf16 autocast. It is
// never chosen by Auto: callers ask for it (matmul's impl 'bf16', the LM head's precision 'bf16').
//
// Elsewhere (no AVX512_BF16, or a SIMD level below Avx512) the rounded operands go through the
// f32 GEMM: the same products and sums in another order, with no speedup.
#pragma once
#include <cstdint>

#include "dtype.h"

namespace vt {

// A and B are F32 or BF16 storage.
void gemm_bf16(bool transA, bool transB, int64_t M, int64_t N, int64_t K, float alpha, const void* A, DType adt,
               int64_t lda, const void* B, DType bdt, int64_t ldb, float beta, float* C, int64_t ldc);

// The same on the calling thread only (inside another kernel's thread team).
void gemm_bf16_serial(bool transA, bool transB, int64_t M, int64_t N, int64_t K, float alpha, const void* A, DType adt,
                      int64_t lda, const void* B, DType bdt, int64_t ldb, float beta, float* C, int64_t ldc);

// f32 operands at a chosen precision: gemm_bf16 when bf16, else sgemm (GemmImpl::Auto).
void sgemm_at(bool bf16, bool transA, bool transB, int64_t M, int64_t N, int64_t K, float alpha, const float* A,
              int64_t lda, const float* B, int64_t ldb, float beta, float* C, int64_t ldc);

// Whether gemm_bf16 runs the VDPBF16PS kernels now (the CPU has AVX512_BF16, the level is Avx512).
bool gemm_bf16_native();

// The process's matmul precision (setMatmulPrecision): false f32 (the default), true bf16
// products. The network's CPU GEMMs (the linears of every layer and the LM head, forward and
// backward; not the decode GEMV, not attention) read it when they run; the TS layer uses it as
// the default of the kernels' precision option.
void set_matmul_bf16(bool on);
bool matmul_bf16();

namespace detail {

// Packed panels of bf16 pairs: one 32-bit lane holds op(X)[.., k] in its low half and
// op(X)[.., k + 1] in its high half, so a panel of W columns and kc values of k is
// ceil(kc / 2) rows of W lanes (k past kc reads as 0). An A panel is 12 wide, a B panel 32.
struct Bf16Kernels {
  // C (m x n corner of the 12 x 32 tile) = alpha * sum over kp pairs + beta * C (C unread at beta 0).
  void (*ukr)(int64_t kp, const uint32_t* ap, const uint32_t* bp, float* c, int64_t ldc, float alpha, float beta, int m,
              int n);
  // Transposing packs (rows of src run along k): src rows r < rows, k < kc.
  void (*pack_trans_f32)(const float* src, int64_t ld, int64_t rows, int64_t kc, uint32_t* out, int W);
  void (*pack_trans_bf16)(const uint16_t* src, int64_t ld, int64_t rows, int64_t kc, uint32_t* out, int W);
  // Copying packs (rows of src are values of k, columns run along the panel): cols <= W.
  void (*pack_copy_f32)(const float* src, int64_t ld, int64_t kc, int64_t cols, uint32_t* out, int W);
  void (*pack_copy_bf16)(const uint16_t* src, int64_t ld, int64_t kc, int64_t cols, uint32_t* out, int W);
};

// The AVX512_BF16 set; false where the compiler could not build it (then the fallback runs).
bool gemm_bf16_kernels_avx512(Bf16Kernels& k);

}  // namespace detail
}  // namespace vt
