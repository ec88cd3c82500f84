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
// p[j] = exp(s[j] - m) (0 where s is -inf, NaN where s is NaN); returns the sum.
float exp_shift(const float* s, float* p, int64_t n, float m);

// max of s[0..n) (-inf for n = 0); NaN when the values are -inf or NaN and one is NaN (a max
// instruction drops NaN; a finite max lets the NaN through the exp sum instead).
float row_max(const float* s, int64_t n);
// Whether s[0..n) holds a NaN.
bool has_nan(const float* s, int64_t n);
// One online-softmax step for a tile of scores s [br, bc] (row stride ld): per row, moves the
// running max m to include the tile, writes alpha[i] (the factor for the old accumulator),
// p = exp(s - m) into p [br, ld] (0 for -inf scores) and adds its sum to l.
void softmax_tile(const float* s, float* p, int64_t br, int64_t bc, int64_t ld, float* m, float* l, float* alpha);

namespace detail {
void pack_cols_avx512(const float* x, int64_t H, int64_t D, int64_t r0, int64_t n, int64_t h, float* dst, int64_t ld);
float row_max_avx512(const float* s, int64_t n);
void softmax_tile_avx512(const float* s, float* p, int64_t br, int64_t bc, int64_t ld, float* m, float* l, float* alpha);
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
