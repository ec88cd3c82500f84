// linearCdpo on the CPU (cdpo_linear.h).
#include "cdpo_linear.h"

#include <algorithm>
#include <stdexcept>
#include <vector>

namespace vt {

void CdpoBlockGrad::prepare_sequences(const float* logp_all) {
  if (!p_.seq_level) return;
  seq_.reset(size_t(3 * p_.B));
  const int32_t* off = p_.offsets;
  for (int64_t i = 0; i < p_.B; ++i)
    cdpo_sequence(logp_all + off[i], p_.old_logp ? p_.old_logp + off[i] : nullptr, off[i + 1] - off[i], p_.adv[i], c_, &seq_[3 * i]);
  prepared_ = true;
}

void CdpoBlockGrad::operator()(int64_t begin, int64_t end, const float* logp, float* dlogp) const {
  const int32_t* off = p_.offsets;
  const int64_t B = p_.B;
  int64_t i = int64_t(std::upper_bound(off, off + B + 1, int32_t(begin)) - off) - 1;
  double sums[kNumCdpoSums] = {};  // the loss and metrics come from the gathered log-probs afterwards
  for (int64_t t = begin; t < end; ++i) {
    const int64_t t1 = std::min<int64_t>(end, off[i + 1]);
    if (t1 <= t) continue;
    double local[3];
    const double* seq = nullptr;
    if (p_.seq_level) {
      if (prepared_) {
        seq = &seq_[3 * i];
      } else {
        if (off[i] < begin || off[i + 1] > end)
          throw std::logic_error("linearCdpo: a completion crosses a token block at sequence level without the two-pass mode");
        cdpo_sequence(logp + (off[i] - begin), p_.old_logp ? p_.old_logp + off[i] : nullptr, off[i + 1] - off[i], p_.adv[i], c_, local);
        seq = local;
      }
    }
    CdpoSpan sp;
    sp.logp = logp + (t - begin);
    sp.old = p_.old_logp ? p_.old_logp + t : nullptr;
    sp.ref = p_.ref_logp ? p_.ref_logp + t : nullptr;
    sp.bias = p_.bias_logp ? p_.bias_logp + t : nullptr;
    sp.dlogp = dlogp + (t - begin);
    sp.n = t1 - t;
    sp.adv = p_.adv[i];
    sp.w = cdpo_weight(p_.loss_type, B, int64_t(off[i + 1] - off[i]), p_.N, p_.norm);
    sp.seq = seq;
    cdpo_span(sp, c_, sums);
    t = t1;
  }
}

}  // namespace vt

// ---- the fused pass ----
#include <cmath>
#include <cstring>

#include "../../core/gemm_bf16.h"
#include "../../core/parallel.h"
#include "../../core/simd.h"

namespace vt {
namespace detail {

float cdpo_row_max(const float* z, int64_t n) {
#if VT_X86
  if (cpu().use_avx512) return cdpo_row_max_avx512(z, n);
  if (cpu().use_avx2) return cdpo_row_max_avx2(z, n);
#endif
  float m = -INFINITY;
  for (int64_t v = 0; v < n; ++v) m = std::max(m, z[v]);
  return m;
}

double cdpo_row_exp_sum(float* z, int64_t n, float m) {
#if VT_X86
  if (cpu().use_avx512) return cdpo_row_exp_sum_avx512(z, n, m);
  if (cpu().use_avx2) return cdpo_row_exp_sum_avx2(z, n, m);
#endif
  double s = 0;
  for (int64_t v = 0; v < n; ++v) {
    z[v] = std::exp(z[v] - m);
    s += z[v];
  }
  return s;
}

}  // namespace detail

void fused_head_cpu(const FusedHeadArgs& p, float* d_hidden, float* d_weight, float* logp, float* lse_out, float* dlogp,
                    bool all_first, const std::function<void(const float*)>& prepare, const HeadGradFn& grad) {
  const int64_t N = p.N, H = p.H, V = p.V;
  const float invT = 1.0f / p.temperature;
  if (N == 0) {
    if (d_weight && !p.accumulate) std::memset(d_weight, 0, size_t(V * H) * sizeof(float));
    return;
  }
  // In place: when d_weight is written, not accumulated, and all tokens fit one block of at most
  // H rows, the logits tile of vocabulary chunk c (nb x n floats) lives in d_weight's own rows
  // [c0, c0 + n) (n x H floats) until the backward overwrites them with that chunk's gradient.
  // Every tile is kept in memory the call must write anyway: 3 GEMM volumes, the fewest.
  const bool in_place = d_weight && !p.accumulate && N <= H;
  const int64_t nb_max = in_place ? N : std::max<int64_t>(1, std::min(p.token_block, N));
  const int64_t vc = std::max<int64_t>(1, std::min(p.vocab_chunk, V));
  const int64_t nchunks = (V + vc - 1) / vc;
  const int64_t tile = nb_max * vc;  // floats of one logits tile
  // The tiles the budget holds: the forward computes chunks [0, first_kept) in slot 0 and leaves
  // the last nslots chunks (slot 0 included) in place; the backward starts with those. In place,
  // slot 0 is the one tile of workspace the backward writes dZ to.
  const int64_t nslots = in_place ? 1 : std::max<int64_t>(1, std::min<int64_t>(nchunks, p.cache_bytes / (tile * int64_t(sizeof(float)))));
  const int64_t first_kept = in_place ? 0 : nchunks - nslots;
  const int64_t nkept = nchunks - first_kept;
  const int64_t nblocks = (N + nb_max - 1) / nb_max;
  // Every log-prob before any gradient (linearCdpo at sequence level over several token blocks):
  // all forwards run first, and the last block keeps its cache.
  const bool two_pass = all_first && nblocks > 1;
  ScratchBuffer<float> slots{size_t(nslots * tile)};
  ScratchBuffer<float> cmax{size_t(nkept * nb_max)};  // per kept chunk and row: its max
  ScratchBuffer<float> rmax{size_t(nb_max)};
  ScratchBuffer<double> rsum{size_t(nb_max)};
  ScratchBuffer<float> lse{size_t(nb_max)};

  // Where chunk c's logits live: its d_weight rows in place, else a slot.
  auto kept_of = [&](int64_t c) -> int64_t { return c - first_kept; };
  auto tile_of = [&](int64_t c) -> float* {
    if (in_place) return d_weight + c * vc * H;
    return slots.data() + (c > first_kept ? c - first_kept : 0) * tile;
  };
  // Z (nb, n) = h W_c^T / T for the rows [c0, c0 + n) of the weight.
  auto logits = [&](int64_t b, int64_t nb, int64_t c, float* z) {
    const int64_t c0 = c * vc, n = std::min(vc, V - c0);
    sgemm_at(p.bf16, false, true, nb, n, H, invT, p.hidden + b * H, H, p.weight + c0 * H, H, 0.0f, z, n);
  };
  // Forward of one token block: online log-sum-exp over the chunks in chunk order.
  auto forward = [&](int64_t b, int64_t nb) {
    for (int64_t r = 0; r < nb; ++r) { rmax[r] = -INFINITY; rsum[r] = 0.0; }
    for (int64_t c = 0; c < nchunks; ++c) {
      const int64_t c0 = c * vc, n = std::min(vc, V - c0);
      float* z = tile_of(c);
      logits(b, nb, c, z);
      const bool kept = c >= first_kept;
      parallel_for(nb, 1, [&](int64_t r0, int64_t r1) {
        for (int64_t r = r0; r < r1; ++r) {
          float* row = z + r * n;
          const int64_t t = p.targets[b + r];
          if (t >= c0 && t < c0 + n) logp[b + r] = row[t - c0];  // z_target for now
          const float m = detail::cdpo_row_max(row, n);
          const double s = detail::cdpo_row_exp_sum(row, n, m);
          if (kept) cmax[kept_of(c) * nb_max + r] = m;
          if (m > rmax[r]) { rsum[r] = rsum[r] * std::exp(double(rmax[r]) - double(m)) + s; rmax[r] = m; }
          else rsum[r] += s * std::exp(double(m) - double(rmax[r]));
        }
      });
    }
    for (int64_t r = 0; r < nb; ++r) {
      lse[r] = float(double(rmax[r]) + std::log(rsum[r]));
      if (lse_out) lse_out[b + r] = lse[r];
      logp[b + r] = float(double(logp[b + r]) - double(rmax[r]) - std::log(rsum[r]));
    }
  };
  // Backward of one token block (its lse in `lse`): cached chunks first, the others recomputed.
  auto backward = [&](int64_t b, int64_t nb, bool first_block) {
    for (int64_t k = 0; k < nchunks; ++k) {
      const int64_t c = nchunks - 1 - k, c0 = c * vc, n = std::min(vc, V - c0);
      const bool kept = c >= first_kept;
      // dZ = dlogp / T * (onehot - softmax), in place or (in-place mode) into slot 0, because the
      // d_weight rows that hold the tile are the output of this chunk's first GEMM.
      float* src = tile_of(c);
      float* z = in_place ? slots.data() : src;
      if (!kept) logits(b, nb, c, z);
      parallel_for(nb, 1, [&](int64_t r0, int64_t r1) {
        for (int64_t r = r0; r < r1; ++r) {
          float* row = z + r * n;
          const float g = dlogp[b + r] * invT;
          if (kept) {
            const float a = -g * float(std::exp(double(cmax[kept_of(c) * nb_max + r]) - double(lse[r])));
            const float* in = src + r * n;
            for (int64_t v = 0; v < n; ++v) row[v] = in[v] * a;
          } else {
            detail::cdpo_row_exp_sum(row, n, lse[r]);
            for (int64_t v = 0; v < n; ++v) row[v] *= -g;
          }
          const int64_t t = p.targets[b + r];
          if (t >= c0 && t < c0 + n) row[t - c0] += g;
        }
      });
      if (d_weight)
        sgemm_at(p.bf16, true, false, n, H, nb, 1.0f, z, n, p.hidden + b * H, H, (first_block && !p.accumulate) ? 0.0f : 1.0f, d_weight + c0 * H, H);
      sgemm_at(p.bf16, false, false, nb, H, n, 1.0f, z, n, p.weight + c0 * H, H, k == 0 ? 0.0f : 1.0f, d_hidden + b * H, H);
    }
  };
  if (two_pass) {
    for (int64_t b = 0; b < N; b += nb_max) forward(b, std::min(nb_max, N - b));
    if (prepare) prepare(logp);
  }
  // The two-pass mode walks the blocks backwards: the last block's cache (and lse) is current.
  for (int64_t k = 0; k < nblocks; ++k) {
    const int64_t blk = two_pass ? nblocks - 1 - k : k;
    const int64_t b = blk * nb_max, nb = std::min(nb_max, N - b);
    if (!(two_pass && k == 0)) forward(b, nb);
    grad(b, b + nb, logp + b, dlogp + b);
    backward(b, nb, k == 0);
  }
}

CdpoResult linear_cdpo_cpu(float* d_hidden, float* d_weight, float* logp, const LinearCdpoParams& p) {
  const CdpoParams& lp = p.loss;
  ScratchBuffer<float> dlogp{size_t(std::max<int64_t>(lp.N, 1))};
  if (lp.N > 0) {
    FusedHeadArgs a;
    a.hidden = p.hidden;
    a.weight = p.weight;
    a.targets = p.targets;
    a.N = lp.N;
    a.H = p.H;
    a.V = p.V;
    a.temperature = p.temperature;
    a.accumulate = p.accumulate;
    a.token_block = p.token_block;
    a.vocab_chunk = p.vocab_chunk;
    a.cache_bytes = p.cache_bytes;
    a.bf16 = p.bf16;
    CdpoBlockGrad grad(lp);
    fused_head_cpu(a, d_hidden, d_weight, logp, nullptr, dlogp.data(), lp.seq_level,
                   [&](const float* all) { grad.prepare_sequences(all); },
                   [&](int64_t b, int64_t e, const float* l, float* d) { grad(b, e, l, d); });
  } else if (!p.accumulate) {
    std::memset(d_weight, 0, size_t(p.V * p.H) * sizeof(float));
  }
  // The loss and metrics of the gathered log-probs: the same math as cdpoLoss on them.
  CdpoParams q = lp;
  q.logp = logp;
  return cdpo_loss_cpu(dlogp.data(), q);
}

}  // namespace vt
