// Fused attention (FlashAttention-2 style) over packed variable-length segments:
// q [Tq, Hq, D], k and v [Tk, Hkv, D] (f32, contiguous), segments b delimited by cu_q / cu_k
// prefix sums (each an independent sequence or window; empty segments allowed), grouped-query
// heads (head h reads kv head h / (Hq / Hkv)), optional causal mask aligned bottom-right (query i
// of a segment sees keys j <= i + Lk - Lq). Never materialises a score matrix: tiles of queries
// meet tiles of keys with an online softmax; the backward recomputes probabilities from lse.
#pragma once
#include <cstdint>

namespace vt {

struct AttnArgs {
  const float* q = nullptr;
  const float* k = nullptr;
  const float* v = nullptr;
  const int32_t* cu_q = nullptr;  // [B + 1]
  const int32_t* cu_k = nullptr;  // [B + 1]
  int64_t B = 0, Tq = 0, Tk = 0, Hq = 0, Hkv = 0, D = 0;
  float scale = 1.0f;
  bool causal = false;
};

// out [Tq, Hq, D]; lse [Tq, Hq] (natural log; -inf for a query that sees no key, whose out is 0).
void attention_forward_cpu(const AttnArgs& a, float* out, float* lse);
// Rows form for short query runs (decode): items [i0, i1) of (query row, head), item = row * Hq +
// head, on the calling thread (a team member); the same semantics as the tiled forward. scratch
// holds attention_rows_scratch(a) floats. lse may be null.
void attention_forward_rows(const AttnArgs& a, float* out, float* lse, int64_t i0, int64_t i1, float* scratch);
int64_t attention_rows_scratch(const AttnArgs& a);
// dq like q, dk and dv like k and v (all written).
void attention_backward_cpu(const AttnArgs& a, const float* out, const float* lse, const float* dout, float* dq, float* dk,
                            float* dv);

// CUDA forms: every pointer on `device` except cu_q / cu_k (host). Throw "CUDA not compiled in"
// in CPU-only builds.
void attention_forward_cuda(const AttnArgs& a, float* out, float* lse, int device);
void attention_backward_cuda(const AttnArgs& a, const float* out, const float* lse, const float* dout, float* dq,
                             float* dk, float* dv, int device);

}  // namespace vt
