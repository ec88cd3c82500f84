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

#include "../core/gemm.h"
#include "../core/parallel.h"
#include "../core/simd.h"

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

CdpoResult linear_cdpo_cpu(float* d_hidden, float* d_weight, float* logp, const LinearCdpoParams& p) {
  const CdpoParams& lp = p.loss;
  const int64_t N = lp.N, H = p.H, V = p.V;
  const float invT = 1.0f / p.temperature;
  if (N == 0) {
    if (!p.accumulate) std::memset(d_weight, 0, size_t(V * H) * sizeof(float));
    ScratchBuffer<float> none(1);
    CdpoParams q = lp;
    q.logp = logp;
    return cdpo_loss_cpu(none.data(), q);
  }
  // Logit cache of one token block: 56 MiB by default keeps the call under 64 MiB of workspace at
  // V = 151936 (96 tokens a block) while each pass over the weight serves ~100 tokens.
  const int64_t cap = std::max<int64_t>(1, std::min<int64_t>(N, p.cache_bytes / (V * int64_t(sizeof(float)))));
  // Token blocks. Sequence level needs whole completions in a block: pack completions greedily;
  // a completion longer than a block falls back to a forward-only first pass (two-pass mode).
  std::vector<int64_t> starts{0};
  bool two_pass = false;
  if (lp.seq_level) {
    const int32_t* off = lp.offsets;
    for (int64_t i = 0; i < lp.B && !two_pass; ++i) {
      if (off[i + 1] - off[i] > cap) two_pass = true;
      else if (off[i + 1] - starts.back() > cap) starts.push_back(off[i]);
    }
  }
  if (!lp.seq_level || two_pass) {
    // Blocks of a multiple of 32 tokens: OpenBLAS's SkylakeX sgemm runs 20% faster at M = 96 than
    // at M = 86 (N 256, H 896, V 151936: blocks 96+96+64 take 0.94 s, 86+86+84 take 1.17 s).
    const int64_t size = cap >= 32 ? cap / 32 * 32 : cap;
    starts.assign(1, 0);
    for (int64_t b = size; b < N; b += size) starts.push_back(b);
  }
  starts.push_back(N);
  ScratchBuffer<float> Z{size_t(cap * V)};
  ScratchBuffer<float> rowinv{size_t(cap)};
  ScratchBuffer<float> dlogp{size_t(N)};
  CdpoBlockGrad grad(lp);

  // Forward of one block: Z = h W^T / T, then exp(Z - max) in place; logp and 1/sum per row.
  auto forward = [&](int64_t b, int64_t nb) {
    sgemm(false, true, nb, V, H, invT, p.hidden + b * H, H, p.weight, H, 0.0f, Z.data(), V);
    parallel_for(nb, 1, [&](int64_t r0, int64_t r1) {
      for (int64_t r = r0; r < r1; ++r) {
        float* z = Z.data() + r * V;
        const float zt = z[p.targets[b + r]];
        const float m = detail::cdpo_row_max(z, V);
        const double s = detail::cdpo_row_exp_sum(z, V, m);
        logp[b + r] = float(double(zt - m) - std::log(s));
        rowinv[r] = float(1.0 / s);
      }
    });
  };
  const size_t nblocks = starts.size() - 1;
  if (two_pass) {
    for (size_t k = 0; k < nblocks; ++k) forward(starts[k], starts[k + 1] - starts[k]);
    grad.prepare_sequences(logp);
  }
  // The two-pass mode walks the blocks backwards: the last block's logits are still in the cache.
  for (size_t k = 0; k < nblocks; ++k) {
    const size_t blk = two_pass ? nblocks - 1 - k : k;
    const int64_t b = starts[blk], nb = starts[blk + 1] - b;
    if (!(two_pass && k == 0)) forward(b, nb);
    grad(b, b + nb, logp + b, dlogp.data() + b);
    // dZ = dlogp / T * (onehot - softmax), in place over the cached exp(Z - max)
    parallel_for(nb, 1, [&](int64_t r0, int64_t r1) {
      for (int64_t r = r0; r < r1; ++r) {
        float* z = Z.data() + r * V;
        const float g = dlogp[b + r] * invT, a = -g * rowinv[r];
        for (int64_t v = 0; v < V; ++v) z[v] *= a;
        z[p.targets[b + r]] += g;
      }
    });
    sgemm(false, false, nb, H, V, 1.0f, Z.data(), V, p.weight, H, 0.0f, d_hidden + b * H, H);
    sgemm(true, false, V, H, nb, 1.0f, Z.data(), V, p.hidden + b * H, H, (k == 0 && !p.accumulate) ? 0.0f : 1.0f, d_weight, H);
  }
  // The loss and metrics of the gathered log-probs: the same math as cdpoLoss on them.
  CdpoParams q = lp;
  q.logp = logp;
  return cdpo_loss_cpu(dlogp.data(), q);
}

}  // namespace vt
