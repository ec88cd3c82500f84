// CPU row kernels of the log-prob gathering family (gather_cpu.cc dispatches to AVX-512, AVX2
// or scalar code by cpu()). z = x * scale (scale = 1 / temperature > 0).
#pragma once
#include <cstdint>

#include "logprobs_math.h"

namespace vt {
namespace gather {

// Softmax state (m, s, t) of one row of n logits; t (the entropy sum) only when `entropy`.
SoftmaxState row_state(const float* x, int64_t n, float scale, bool entropy);
// out[v] = -coef * exp(x[v] * scale - lse) for v in [0, n) (out may alias x).
void row_grad(const float* x, int64_t n, float scale, float lse, float coef, float* out);

// Whether x[0..n) holds a NaN. The row kernels' max passes may drop a NaN (max returns its other
// operand); their exp sums turn it into NaN whenever the chunk has a finite max, so only a chunk
// whose max came out -inf needs this scan (a rare path: a fully masked chunk).
bool has_nan(const float* x, int64_t n);

namespace detail {
// Values per chunk: a chunk's sums are float lanes, folded into double per chunk.
constexpr int64_t kChunk = 2048;
SoftmaxState row_state_scalar(const float* x, int64_t n, float scale, bool entropy);
SoftmaxState row_state_avx2(const float* x, int64_t n, float scale, bool entropy);
SoftmaxState row_state_avx512(const float* x, int64_t n, float scale, bool entropy);
void row_grad_scalar(const float* x, int64_t n, float scale, float lse, float coef, float* out);
void row_grad_avx2(const float* x, int64_t n, float scale, float lse, float coef, float* out);
void row_grad_avx512(const float* x, int64_t n, float scale, float lse, float coef, float* out);
}  // namespace detail

}  // namespace gather
}  // namespace vt
