// Sampling the next token of many rows at once (rollouts: every row of every prompt decodes
// together): temperature, top-k and top-p (nucleus) truncation, and the sampled token's log-prob
// under softmax(logits / T) before truncation (the sampling policy's log-prob, as GRPO-family
// trainers use it; T = 1 when greedy). Each row draws from its own counter-based stream (seed,
// counter), so a row's sample does not depend on which other rows share the batch.
#pragma once
#include <cstdint>

namespace vt {

struct SampleArgs {
  float temperature = 1.0f;  // 0: greedy
  float top_p = 1.0f;        // (0, 1]
  int64_t top_k = 0;         // 0: all
  // Tokens never drawn (image / video placeholders); they still count in the log-prob's softmax.
  const int32_t* banned = nullptr;
  int64_t nbanned = 0;
};

// logits (R, V) with row stride ld. streams[r], counters[r]: row r's random draw. Writes token[r]
// and logprob[r]. A row whose logits are all -inf gets token 0 and log-prob -inf; NaN logits give
// a NaN log-prob.
void sample_rows_cpu(const float* logits, int64_t R, int64_t V, int64_t ld, const SampleArgs& a, const uint64_t* streams,
                     const uint64_t* counters, int32_t* token, float* logprob);

}  // namespace vt
