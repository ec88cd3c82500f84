// Linear layer with optional bias and LoRA adapter, forward and backward (CPU; CUDA forms in
// linear.cu). Activations are f32 row-major; the weight may be stored as f32, bf16 or f16 and is
// widened as it is read; gradients are f32.
//
// Letters: T rows (tokens or patches), K input features, N output features, r LoRA rank.
// Argument order (everywhere in native/ops): outputs, saved, inputs, weights, sizes.
#pragma once
#include <cstdint>

#include "../core/dtype.h"
#include "../core/storage.h"

namespace vt {

// Up to this many rows the weight rows are streamed once through the GEMV (decode, short
// prompts); beyond it the rows are multiplied in blocks of kLinearBlockN by the builtin GEMM.
constexpr int64_t kLinearGemvRows = 8;
constexpr int64_t kLinearBlockN = 64;

// y (T, N) = x (T, K) @ w (N, K)^T [+ b (N)]. y must not alias x. Parallel inside.
void linear_forward_cpu(float* y, const float* x, WeightRef w, WeightRef b, int64_t T, int64_t K, int64_t N);
// The same, for a thread team already running (tid of nth): this thread writes its share of the
// output columns (whole register blocks); ws is this thread's workspace (grown as needed).
// Every member must call it with the same arguments; the result is the same for any nth.
void linear_forward_part(float* y, const float* x, WeightRef w, WeightRef b, int64_t T, int64_t K, int64_t N, int tid,
                         int nth, ScratchBuffer<float>& ws);
// The column range [n0, n1) that linear_forward_part gives thread tid of nth.
void linear_part_columns(int64_t T, int64_t N, int tid, int nth, int64_t& n0, int64_t& n1);

// dx (T, K) = dy (T, N) @ w (N, K): written, or added to when accumulate_dx; skipped when null.
// dw (N, K) += dy^T @ x and db (N) += column sums of dy, each skipped when null.
void linear_backward_cpu(float* dx, float* dw, float* db, const float* dy, const float* x, WeightRef w, int64_t T,
                         int64_t K, int64_t N, bool accumulate_dx);

// LoRA adapter beside a linear layer: y (T, N) += scale * t @ B^T with t (T, r) = x @ A^T,
// A (r, K), B (N, r) f32. t is written (saved for the backward).
void lora_forward_cpu(float* y, float* t, const float* x, const float* A, const float* B, float scale, int64_t T,
                      int64_t K, int64_t N, int64_t r);
// Team forms: rows [t0, t1) of t; then columns [n0, n1) of y (after a barrier).
void lora_down_rows(float* t, const float* x, const float* A, int64_t K, int64_t r, int64_t t0, int64_t t1);
void lora_up_columns(float* y, const float* t, const float* B, float scale, int64_t T, int64_t N, int64_t r,
                     int64_t n0, int64_t n1);
// With u (T, r) = scale * dy @ B: dB (N, r) += scale * dy^T @ t, dA (r, K) += u^T @ x,
// dx (T, K) += u @ A (dx, dA, dB each skipped when null). ws: workspace of T * r floats.
void lora_backward_cpu(float* dx, float* dA, float* dB, const float* dy, const float* x, const float* t, const float* A,
                       const float* B, float scale, int64_t T, int64_t K, int64_t N, int64_t r, float* ws);

// CUDA forms (all pointers on `device`; weights f32). Throw "CUDA not compiled in" in CPU-only builds.
void linear_forward_cuda(float* y, const float* x, const float* w, const float* b, int64_t T, int64_t K, int64_t N,
                         int device);
void linear_backward_cuda(float* dx, float* dw, float* db, const float* dy, const float* x, const float* w, int64_t T,
                          int64_t K, int64_t N, bool accumulate_dx, int device);

}  // namespace vt
