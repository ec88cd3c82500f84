// The Qwen2 decoder layer, forward and backward (layers.h).
//
// The forward is three phases per layer: `pre` (RMSNorm, q/k/v projections, rotary, cache
// append), the attention, and `post` (output projection, residual, RMSNorm, SwiGLU MLP,
// residual). Each phase is written for a thread team (tid of nth, with a barrier between its
// dependent steps), so the same code serves two drivers:
//   decode (a few rows): one parallel region for the whole stack, attention by rows inside it;
//   prompts and training: one region per phase, the tiled attention kernel between them.
// The backward runs op by op, each op parallel inside (its GEMMs are large).
#include <algorithm>
#include <cmath>
#include <cstring>
#include <functional>

#include "../core/parallel.h"
#include "../kernels/attention/attention.h"
#include "../ops/act.h"
#include "../ops/linear.h"
#include "../ops/norm.h"
#include "../ops/rope.h"
#include "layers.h"

namespace vt {

namespace {

using Sync = std::function<void()>;

// Everything one layer's phases read.
struct LayerCtx {
  const QwenModel& m;
  const DecoderLayerW& L;
  const DecoderActs& A;
  const DecoderRun& r;
  int64_t l;
  float* tmp;  // (BT, C): a projection's output before the residual add
  float* s;    // (BT, F): the activation's output (== A.g when g need not be kept)
  std::vector<ScratchBuffer<float>>& ws;
};

bool has_lora(const LinearW& w) { return w.r > 0; }

// Base projections of a group of linears sharing one input, then their LoRA terms (the
// down-projections by rows, a barrier, the up-projections by columns). Ends without a barrier.
void linears_part(const LayerCtx& c, const float* x, std::initializer_list<std::pair<const LinearW*, std::pair<float*, float*>>> group,
                  int64_t rows, int tid, int nth, const Sync& sync) {
  bool lora = false;
  for (const auto& it : group) {
    const LinearW& w = *it.first;
    linear_forward_part(it.second.first, x, w.w.w, w.b.w, rows, w.in, w.out, tid, nth, c.ws[size_t(tid)]);
    lora = lora || has_lora(w);
  }
  if (!lora) return;
  int64_t r0, r1;
  split_range(rows, tid, nth, 1, r0, r1);
  for (const auto& it : group)
    if (has_lora(*it.first)) lora_down_rows(it.second.second, x, it.first->A, it.first->in, it.first->r, r0, r1);
  sync();
  for (const auto& it : group) {
    const LinearW& w = *it.first;
    if (!has_lora(w)) continue;
    int64_t n0, n1;
    split_range(w.out, tid, nth, 16, n0, n1);
    lora_up_columns(it.second.first, it.second.second, w.B, w.scale, rows, w.out, w.r, n0, n1);
  }
}

void phase_pre(const LayerCtx& c, int tid, int nth, const Sync& sync) {
  const QwenDims& d = c.m.dims();
  const DecoderLayerW& L = c.L;
  const DecoderActs& A = c.A;
  const int64_t BT = c.r.B * c.r.T, C = d.C, KD = d.Hkv * d.D;
  int64_t r0, r1;
  split_range(BT, tid, nth, 1, r0, r1);
  if (A.x_in) std::memcpy(A.x_in + r0 * C, c.r.x + r0 * C, size_t((r1 - r0) * C) * sizeof(float));
  rmsnorm_forward_rows(A.h1, A.rstd1, c.r.x, L.ln1.w, d.eps, C, r0, r1);
  sync();
  linears_part(c, A.h1, {{&L.q, {A.q, A.t_q}}, {&L.k, {A.k, A.t_k}}, {&L.v, {A.v, A.t_v}}}, BT, tid, nth, sync);
  sync();
  rope_apply_rows(A.q, c.r.cs, c.r.sn, d.Hq, d.D, r0, r1, false);
  rope_apply_rows(A.k, c.r.cs, c.r.sn, d.Hkv, d.D, r0, r1, false);
  if (c.r.kcache) {
    const int64_t layer = d.Hkv * d.D * c.r.max_len * c.r.B;
    float* kc = c.r.kcache + c.l * layer;
    float* vc = c.r.vcache + c.l * layer;
    for (int64_t i = r0; i < r1; i++) {
      const int64_t b = i / c.r.T, t = i % c.r.T, dst = (b * c.r.max_len + c.r.past + t) * KD;
      std::memcpy(kc + dst, A.k + i * KD, size_t(KD) * sizeof(float));
      std::memcpy(vc + dst, A.v + i * KD, size_t(KD) * sizeof(float));
    }
  }
}

void phase_post(const LayerCtx& c, int tid, int nth, const Sync& sync) {
  const QwenDims& d = c.m.dims();
  const DecoderLayerW& L = c.L;
  const DecoderActs& A = c.A;
  const int64_t BT = c.r.B * c.r.T, C = d.C, F = d.F;
  int64_t r0, r1, e0, e1;
  split_range(BT, tid, nth, 1, r0, r1);
  split_range(BT * C, tid, nth, 16, e0, e1);
  linears_part(c, A.att, {{&L.o, {c.tmp, A.t_o}}}, BT, tid, nth, sync);
  sync();
  for (int64_t e = e0; e < e1; e++) c.r.x[e] += c.tmp[e];
  if (A.x_mid) std::memcpy(A.x_mid + e0, c.r.x + e0, size_t(e1 - e0) * sizeof(float));
  sync();
  rmsnorm_forward_rows(A.h2, A.rstd2, c.r.x, L.ln2.w, d.eps, C, r0, r1);
  sync();
  linears_part(c, A.h2, {{&L.gate, {A.g, A.t_gate}}, {&L.up, {A.u, A.t_up}}}, BT, tid, nth, sync);
  int64_t f0, f1;
  if (has_lora(L.gate) || has_lora(L.up)) {
    sync();
    split_range(F, tid, nth, 16, f0, f1);
  } else {
    // This thread wrote these columns of g and u itself: no barrier needed before using them.
    linear_part_columns(BT, F, tid, nth, f0, f1);
  }
  swiglu_forward_cols(c.s, A.g, A.u, F, BT, f0, f1);
  sync();
  linears_part(c, c.s, {{&L.down, {c.tmp, A.t_down}}}, BT, tid, nth, sync);
  sync();
  for (int64_t e = e0; e < e1; e++) c.r.x[e] += c.tmp[e];
}

AttnArgs layer_attn(const QwenModel& m, const DecoderRun& r, const DecoderActs& A, int64_t l) {
  const QwenDims& d = m.dims();
  AttnArgs a;
  a.q = A.q;
  if (r.kcache) {
    const int64_t layer = d.Hkv * d.D * r.max_len * r.B;
    a.k = r.kcache + l * layer;
    a.v = r.vcache + l * layer;
    a.Tk = r.B * r.max_len;
  } else {
    a.k = A.k;
    a.v = A.v;
    a.Tk = r.B * r.T;
  }
  a.cu_q = r.cu_q;
  a.cu_k = r.cu_k;
  a.B = r.nseg;
  a.Tq = r.B * r.T;
  a.Hq = d.Hq;
  a.Hkv = d.Hkv;
  a.D = d.D;
  a.scale = float(1.0 / std::sqrt(double(d.D)));
  a.causal = true;
  return a;
}

// Lays out one set of layer buffers in `ar` (offsets; pointers after ar.alloc()).
struct ActsLayout {
  int64_t x_in = -1, h1, rstd1, q, k, v, att, lse, x_mid = -1, h2, rstd2, g, u;
  int64_t t[7] = {-1, -1, -1, -1, -1, -1, -1};
};
ActsLayout layout_acts(Arena& ar, const QwenModel& m, const DecoderLayerW& L, int64_t BT, bool x_in, bool x_mid) {
  const QwenDims& d = m.dims();
  const int64_t C = d.C, QD = d.Hq * d.D, KD = d.Hkv * d.D;
  ActsLayout o;
  if (x_in) o.x_in = ar.reserve(BT * C);
  o.h1 = ar.reserve(BT * C);
  o.rstd1 = ar.reserve(BT);
  o.q = ar.reserve(BT * QD);
  o.k = ar.reserve(BT * KD);
  o.v = ar.reserve(BT * KD);
  o.att = ar.reserve(BT * QD);
  o.lse = ar.reserve(BT * d.Hq);
  if (x_mid) o.x_mid = ar.reserve(BT * C);
  o.h2 = ar.reserve(BT * C);
  o.rstd2 = ar.reserve(BT);
  o.g = ar.reserve(BT * d.F);
  o.u = ar.reserve(BT * d.F);
  const LinearW* lin[7] = {&L.q, &L.k, &L.v, &L.o, &L.gate, &L.up, &L.down};
  for (int i = 0; i < 7; i++)
    if (lin[i]->r > 0) o.t[i] = ar.reserve(BT * lin[i]->r);
  return o;
}
DecoderActs resolve(const Arena& ar, const ActsLayout& o) {
  auto p = [&](int64_t off) { return off < 0 ? nullptr : ar.at(off); };
  DecoderActs a;
  a.x_in = p(o.x_in);
  a.h1 = p(o.h1);
  a.rstd1 = p(o.rstd1);
  a.q = p(o.q);
  a.k = p(o.k);
  a.v = p(o.v);
  a.att = p(o.att);
  a.lse = p(o.lse);
  a.x_mid = p(o.x_mid);
  a.h2 = p(o.h2);
  a.rstd2 = p(o.rstd2);
  a.g = p(o.g);
  a.u = p(o.u);
  a.t_q = p(o.t[0]);
  a.t_k = p(o.t[1]);
  a.t_v = p(o.t[2]);
  a.t_o = p(o.t[3]);
  a.t_gate = p(o.t[4]);
  a.t_up = p(o.t[5]);
  a.t_down = p(o.t[6]);
  return a;
}

// The layer's forward with the given buffers: the prompt/training driver (one region per phase).
void layer_forward(const QwenModel& m, const DecoderRun& r, const DecoderActs& A, int64_t l, float* tmp, float* s,
                   std::vector<ScratchBuffer<float>>& ws) {
  const int nmax = std::max(num_threads(), 1);
  const LayerCtx c{m, m.layers[size_t(l)], A, r, l, tmp, s, ws};
  SpinBarrier barrier;
  parallel_run(nmax, [&](int tid, int nth) { phase_pre(c, tid, nth, [&] { barrier.wait(nth); }); });
  const AttnArgs a = layer_attn(m, r, A, l);
  attention_forward_cpu(a, A.att, A.lse);
  parallel_run(nmax, [&](int tid, int nth) { phase_post(c, tid, nth, [&] { barrier.wait(nth); }); });
}

}  // namespace

void attention_segments(int64_t B, int64_t T, const uint8_t* mask, int64_t kstride, int64_t klen_past,
                        const uint8_t* cache_mask, int64_t cache_stride, std::vector<int32_t>& cu_q,
                        std::vector<int32_t>& cu_k) {
  cu_q.assign(1, 0);
  cu_k.assign(1, 0);
  int64_t qc = 0, kc = 0;  // how far the segments reach
  auto emit = [&](int64_t q0, int64_t q1, int64_t k0, int64_t k1) {
    if (qc < q0) {  // queries before this segment that see no key
      cu_q.push_back(int32_t(q0));
      cu_k.push_back(int32_t(kc));
      qc = q0;
    }
    if (kc < k0) {  // keys before this segment that no query sees
      cu_q.push_back(int32_t(qc));
      cu_k.push_back(int32_t(k0));
      kc = k0;
    }
    cu_q.push_back(int32_t(q1));
    cu_k.push_back(int32_t(k1));
    qc = q1;
    kc = k1;
  };
  for (int64_t b = 0; b < B; b++) {
    if (cache_mask) {
      // Keys: the row's cache [0, past + T); its padding is a leading run.
      const uint8_t* km = cache_mask + b * cache_stride;
      int64_t pad = 0;
      while (pad < klen_past + T && !km[pad]) pad++;
      emit(b * T, (b + 1) * T, b * kstride + pad, b * kstride + klen_past + T);
    } else {
      int64_t s = 0, e = T;
      if (mask) {
        const uint8_t* mr = mask + b * T;
        while (s < T && !mr[s]) s++;
        e = s;
        while (e < T && mr[e]) e++;
      }
      emit(b * T + s, b * T + e, b * kstride + s, b * kstride + e);
    }
  }
  const int64_t qtot = B * T, ktot = cache_mask ? B * kstride : B * T;
  if (qc < qtot || kc < ktot) {
    cu_q.push_back(int32_t(qtot));
    cu_k.push_back(int32_t(ktot));
  }
}

void decoder_forward(const QwenModel& m, const DecoderRun& r) {
  const QwenDims& d = m.dims();
  const int64_t BT = r.B * r.T;
  const int nmax = std::max(num_threads(), 1);
  std::vector<ScratchBuffer<float>> ws(static_cast<size_t>(nmax));
  DecoderState* st = r.st;
  const bool save_all = st && m.recompute() == Recompute::None;
  // Buffers: saved per layer (training, recompute none), x_in per layer plus one shared set
  // (recompute layer), or one scratch set (inference).
  Arena scratch;
  std::vector<ActsLayout> lay(size_t(d.layers));
  ActsLayout shared_lay;
  Arena& ar = st ? st->arena : scratch;
  if (save_all) {
    for (int64_t l = 0; l < d.layers; l++) lay[size_t(l)] = layout_acts(ar, m, m.layers[size_t(l)], BT, true, true);
  } else {
    // The shared set holds the LoRA buffers of the widest layer (every layer has the same ranks).
    shared_lay = layout_acts(ar, m, m.layers.empty() ? DecoderLayerW{} : m.layers[0], BT, false, st != nullptr);
    if (st)
      for (int64_t l = 0; l < d.layers; l++) lay[size_t(l)].x_in = ar.reserve(BT * d.C);
  }
  const int64_t tmp_off = scratch.reserve(BT * d.C);
  const int64_t s_off = scratch.reserve(st ? BT * d.F : 0);
  if (st) st->arena.alloc();
  scratch.alloc();
  float* tmp = scratch.at(tmp_off);
  DecoderActs shared = save_all ? DecoderActs{} : resolve(ar, shared_lay);
  if (st) {
    st->acts.resize(size_t(d.layers));
    for (int64_t l = 0; l < d.layers; l++) {
      if (save_all) {
        st->acts[size_t(l)] = resolve(ar, lay[size_t(l)]);
      } else {
        st->acts[size_t(l)] = DecoderActs{};
        st->acts[size_t(l)].x_in = ar.at(lay[size_t(l)].x_in);
      }
    }
    st->shared = shared;
  }
  auto acts_of = [&](int64_t l) {
    if (save_all) return st->acts[size_t(l)];
    DecoderActs a = shared;
    if (st) a.x_in = st->acts[size_t(l)].x_in;
    return a;
  };

  if (BT > kLinearGemvRows || st) {
    for (int64_t l = 0; l < d.layers; l++) {
      const DecoderActs A = acts_of(l);
      layer_forward(m, r, A, l, tmp, st ? scratch.at(s_off) : A.g, ws);
    }
    return;
  }
  // Decode: the whole stack in one region, steps separated by a spinning barrier.
  std::vector<ScratchBuffer<float>> rows(static_cast<size_t>(nmax));
  SpinBarrier barrier;
  parallel_run(nmax, [&](int tid, int nth) {
    const Sync sync = [&] { barrier.wait(nth); };
    for (int64_t l = 0; l < d.layers; l++) {
      const DecoderActs A = acts_of(l);
      const LayerCtx c{m, m.layers[size_t(l)], A, r, l, tmp, A.g, ws};
      phase_pre(c, tid, nth, sync);
      sync();
      const AttnArgs a = layer_attn(m, r, A, l);
      ScratchBuffer<float>& sc = rows[size_t(tid)];
      const size_t need = size_t(attention_rows_scratch(a));
      if (sc.size() < need) sc.reset(need);
      int64_t i0, i1;
      split_range(BT * d.Hq, tid, nth, 1, i0, i1);
      attention_forward_rows(a, A.att, nullptr, i0, i1, sc.data());
      sync();
      phase_post(c, tid, nth, sync);
      sync();
    }
  });
}

namespace {

// dx (rows, in) [+]= dy @ W (+ LoRA), and the parameter gradients of one linear.
void linear_bwd(const LinearW& w, float* dx, bool acc, const float* dy, const float* x, const float* t, int64_t rows,
                float* lora_ws) {
  linear_backward_cpu(dx, w.w.g, w.b.g, dy, x, w.w.w, rows, w.in, w.out, acc);
  if (w.r > 0) lora_backward_cpu(dx, w.gA, w.gB, dy, x, t, w.A, w.B, w.scale, rows, w.in, w.out, w.r, lora_ws);
}

}  // namespace

void decoder_backward(const QwenModel& m, DecoderState& st, float* dx, int64_t lowest) {
  const QwenDims& d = m.dims();
  const int64_t BT = st.B * st.T, C = d.C, QD = d.Hq * d.D, KD = d.Hkv * d.D, F = d.F;
  int64_t rmax = 0;
  for (const DecoderLayerW& L : m.layers)
    for (const LinearW* w : {&L.q, &L.k, &L.v, &L.o, &L.gate, &L.up, &L.down}) rmax = std::max(rmax, w->r);
  Arena ar;
  const int64_t o_s = ar.reserve(BT * F), o_ds = ar.reserve(BT * F), o_dh = ar.reserve(BT * C),
                o_datt = ar.reserve(BT * QD), o_dq = ar.reserve(BT * QD), o_dk = ar.reserve(BT * KD),
                o_dv = ar.reserve(BT * KD), o_lw = ar.reserve(BT * std::max<int64_t>(rmax, 1)),
                o_x = m.recompute() == Recompute::Layer ? ar.reserve(BT * C) : -1,
                o_tmp = m.recompute() == Recompute::Layer ? ar.reserve(BT * C) : -1,
                o_s2 = m.recompute() == Recompute::Layer ? ar.reserve(BT * F) : -1;
  ar.alloc();
  float *s = ar.at(o_s), *ds = ar.at(o_ds), *dh = ar.at(o_dh), *datt = ar.at(o_datt), *dq = ar.at(o_dq),
        *dk = ar.at(o_dk), *dv = ar.at(o_dv), *lw = ar.at(o_lw);
  const int nmax = std::max(num_threads(), 1);
  std::vector<ScratchBuffer<float>> ws(static_cast<size_t>(nmax));
  DecoderRun r;
  r.B = st.B;
  r.T = st.T;
  r.cs = st.cs;
  r.sn = st.sn;
  r.cu_q = st.cu_q.data();
  r.cu_k = st.cu_k.data();
  r.nseg = int64_t(st.cu_q.size()) - 1;

  for (int64_t l = d.layers - 1; l >= lowest; l--) {
    const DecoderLayerW& L = m.layers[size_t(l)];
    DecoderActs A = st.acts[size_t(l)];
    if (m.recompute() == Recompute::Layer) {
      // Run the layer again from its saved input; the same code and thread split as the first
      // time, so every buffer comes out bitwise the same.
      float* x = ar.at(o_x);
      std::memcpy(x, A.x_in, size_t(BT * C) * sizeof(float));
      r.x = x;
      DecoderActs R = st.shared;
      R.x_in = nullptr;
      layer_forward(m, r, R, l, ar.at(o_tmp), ar.at(o_s2), ws);
      R.x_in = A.x_in;
      A = R;
    }
    // MLP: x_out = x_mid + down(silu(g) * u)
    swiglu_forward_cpu(s, A.g, A.u, BT * F);
    linear_bwd(L.down, ds, false, dx, s, A.t_down, BT, lw);
    swiglu_backward_cpu(A.g, A.u, ds, A.g, A.u, BT * F);  // dg, du over g, u (no longer needed)
    linear_bwd(L.gate, dh, false, A.g, A.h2, A.t_gate, BT, lw);
    linear_bwd(L.up, dh, true, A.u, A.h2, A.t_up, BT, lw);
    rmsnorm_backward_cpu(dx, L.ln2.g, dh, A.x_mid, A.rstd2, L.ln2.w, BT, C, true);
    // Attention: x_mid = x_in + o_proj(attn(rope(q), rope(k), v))
    linear_bwd(L.o, datt, false, dx, A.att, A.t_o, BT, lw);
    const AttnArgs a = layer_attn(m, r, A, l);
    attention_backward_cpu(a, A.att, A.lse, datt, dq, dk, dv);
    rope_apply_cpu(dq, st.cs, st.sn, BT, d.Hq, d.D, true);
    rope_apply_cpu(dk, st.cs, st.sn, BT, d.Hkv, d.D, true);
    linear_bwd(L.q, dh, false, dq, A.h1, A.t_q, BT, lw);
    linear_bwd(L.k, dh, true, dk, A.h1, A.t_k, BT, lw);
    linear_bwd(L.v, dh, true, dv, A.h1, A.t_v, BT, lw);
    rmsnorm_backward_cpu(dx, L.ln1.g, dh, A.x_in, A.rstd1, L.ln1.w, BT, C, true);
  }
}

}  // namespace vt
