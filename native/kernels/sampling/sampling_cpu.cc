// Token sampling on the CPU (sampling.h). Per row: the max and the exp-sum in one SIMD pass each
// (core/vec.h), the truncation threshold from a partial selection (top-k: nth_element; top-p:
// the largest 256, then 4096, then all candidates sorted until their mass reaches p), then one
// scan of the kept probabilities for the draw.
#include <algorithm>
#include <cmath>
#include <functional>
#include <vector>

#include "../../core/parallel.h"
#include "../../core/random.h"
#include "../../core/storage.h"
#include "../../core/vec.h"
#include "sampling.h"

namespace vt {

namespace {

// The smallest logit kept by top-p: candidates in decreasing order until their probability
// (exp(invT x - shift) / Z) adds up to p.
float nucleus_cut(const float* x, int64_t V, float invT, float shift, double Z, float p, std::vector<float>& tmp) {
  for (int64_t take : {int64_t(256), int64_t(4096), V}) {
    const int64_t k = std::min(take, V);
    tmp.assign(x, x + V);
    if (k < V) std::nth_element(tmp.begin(), tmp.begin() + (k - 1), tmp.end(), std::greater<float>());
    std::sort(tmp.begin(), tmp.begin() + k, std::greater<float>());
    double acc = 0.0;
    for (int64_t i = 0; i < k; i++) {
      acc += std::exp(double(invT) * tmp[size_t(i)] - shift) / Z;
      if (acc >= p) return tmp[size_t(i)];
    }
    if (k == V) return tmp[size_t(V - 1)];
  }
  return -INFINITY;
}

}  // namespace

void sample_rows_cpu(const float* logits, int64_t R, int64_t V, int64_t ld, const SampleArgs& a, const uint64_t* streams,
                     const uint64_t* counters, int32_t* token, float* logprob) {
  parallel_for(R, 1, [&](int64_t r0, int64_t r1) {
    std::vector<float> tmp;
    ScratchBuffer<float> e(static_cast<size_t>(V));
    for (int64_t r = r0; r < r1; r++) {
      const float* x = logits + r * ld;
      const bool greedy = a.temperature == 0.0f;
      const float invT = greedy ? 1.0f : 1.0f / a.temperature;
      // A NaN logit is reported as a NaN log-prob, never sampled around (the SIMD max and exp
      // would skip it).
      bool nan = false;
      for (int64_t i = 0; i < V && !nan; i++) nan = std::isnan(x[i]);
      const float m = nan ? NAN : vec_max(x, V);
      if (nan || m == -INFINITY) {
        token[r] = 0;
        logprob[r] = nan ? NAN : -INFINITY;
        continue;
      }
      const float shift = invT * m;
      const double Z = vec_exp_sum(x, e.data(), V, invT, shift);
      const double logZ = std::log(Z);
      // Banned tokens: out of the draw (their probability mass stays in Z, so the log-prob is the
      // network's own, as the training forward computes it).
      for (int64_t k = 0; k < a.nbanned; k++) e[size_t(a.banned[k])] = 0.0f;
      auto allowed = [&](int64_t i) {
        for (int64_t k = 0; k < a.nbanned; k++)
          if (a.banned[k] == i) return false;
        return true;
      };
      int64_t pick = -1;
      if (greedy) {
        for (int64_t i = 0; i < V; i++)
          if (allowed(i) && (pick < 0 || x[i] > x[pick])) pick = i;
        if (pick < 0) pick = 0;
      } else {
        float cut = -INFINITY;
        if (a.top_k > 0 && a.top_k < V) {
          tmp.assign(x, x + V);
          std::nth_element(tmp.begin(), tmp.begin() + (a.top_k - 1), tmp.end(), std::greater<float>());
          cut = tmp[size_t(a.top_k - 1)];
        }
        if (a.top_p < 1.0f) cut = std::max(cut, nucleus_cut(x, V, invT, shift, Z, a.top_p, tmp));
        double kept = 0.0;
        for (int64_t i = 0; i < V; i++)
          if (x[i] >= cut) kept += e[size_t(i)];
        double u = random_u01(streams[r], counters[r]) * kept;
        pick = -1;
        for (int64_t i = 0; i < V; i++) {
          if (x[i] < cut || e[size_t(i)] == 0.0f) continue;  // truncated, banned, or underflowed
          pick = i;
          u -= e[size_t(i)];
          if (u < 0) break;
        }
        if (pick < 0) pick = 0;
      }
      token[r] = int32_t(pick);
      logprob[r] = float(double(invT) * x[pick] - shift - logZ);
    }
  });
}

}  // namespace vt
