// CPU path of the CDPO loss (cdpo.h) and of group-normalised advantages.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <functional>

#include "../../core/parallel.h"
#include "../../core/simd.h"
#include "../../core/storage.h"
#include "cdpo.h"

namespace vt {

namespace {

// Tokens per work item. The partial sums are kept per chunk and added in chunk order, so the
// loss does not depend on the thread count; 2048 tokens (~30 us of work) keep the hand-out cheap.
constexpr int64_t kChunk = 2048;

}  // namespace

namespace detail {

void cdpo_span_scalar(const CdpoSpan& sp, const CdpoConst<double>& c, double* s) {
  for (int64_t t = 0; t < sp.n; ++t) {
    const double lp = sp.logp[t];
    double rho, pol, dpol;
    if (sp.seq) {
      rho = sp.seq[0];
      pol = sp.seq[1];
      dpol = sp.seq[2];
    } else {
      // On-policy the ratio is exp(logp - stop_gradient(logp)): 1, or NaN for a NaN or infinite
      // log-prob, as autograd gives it (1 + 0 * logp keeps that without an exp).
      rho = sp.old ? std::exp(lp - double(sp.old[t])) : 1.0 + 0.0 * lp;
      cdpo_policy(rho, sp.adv, c, &pol, &dpol);
    }
    const CdpoToken<double> tok = cdpo_token(lp, rho, pol, dpol, sp.ref != nullptr, sp.ref ? double(sp.ref[t]) : 0.0,
                                             sp.bias != nullptr, sp.bias ? double(sp.bias[t]) : 0.0, c);
    sp.dlogp[t] = float(sp.w * tok.dlogp);
    cdpo_accumulate(s, tok, sp.w, rho, sp.adv, c);
  }
}

}  // namespace detail

void cdpo_span(const CdpoSpan& s, const CdpoConst<double>& c, double* sums) {
#if VT_X86
  if (cpu().use_avx512) return detail::cdpo_span_avx512(s, c, sums);
  if (cpu().use_avx2) return detail::cdpo_span_avx2(s, c, sums);
#endif
  detail::cdpo_span_scalar(s, c, sums);
}

void cdpo_sequence(const float* logp, const float* old, int64_t n, double adv, const CdpoConst<double>& c, double* out) {
  double s = 0;
  // On-policy the log-ratio is logp - stop_gradient(logp): 0, or NaN for a NaN / infinite log-prob.
  for (int64_t t = 0; t < n; ++t) s += old ? double(logp[t]) - double(old[t]) : 0.0 * double(logp[t]);
  out[0] = std::exp(n > 0 ? s / double(n) : 0.0);
  cdpo_policy(out[0], adv, c, &out[1], &out[2]);
}

CdpoResult cdpo_loss_cpu(float* dlogp, const CdpoParams& p) {
  const CdpoConst<double> c = p.consts();
  const int64_t N = p.N, B = p.B;
  const int32_t* off = p.offsets;
  // Sequence level: rho_i, pol_i and dpol_i/drho_i once per completion.
  ScratchBuffer<double> seq;
  if (p.seq_level) {
    seq.reset(size_t(3 * B));
    // A sum per completion (~1 ns a token): a parallel region pays off only for long batches.
    auto run = [&](int64_t n, const std::function<void(int64_t, int64_t)>& fn) { if (N < (int64_t(1) << 18)) fn(0, n); else parallel_for(n, 1, fn); };
    run(B, [&](int64_t b, int64_t e) {
      for (int64_t i = b; i < e; ++i)
        cdpo_sequence(p.logp + off[i], p.old_logp ? p.old_logp + off[i] : nullptr, off[i + 1] - off[i], p.adv[i], c, &seq[3 * i]);
    });
  }
  const int64_t nchunks = (N + kChunk - 1) / kChunk;
  ScratchBuffer<double> part(size_t(std::max<int64_t>(nchunks, 1) * kNumCdpoSums));
  std::memset(part.data(), 0, part.size() * sizeof(double));
  parallel_chunks(N, kChunk, [&](int64_t b, int64_t e, int) {
    double s[kNumCdpoSums] = {};
    // The completion holding token b: offsets[i] <= b < offsets[i + 1] (empty ones skipped).
    int64_t i = int64_t(std::upper_bound(off, off + B + 1, int32_t(b)) - off) - 1;
    for (int64_t t = b; t < e; ++i) {
      const int64_t t1 = std::min<int64_t>(e, off[i + 1]);
      if (t1 <= t) continue;
      CdpoSpan sp;
      sp.logp = p.logp + t;
      sp.old = p.old_logp ? p.old_logp + t : nullptr;
      sp.ref = p.ref_logp ? p.ref_logp + t : nullptr;
      sp.bias = p.bias_logp ? p.bias_logp + t : nullptr;
      sp.dlogp = dlogp + t;
      sp.n = t1 - t;
      sp.adv = p.adv[i];
      sp.w = cdpo_weight(p.loss_type, B, int64_t(off[i + 1] - off[i]), N, p.norm);
      sp.seq = p.seq_level ? &seq[3 * i] : nullptr;
      cdpo_span(sp, c, s);
      t = t1;
    }
    std::memcpy(&part[size_t(b / kChunk) * kNumCdpoSums], s, sizeof s);
  });
  double tot[kNumCdpoSums] = {};
  for (int64_t k = 0; k < nchunks; ++k)
    for (int j = 0; j < kNumCdpoSums; ++j) tot[j] += part[size_t(k) * kNumCdpoSums + j];
  return cdpo_result(tot, N);
}

void group_advantages_cpu(float* adv, const float* rewards, int64_t B, int64_t G, AdvantageScale scale, double eps) {
  // Batch scale: one std (Bessel) over all rewards; the mean subtracted is still the group's.
  double batch_std = 0;
  if (scale == AdvantageScale::Batch && B > 1) {
    double m = 0, ss = 0;
    for (int64_t i = 0; i < B; ++i) m += rewards[i];
    m /= double(B);
    for (int64_t i = 0; i < B; ++i) ss += (rewards[i] - m) * (rewards[i] - m);
    batch_std = std::sqrt(ss / double(B - 1));
  }
  for (int64_t g0 = 0; g0 < B; g0 += G) {
    const float* r = rewards + g0;
    bool equal = true;
    for (int64_t j = 1; j < G; ++j) equal = equal && r[j] == r[0];
    if (equal) {  // exactly 0: the mean of equal values need not round back to the value
      for (int64_t j = 0; j < G; ++j) adv[g0 + j] = 0.0f;
      continue;
    }
    double m = 0;
    for (int64_t j = 0; j < G; ++j) m += r[j];
    m /= double(G);
    double denom = 1;
    if (scale == AdvantageScale::Group) {
      double ss = 0;
      for (int64_t j = 0; j < G; ++j) ss += (r[j] - m) * (r[j] - m);
      denom = std::sqrt(ss / double(G - 1)) + eps;  // G >= 2 here: a group of one is always "equal"
    } else if (scale == AdvantageScale::Batch) {
      denom = batch_std + eps;
    }
    for (int64_t j = 0; j < G; ++j) adv[g0 + j] = float((double(r[j]) - m) / denom);
  }
}

}  // namespace vt
