// linearCdpo: the CDPO loss fused with the LM head (hidden [N, H] x weight [V, H]^T / temperature,
// log-softmax, gather of the sampled tokens): loss, dHidden, dWeight and the log-probs in one call,
// without an [N, V] tensor.
//
// The per-token gradient of the loss depends only on the token's own log-prob and on inputs known
// before the pass (advantage, old / reference / bias log-probs, the completion's weight), so as
// soon as a token block's log-probs are known its dL/dlogp follows (CdpoBlockGrad) and the
// backward can start. CPU: tiles of 256 tokens x 4096 vocabulary rows; the forward walks the
// chunks with an online log-sum-exp and keeps the last tiles that fit in 60 MiB; the backward
// starts with those (no recomputed logits) and recomputes the rest. At N 256, V 151936 that is 15
// of 38 tiles: 3.6 GEMM volumes instead of the unfused sequence's 4. (Caching whole rows of 96
// tokens instead, 3 volumes but GEMMs at M = 96, measured 0.96x the unfused sequence.)
// Sequence-level importance sampling needs the completion's mean log-ratio: with several token
// blocks every forward runs first (prepare_sequences), the last block keeping its cache.
#pragma once
#include <cstdint>
#include <functional>

#include "../../core/storage.h"
#include "cdpo.h"

namespace vt {

class CdpoBlockGrad {
 public:
  explicit CdpoBlockGrad(const CdpoParams& p) : p_(p), c_(p.consts()) {}
  // Sequence level, two-pass form: rho, pol, dpol of every completion from all N log-probs.
  void prepare_sequences(const float* logp_all);
  // Tokens [begin, end): logp and dlogp hold end - begin values (block-local). Writes
  // dlogp = dL/dlogp. Safe to call concurrently for disjoint blocks. Throws std::logic_error at
  // sequence level when a completion crosses the block and prepare_sequences was not called.
  void operator()(int64_t begin, int64_t end, const float* logp, float* dlogp) const;

 private:
  const CdpoParams& p_;
  CdpoConst<double> c_;
  ScratchBuffer<double> seq_;  // (3B) when prepared
  bool prepared_ = false;
};

// Arguments of a linearCdpo call on the CPU. Sizes in elements; row-major, contiguous.
struct LinearCdpoParams {
  const float* hidden = nullptr;    // (N, H)
  const float* weight = nullptr;    // (V, H)
  const int32_t* targets = nullptr; // (N) sampled token ids in [0, V)
  int64_t H = 0, V = 0;
  float temperature = 1.0f;
  bool accumulate = false;          // d_weight += (else =)
  // Tiling: token blocks of token_block tokens; each walks the vocabulary in chunks of vocab_chunk
  // rows (a logits tile); cache_bytes bounds the tiles kept from the forward for the backward.
  int64_t token_block = 256;
  int64_t vocab_chunk = 4096;
  int64_t cache_bytes = int64_t(60) << 20;  // 15 tiles of 4 MiB at N 256: 60.0 MiB of workspace in all
  bool bf16 = false;                // GEMMs with bf16 products (gemm_bf16.h; CPU)
  CdpoParams loss;                  // N, B and the loss inputs; loss.logp is not read
};

// The fused LM-head pass (CPU) behind linearCdpo and linearLogprobsWithGrad: log-probs, then
// dL/dlogp from them (grad), then dHidden and dWeight, with the tiling described above.
struct FusedHeadArgs {
  const float* hidden = nullptr;     // (N, H)
  const float* weight = nullptr;     // (V, H) f32
  const int32_t* targets = nullptr;  // (N) in [0, V)
  int64_t N = 0, H = 0, V = 0;
  float temperature = 1.0f;
  bool accumulate = false;           // d_weight += (else =)
  int64_t token_block = 256, vocab_chunk = 4096;
  int64_t cache_bytes = int64_t(60) << 20;
  bool bf16 = false;                 // the three GEMMs with bf16 products (gemm_bf16.h)
};
// grad(begin, end, logp, dlogp): writes dL/dlogp of tokens [begin, end) (block-local pointers).
using HeadGradFn = std::function<void(int64_t, int64_t, const float*, float*)>;
// Writes d_hidden (N, H), logp (N), dlogp (N), lse (N, when not null) and d_weight (V, H; null:
// no weight gradient, a frozen head). all_first: every log-prob before any gradient; prepare then
// sees all N of them.
void fused_head_cpu(const FusedHeadArgs& a, float* d_hidden, float* d_weight, float* logp, float* lse, float* dlogp,
                    bool all_first, const std::function<void(const float*)>& prepare, const HeadGradFn& grad);

// Writes d_hidden (N, H), d_weight (V, H), logp (N); returns the loss and metrics.
CdpoResult linear_cdpo_cpu(float* d_hidden, float* d_weight, float* logp, const LinearCdpoParams& p);
// The same on CUDA device `device`: hidden, weight, the outputs and the loss inputs on the device;
// targets and offsets on the host. Throws "CUDA not compiled in" in builds without CUDA.
CdpoResult linear_cdpo_cuda(float* d_hidden, float* d_weight, float* logp, const LinearCdpoParams& p, int device);

}  // namespace vt

namespace vt {
namespace detail {
// Row kernels of the fused pass (f32; AVX-512, AVX2, scalar): z[v] <- exp(z[v] - m)
// returning the sum in double; the max of a row.
float cdpo_row_max(const float* z, int64_t n);
double cdpo_row_exp_sum(float* z, int64_t n, float m);
float cdpo_row_max_avx512(const float* z, int64_t n);
float cdpo_row_max_avx2(const float* z, int64_t n);
double cdpo_row_exp_sum_avx2(float* z, int64_t n, float m);
double cdpo_row_exp_sum_avx512(float* z, int64_t n, float m);
}  // namespace detail
}  // namespace vt
