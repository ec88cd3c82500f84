// CPU fused attention (flash.h): FlashAttention-2 tiling over (segment, head, query tile) with an
// online softmax; backward over (segment, kv head, key tile) so that each thread owns the dK/dV
// rows it writes, with dQ summed from per-thread partials in a fixed order.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "../../core/parallel.h"
#include "../../core/simd.h"
#include "../../core/storage.h"
#include "../../core/vec.h"
#include "attention.h"
#include "attention_kern.h"
#include "attention_math.h"

namespace vt {
namespace flash {

void nn(int64_t M, int64_t N, int64_t K, const float* A, int64_t lda, const float* B, int64_t ldb, float* C, int64_t ldc,
        bool acc, const float* row_scale) {
#if VT_X86
  if (cpu().use_avx512) return detail::nn_avx512(M, N, K, A, lda, B, ldb, C, ldc, acc, row_scale);
  if (cpu().use_avx2) return detail::nn_avx2(M, N, K, A, lda, B, ldb, C, ldc, acc, row_scale);
#endif
  for (int64_t i = 0; i < M; ++i) {
    float* c = C + i * ldc;
    if (!acc) std::fill(c, c + N, 0.0f);
    else if (row_scale)
      for (int64_t j = 0; j < N; ++j) c[j] *= row_scale[i];
    for (int64_t k = 0; k < K; ++k) {
      const float a = A[i * lda + k];
      const float* b = B + k * ldb;
      for (int64_t j = 0; j < N; ++j) c[j] += a * b[j];
    }
  }
}

bool has_nan(const float* s, int64_t n) {
  for (int64_t j = 0; j < n; ++j)
    if (s[j] != s[j]) return true;
  return false;
}

float row_max(const float* s, int64_t n) {
  float m = -INFINITY;
#if VT_X86
  if (cpu().use_avx512) m = detail::row_max_avx512(s, n);
  else if (cpu().use_avx2) m = detail::row_max_avx2(s, n);
  else
#endif
  for (int64_t j = 0; j < n; ++j) m = std::max(m, s[j]);
  return m == -INFINITY && has_nan(s, n) ? NAN : m;
}

void softmax_tile(const float* s, float* p, int64_t br, int64_t bc, int64_t ld, float* m, float* l, float* alpha) {
#if VT_X86
  if (cpu().use_avx512) return detail::softmax_tile_avx512(s, p, br, bc, ld, m, l, alpha);
#endif
  for (int64_t i = 0; i < br; ++i) {
    OnlineRow r{m[i], l[i]};
    alpha[i] = online_rescale(r, row_max(s + i * ld, bc));
    if (r.m == -INFINITY)
      std::fill(p + i * ld, p + i * ld + bc, 0.0f);
    else
      r.l += exp_shift(s + i * ld, p + i * ld, bc, r.m);
    m[i] = r.m;
    l[i] = r.l;
  }
}

float exp_shift(const float* s, float* p, int64_t n, float m) {
#if VT_X86
  if (cpu().use_avx512) return detail::exp_shift_avx512(s, p, n, m);
  if (cpu().use_avx2) return detail::exp_shift_avx2(s, p, n, m);
#endif
  float sum = 0;
  for (int64_t j = 0; j < n; ++j) {
    p[j] = s[j] == -INFINITY ? 0.0f : std::exp(s[j] - m);
    sum += p[j];
  }
  return sum;
}

}  // namespace flash

namespace {

constexpr int64_t kBr = 64;  // query rows per tile
constexpr int64_t kBc = 64;  // keys per tile

struct Seg {
  int64_t q0, Lq, k0, Lk;
};

Seg seg(const AttnArgs& a, int64_t b) {
  return {a.cu_q[b], int64_t(a.cu_q[b + 1]) - a.cu_q[b], a.cu_k[b], int64_t(a.cu_k[b + 1]) - a.cu_k[b]};
}

// Rows [r0, r0 + n) of head h of x [T, H, D] into dst [n, D] (times mul).
void pack_rows(const float* x, int64_t H, int64_t D, int64_t r0, int64_t n, int64_t h, float mul, float* dst) {
  for (int64_t i = 0; i < n; ++i) {
    const float* src = x + ((r0 + i) * H + h) * D;
    float* d = dst + i * D;
    if (mul == 1.0f)
      std::memcpy(d, src, size_t(D) * sizeof(float));
    else
      for (int64_t t = 0; t < D; ++t) d[t] = src[t] * mul;
  }
}

// Rows [r0, r0 + n) of head h of x transposed into dst [D, ld] (columns 0..n).
void pack_cols(const float* x, int64_t H, int64_t D, int64_t r0, int64_t n, int64_t h, float* dst, int64_t ld) {
#if VT_X86
  // AVX-512: 16 x 16 blocks transposed in registers.
  if (cpu().use_avx512) return flash::detail::pack_cols_avx512(x, H, D, r0, n, h, dst, ld);
#endif
  for (int64_t i = 0; i < n; ++i) {
    const float* src = x + ((r0 + i) * H + h) * D;
    for (int64_t t = 0; t < D; ++t) dst[t * ld + i] = src[t];
  }
}

// Masks score rows s [br, ld] of query tile rows iq0.. against keys kk0..kk0+bc.
void mask_causal(float* s, int64_t ld, int64_t br, int64_t bc, int64_t iq0, int64_t kk0, const Seg& g, bool causal) {
  if (!causal) return;
  for (int64_t i = 0; i < br; ++i) {
    const int64_t lim = visible_keys(iq0 + i, g.Lq, g.Lk, true) - kk0;
    for (int64_t j = std::max<int64_t>(lim, 0); j < bc; ++j) s[i * ld + j] = -INFINITY;
  }
}

}  // namespace

void attention_forward_cpu(const AttnArgs& a, float* out, float* lse) {
  const int64_t D = a.D, group = a.Hq / a.Hkv;
  // Items: (segment, head, a run of up to 16 query tiles). The keys are packed (K transposed, V)
  // in chunks of at most kKeyChunk, each serving every query tile of the run, whose online
  // softmax states persist across chunks: extra memory is O(threads x (run + chunk) x D),
  // whatever the segment length. Small segments (windows) are one item
  // for all heads: their q, k, v rows are first copied whole (one contiguous block each, read
  // sequentially) instead of being gathered head by head from rows H * D floats apart.
  struct Item {
    int64_t b, h, qt0, qt1;  // h = -1: all heads of a small segment
  };
  constexpr int64_t kSmall = 128, kRunTiles = 16;
  std::vector<Item> items;
  int64_t longest = 0, small_floats = 0;
  for (int64_t b = 0; b < a.B; ++b) {
    const Seg g = seg(a, b);
    longest = std::max(longest, g.Lk);
    const int64_t ntiles = (g.Lq + kBr - 1) / kBr;
    if (ntiles == 0) continue;
    if (g.Lq <= kSmall && g.Lk <= kSmall && a.B > 1) {
      items.push_back({b, -1, 0, ntiles});
      small_floats = std::max(small_floats, (g.Lq * a.Hq + 2 * g.Lk * a.Hkv) * D);
      continue;
    }
    for (int64_t h = 0; h < a.Hq; ++h)
      for (int64_t t = 0; t < ntiles; t += kRunTiles) items.push_back({b, h, t, std::min(ntiles, t + kRunTiles)});
  }
  const int nth = std::max(1, num_threads());
  // Row stride of the transposed keys: padded off multiples of 4 KiB, whose rows would all map
  // to the same few L1 sets.
  constexpr int64_t kKeyChunk = 1024, kRun = 16;
  const int64_t ldk = std::min<int64_t>(kKeyChunk, std::max<int64_t>(kBc, (longest + kBc - 1) / kBc * kBc)) + 16;
  const size_t per = size_t(kBr * D + kRun * kBr * (D + 3) + D * ldk + ldk * D + 2 * kBr * kBc + small_floats);
  ScratchBuffer<float> scratch(per * size_t(nth));
  parallel_chunks(int64_t(items.size()), 1, [&](int64_t i0, int64_t i1, int tid) {
    float* Qs = scratch.data() + per * size_t(tid);
    float* Orun = Qs + kBr * D;          // [kRun][kBr][D]: the run's output accumulators
    float* mrun = Orun + kRun * kBr * D;  // [kRun][kBr] running max, sum, rescale
    float* lrun = mrun + kRun * kBr;
    float* alpha = lrun + kRun * kBr;
    float* KT = alpha + kRun * kBr;      // [D, ldk]: a chunk of keys, transposed
    float* Vr = KT + D * ldk;            // [chunk, D]
    float* S = Vr + ldk * D;
    float* P = S + kBr * kBc;
    float* local = P + kBr * kBc;  // a small segment's q, k, v rows
    // One head over query tiles [qt0, qt1): q, k, v rows read from qb/kb/vb at the rows of `g`
    // (the segment itself, or its local copy), results written at the rows of `real`.
    // qb/kb/vb: rows of qH (kH) heads each, read at head qh (kh); h is the output head.
    auto head = [&](const float* qb, const float* kb, const float* vb, int64_t qH, int64_t kH, int64_t qh, int64_t kh,
                    const Seg& g, const Seg& real, int64_t h, int64_t qt0, int64_t qt1) {
      const int64_t nq = qt1 - qt0;
      for (int64_t i = 0; i < nq * kBr; ++i) {
        mrun[i] = -INFINITY;
        lrun[i] = 0.0f;
      }
      std::fill(Orun, Orun + nq * kBr * D, 0.0f);
      const int64_t kneed = visible_keys(std::min(g.Lq, qt1 * kBr) - 1, g.Lq, g.Lk, a.causal);
      for (int64_t kc0 = 0; kc0 < kneed; kc0 += kKeyChunk) {
        const int64_t kc1 = std::min(kneed, kc0 + kKeyChunk);
        // (Reading q or v rows in place is slower: rows H * D floats apart alias to a few L1 sets.)
        pack_cols(kb, kH, D, g.k0 + kc0, kc1 - kc0, kh, KT, ldk);
        pack_rows(vb, kH, D, g.k0 + kc0, kc1 - kc0, kh, 1.0f, Vr);
        for (int64_t qt = qt0; qt < qt1; ++qt) {
          const int64_t iq0 = qt * kBr, br = std::min(kBr, g.Lq - iq0);
          const int64_t kend = std::min<int64_t>(kc1, visible_keys(iq0 + br - 1, g.Lq, g.Lk, a.causal));
          if (kend <= kc0) continue;
          float* O = Orun + (qt - qt0) * kBr * D;
          float* rm = mrun + (qt - qt0) * kBr;
          float* rl = lrun + (qt - qt0) * kBr;
          pack_rows(qb, qH, D, g.q0 + iq0, br, qh, a.scale, Qs);
          for (int64_t kk0 = kc0; kk0 < kend; kk0 += kBc) {
            const int64_t bc = std::min(kBc, kend - kk0);
            flash::nn(br, bc, D, Qs, D, KT + (kk0 - kc0), ldk, S, kBc, false);
            mask_causal(S, kBc, br, bc, iq0, kk0, g, a.causal);
            flash::softmax_tile(S, P, br, bc, kBc, rm, rl, alpha);
            flash::nn(br, D, bc, P, kBc, Vr + (kk0 - kc0) * D, D, O, D, true, alpha);  // O = alpha O + P V
          }
        }
      }
      for (int64_t qt = qt0; qt < qt1; ++qt) {
        const int64_t iq0 = qt * kBr, br = std::min(kBr, g.Lq - iq0);
        for (int64_t i = 0; i < br; ++i) {
          const int64_t k = (qt - qt0) * kBr + i;
          const int64_t r = (real.q0 + iq0 + i) * a.Hq + h;
          const OnlineRow fin{mrun[k], lrun[k]};
          const float inv = fin.l > 0.0f || fin.l != fin.l ? 1.0f / fin.l : 0.0f;  // NaN stays NaN
          float* dst = out + r * D;
          for (int64_t t = 0; t < D; ++t) dst[t] = Orun[k * D + t] * inv;
          lse[r] = online_lse(fin);
        }
      }
    };
    for (int64_t it = i0; it < i1; ++it) {
      const Item& w = items[size_t(it)];
      const Seg g = seg(a, w.b);
      if (w.h >= 0) {
        head(a.q, a.k, a.v, a.Hq, a.Hkv, w.h, w.h / group, g, g, w.h, w.qt0, w.qt1);
        continue;
      }
      float* lq = local;
      float* lk = lq + g.Lq * a.Hq * D;
      float* lv = lk + g.Lk * a.Hkv * D;
      // One sequential pass regroups the rows head-major ([head][row][D]), so each head's packs
      // then read contiguous, cache-resident rows.
      auto regroup = [&](const float* src, int64_t rows, int64_t H, float* dst) {
        for (int64_t i = 0; i < rows; ++i)
          for (int64_t hh = 0; hh < H; ++hh)
            std::memcpy(dst + (hh * rows + i) * D, src + (i * H + hh) * D, size_t(D) * sizeof(float));
      };
      regroup(a.q + g.q0 * a.Hq * D, g.Lq, a.Hq, lq);
      regroup(a.k + g.k0 * a.Hkv * D, g.Lk, a.Hkv, lk);
      regroup(a.v + g.k0 * a.Hkv * D, g.Lk, a.Hkv, lv);
      const Seg lg{0, g.Lq, 0, g.Lk};
      for (int64_t h = 0; h < a.Hq; ++h) {
        const int64_t kvh = h / group;
        head(lq + h * g.Lq * D, lk + kvh * g.Lk * D, lv + kvh * g.Lk * D, 1, 1, 0, 0, lg, g, h, w.qt0, w.qt1);
      }
    }
  });
}

void attention_backward_cpu(const AttnArgs& a, const float* out, const float* lse, const float* dout, float* dq, float* dk,
                            float* dv) {
  const int64_t D = a.D, group = a.Hq / a.Hkv;
  // D_i = rowsum(dO * O) per (token, head).
  ScratchBuffer<float> drow(size_t(std::max<int64_t>(a.Tq * a.Hq, 1)));
  parallel_for(a.Tq * a.Hq, 256, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      float s = 0;
      for (int64_t t = 0; t < D; ++t) s += dout[r * D + t] * out[r * D + t];
      drow[size_t(r)] = s;
    }
  });
  struct Item {
    int64_t b, g, kt;
  };
  std::vector<Item> items;
  for (int64_t b = 0; b < a.B; ++b) {
    const Seg g = seg(a, b);
    for (int64_t kvh = 0; kvh < a.Hkv; ++kvh)
      for (int64_t kt = 0; kt * kBc < g.Lk; ++kt) items.push_back({b, kvh, kt});
  }
  std::fill(dk, dk + a.Tk * a.Hkv * D, 0.0f);
  std::fill(dv, dv + a.Tk * a.Hkv * D, 0.0f);
  const int nth = std::max(1, std::min<int>(num_threads(), int(std::max<size_t>(items.size(), 1))));
  // Per-thread tiles of both passes.
  struct Tiles {
    float *KT, *VT, *Kr, *Qs, *dO, *S, *P, *PT, *dS, *acc, *acc2;  // acc/acc2: dK, dV or dQ rows
  };
  const size_t per = size_t(D * kBc * 2 + kBc * D + kBr * D * 2 + 4 * kBr * kBc + 2 * kBc * D);
  ScratchBuffer<float> scratch(per * size_t(std::max(nth, num_threads())));  // both passes
  auto tiles_of = [&](int tid) {
    Tiles t;
    t.KT = scratch.data() + per * size_t(tid);
    t.VT = t.KT + D * kBc;
    t.Kr = t.VT + D * kBc;
    t.Qs = t.Kr + kBc * D;
    t.dO = t.Qs + kBr * D;
    t.S = t.dO + kBr * D;
    t.P = t.S + kBr * kBc;
    t.PT = t.P + kBr * kBc;
    t.dS = t.PT + kBr * kBc;
    t.acc = t.dS + kBr * kBc;
    t.acc2 = t.acc + kBc * D;
    return t;
  };
  // Key tile [kk0, kk0 + bc) of kv head kvh: K^T and V^T (for S and dP), K rows (for dQ).
  auto pack_keys = [&](const Tiles& t, const Seg& g, int64_t kk0, int64_t bc, int64_t kvh) {
    pack_cols(a.k, a.Hkv, D, g.k0 + kk0, bc, kvh, t.KT, kBc);
    pack_cols(a.v, a.Hkv, D, g.k0 + kk0, bc, kvh, t.VT, kBc);
    pack_rows(a.k, a.Hkv, D, g.k0 + kk0, bc, kvh, 1.0f, t.Kr);
  };
  // Query tile [iq0, iq0 + br) of head h against the packed key tile: P = exp(S - lse) (FA2
  // recompute) and dS = P (dO V^T - D_i), from the packed (scaled) Qs and dO.
  auto probs_and_dscores = [&](const Tiles& t, const Seg& g, int64_t iq0, int64_t br, int64_t kk0, int64_t bc, int64_t h) {
    flash::nn(br, bc, D, t.Qs, D, t.KT, kBc, t.S, kBc, false);
    mask_causal(t.S, kBc, br, bc, iq0, kk0, g, a.causal);
    for (int64_t i = 0; i < br; ++i) {
      const float l = lse[(g.q0 + iq0 + i) * a.Hq + h];
      if (l == -INFINITY)
        std::fill(t.P + i * kBc, t.P + i * kBc + bc, 0.0f);
      else
        flash::exp_shift(t.S + i * kBc, t.P + i * kBc, bc, l);
    }
    flash::nn(br, bc, D, t.dO, D, t.VT, kBc, t.dS, kBc, false);  // dP
    for (int64_t i = 0; i < br; ++i) {
      const float di = drow[size_t((g.q0 + iq0 + i) * a.Hq + h)];
      for (int64_t j = 0; j < bc; ++j) t.dS[i * kBc + j] = score_grad(t.P[i * kBc + j], t.dS[i * kBc + j], di);
    }
  };
  auto transpose_tile = [&](const float* src, int64_t br, int64_t bc, float* dst) {
    for (int64_t i = 0; i < br; ++i)
      for (int64_t j = 0; j < bc; ++j) dst[j * kBr + i] = src[i * kBc + j];
  };
  // Pass 1: dK and dV over (segment, kv head, key tile); each thread owns its key tiles' rows.
  parallel_run(nth, [&](int tid, int nt) {
    const Tiles t = tiles_of(tid);
    float* dK = t.acc;
    float* dV = t.acc2;
    for (size_t it = size_t(tid); it < items.size(); it += size_t(nt)) {
      const Item& w = items[it];
      const Seg g = seg(a, w.b);
      const int64_t kk0 = w.kt * kBc, bc = std::min(kBc, g.Lk - kk0);
      pack_keys(t, g, kk0, bc, w.g);
      std::fill(dK, dK + bc * D, 0.0f);
      std::fill(dV, dV + bc * D, 0.0f);
      // Query rows that can see key kk0: iq >= kk0 - (Lk - Lq) when causal.
      const int64_t first_q = a.causal ? std::max<int64_t>(0, kk0 - (g.Lk - g.Lq)) : 0;
      for (int64_t h = w.g * group; h < (w.g + 1) * group; ++h) {
        for (int64_t iq0 = (first_q / kBr) * kBr; iq0 < g.Lq; iq0 += kBr) {
          const int64_t br = std::min(kBr, g.Lq - iq0);
          pack_rows(a.q, a.Hq, D, g.q0 + iq0, br, h, a.scale, t.Qs);
          pack_rows(dout, a.Hq, D, g.q0 + iq0, br, h, 1.0f, t.dO);
          probs_and_dscores(t, g, iq0, br, kk0, bc, h);
          transpose_tile(t.P, br, bc, t.PT);
          flash::nn(bc, D, br, t.PT, kBr, t.dO, D, dV, D, true);  // dV += P^T dO
          transpose_tile(t.dS, br, bc, t.PT);
          flash::nn(bc, D, br, t.PT, kBr, t.Qs, D, dK, D, true);  // dK += dS^T (scale Q)
        }
      }
      for (int64_t j = 0; j < bc; ++j) {
        const int64_t r = ((g.k0 + kk0 + j) * a.Hkv + w.g) * D;
        std::memcpy(dk + r, dK + j * D, size_t(D) * sizeof(float));
        std::memcpy(dv + r, dV + j * D, size_t(D) * sizeof(float));
      }
    }
  });
  // Pass 2: dQ over (segment, head, query tile): each item owns its dq rows, so no thread needs a
  // copy of dq (extra memory stays O(threads x tile)); S and dP are recomputed.
  struct QItem {
    int64_t b, h, qt;
  };
  std::vector<QItem> qitems;
  for (int64_t b = 0; b < a.B; ++b) {
    const Seg g = seg(a, b);
    for (int64_t h = 0; h < a.Hq; ++h)
      for (int64_t qt = 0; qt * kBr < g.Lq; ++qt) qitems.push_back({b, h, qt});
  }
  parallel_chunks(int64_t(qitems.size()), 1, [&](int64_t i0, int64_t i1, int tid) {
    const Tiles t = tiles_of(tid);
    float* dQ = t.acc;
    for (int64_t it = i0; it < i1; ++it) {
      const QItem& w = qitems[size_t(it)];
      const Seg g = seg(a, w.b);
      const int64_t kvh = w.h / group, iq0 = w.qt * kBr, br = std::min(kBr, g.Lq - iq0);
      pack_rows(a.q, a.Hq, D, g.q0 + iq0, br, w.h, a.scale, t.Qs);
      pack_rows(dout, a.Hq, D, g.q0 + iq0, br, w.h, 1.0f, t.dO);
      std::fill(dQ, dQ + br * D, 0.0f);
      const int64_t kend = visible_keys(iq0 + br - 1, g.Lq, g.Lk, a.causal);
      for (int64_t kk0 = 0; kk0 < kend; kk0 += kBc) {
        const int64_t bc = std::min(kBc, kend - kk0);
        pack_keys(t, g, kk0, bc, kvh);
        probs_and_dscores(t, g, iq0, br, kk0, bc, w.h);
        flash::nn(br, D, bc, t.dS, kBc, t.Kr, D, dQ, D, true);  // dQ += dS K
      }
      for (int64_t i = 0; i < br; ++i) {
        float* dst = dq + ((g.q0 + iq0 + i) * a.Hq + w.h) * D;
        for (int64_t t2 = 0; t2 < D; ++t2) dst[t2] = dQ[i * D + t2] * a.scale;
      }
    }
  });
}

int64_t attention_rows_scratch(const AttnArgs& a) {
  int64_t m = 1;
  for (int64_t b = 0; b < a.B; b++) m = std::max<int64_t>(m, a.cu_k[b + 1] - a.cu_k[b]);
  return m;
}

// Scores of one (query, head) item against its visible keys, then one softmax pass: with a
// handful of query rows there is no tile to amortise the packing that the tiled path does.
void attention_forward_rows(const AttnArgs& a, float* out, float* lse, int64_t i0, int64_t i1, float* p) {
  const int64_t group = a.Hq / a.Hkv, D = a.D, ldq = a.Hq * D, ldk = a.Hkv * D;
  for (int64_t item = i0; item < i1; item++) {
    const int64_t i = item / a.Hq, h = item % a.Hq, hk = h / group;
    const int64_t s = std::upper_bound(a.cu_q, a.cu_q + a.B + 1, int32_t(i)) - a.cu_q - 1;
    const int64_t lq = a.cu_q[s + 1] - a.cu_q[s], k0 = a.cu_k[s], lk = a.cu_k[s + 1] - k0;
    const int64_t kend = visible_keys(i - a.cu_q[s], lq, lk, a.causal);
    const float* qr = a.q + i * ldq + h * D;
    float* o = out + i * ldq + h * D;
    std::fill(o, o + D, 0.0f);
    float mx = -INFINITY;
    for (int64_t j = 0; j < kend; j++) {
      p[j] = vec_dot(qr, a.k + (k0 + j) * ldk + hk * D, D) * a.scale;
      mx = std::max(mx, p[j]);  // may drop a NaN score: its weight below is NaN all the same
    }
    OnlineRow r{-INFINITY, 0.0f};
    online_rescale(r, mx);
    for (int64_t j = 0; j < kend; j++) {
      p[j] = online_weight(r, p[j]);
      r.l += p[j];
    }
    if (lse) lse[i * a.Hq + h] = online_lse(r);
    if (r.l == 0.0f) continue;  // (a NaN l goes on: the output row becomes NaN)
    const float inv = 1.0f / r.l;
    for (int64_t j = 0; j < kend; j++) vec_axpy(o, p[j] * inv, a.v + (k0 + j) * ldk + hk * D, D);
  }
}

}  // namespace vt
