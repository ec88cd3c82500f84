// Log-prob gathering (issue: RL fine-tuning needs log p(sampled token) under several models):
// from logits, and fused with the LM head so that no [N, V] tensor ever exists.
// z = x / temperature; logp = z_y - lse(z); entropy = lse - E_p[z]. All f32 in, f32 out,
// accumulation in f32 lanes folded into double per chunk of the row (gather_math.h).
#pragma once
#include <cstdint>

#include "../../core/dtype.h"

namespace vt {

// Rows of logits x (N, V) with row stride ldx. ent may be null.
void gather_logprobs_cpu(const float* x, int64_t N, int64_t V, int64_t ldx, const int32_t* tgt, float temperature,
                         float* logp, float* lse, float* ent);
// dx (N, V) = dlogp * (onehot(y) - softmax(z)) / T; dx may be x itself (in place).
void gather_logprobs_backward_cpu(const float* x, int64_t N, int64_t V, int64_t ldx, const int32_t* tgt,
                                  const float* lse, const float* dlogp, float temperature, float* dx);

struct LinearLogprobsArgs {
  const float* hidden = nullptr;  // (N, H)
  const void* weight = nullptr;   // (V, H) in wdtype: F32, BF16 or F16
  DType wdtype = DType::F32;
  const float* bias = nullptr;    // (V) or null
  const int32_t* tgt = nullptr;   // (N)
  int64_t N = 0, H = 0, V = 0;
  float temperature = 1.0f;
  int64_t token_block = 512;   // tokens served by each pass over the weight (>= 128 keeps it compute-bound)
  int64_t vocab_chunk = 4096;  // weight rows per logits tile: tile 8 MiB, bf16 conversion buffer 4096 x H f32
  // GEMM products in bf16 (gemm_bf16.h: hidden, weight and dZ rounded to bf16, sums in f32; a
  // bf16 weight is read as it is, without the f32 conversion). CPU only.
  bool bf16 = false;
};

// logp, lse (N); ent (N) or null.
void linear_logprobs_cpu(const LinearLogprobsArgs& a, float* logp, float* lse, float* ent);
// dhidden (N, H) written; dweight (V, H) f32 written, or added to when accumulate (null: no weight
// gradient, a frozen head); dbias (V) likewise when not null.
void linear_logprobs_backward_cpu(const LinearLogprobsArgs& a, const float* lse, const float* dlogp, float* dhidden,
                                  float* dweight, float* dbias, bool accumulate);

// CUDA forms (same semantics, pointers on `device`; targets on the device too). In builds
// without CUDA they throw "CUDA not compiled in".
void gather_logprobs_cuda(const float* x, int64_t N, int64_t V, int64_t ldx, const int32_t* tgt, float temperature,
                          float* logp, float* lse, float* ent, int device);
void gather_logprobs_backward_cuda(const float* x, int64_t N, int64_t V, int64_t ldx, const int32_t* tgt,
                                   const float* lse, const float* dlogp, float temperature, float* dx, int device);
void linear_logprobs_cuda(const LinearLogprobsArgs& a, float* logp, float* lse, float* ent, int device);
void linear_logprobs_backward_cuda(const LinearLogprobsArgs& a, const float* lse, const float* dlogp, float* dhidden,
                                   float* dweight, float* dbias, bool accumulate, int device);

}  // namespace vt
