// The Qwen2.5-VL vision tower and patch merger, forward and backward (layers.h).
//
// Patches arrive in the processor's order (blocks of U = merge^2 patches, one merged token each);
// the tower works in window order (the merged tokens of each window together, so that windows
// and frames are contiguous segments of the attention kernel) and the merger's output goes back
// to the processor's order. Op by op: the tower's inputs are hundreds to thousands of patches, so
// every op is a parallel call of its own.
#include <algorithm>
#include <cmath>
#include <cstring>

#include "../core/parallel.h"
#include "../kernels/attention/attention.h"
#include "../ops/act.h"
#include "../ops/linear.h"
#include "../ops/norm.h"
#include "../ops/rope.h"
#include "layers.h"

namespace vt {

namespace {

struct VLayout {
  int64_t x_in = -1, h1, rstd1, q, k, v, att, lse, x_mid = -1, h2, rstd2, g, u;
  int64_t t[5] = {-1, -1, -1, -1, -1};
};
VLayout layout(Arena& ar, const QwenModel& m, const VisionBlockW& W, int64_t N, bool x_in, bool x_mid) {
  const QwenDims& d = m.dims();
  VLayout o;
  if (x_in) o.x_in = ar.reserve(N * d.vC);
  o.h1 = ar.reserve(N * d.vC);
  o.rstd1 = ar.reserve(N);
  o.q = ar.reserve(N * d.vC);
  o.k = ar.reserve(N * d.vC);
  o.v = ar.reserve(N * d.vC);
  o.att = ar.reserve(N * d.vC);
  o.lse = ar.reserve(N * d.vH);
  if (x_mid) o.x_mid = ar.reserve(N * d.vC);
  o.h2 = ar.reserve(N * d.vC);
  o.rstd2 = ar.reserve(N);
  o.g = ar.reserve(N * d.vF);
  o.u = ar.reserve(N * d.vF);
  const LinearW* lin[5] = {&W.qkv, &W.proj, &W.gate, &W.up, &W.down};
  for (int i = 0; i < 5; i++)
    if (lin[i]->r > 0) o.t[i] = ar.reserve(N * lin[i]->r);
  return o;
}
VisionActs resolve(const Arena& ar, const VLayout& o) {
  auto p = [&](int64_t off) { return off < 0 ? nullptr : ar.at(off); };
  VisionActs a;
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
  a.t_qkv = p(o.t[0]);
  a.t_proj = p(o.t[1]);
  a.t_gate = p(o.t[2]);
  a.t_up = p(o.t[3]);
  a.t_down = p(o.t[4]);
  return a;
}

// y = x W^T + b (+ LoRA, t saved).
void linear_fwd(const LinearW& w, float* y, float* t, const float* x, int64_t rows) {
  linear_forward_cpu(y, x, w.w.w, w.b.w, rows, w.in, w.out);
  if (w.r > 0) lora_forward_cpu(y, t, x, w.A, w.B, w.scale, rows, w.in, w.out, w.r);
}
void linear_bwd(const LinearW& w, float* dx, bool acc, const float* dy, const float* x, const float* t, int64_t rows,
                float* lora_ws) {
  linear_backward_cpu(dx, w.w.g, w.b.g, dy, x, w.w.w, rows, w.in, w.out, acc);
  if (w.r > 0) lora_backward_cpu(dx, w.gA, w.gB, dy, x, t, w.A, w.B, w.scale, rows, w.in, w.out, w.r, lora_ws);
}

AttnArgs block_attn(const QwenModel& m, const VisionState& st, const VisionActs& A, int64_t l) {
  const QwenDims& d = m.dims();
  const bool full = std::find(d.fullatt.begin(), d.fullatt.end(), int(l)) != d.fullatt.end();
  const std::vector<int32_t>& cu = full ? st.cu_full : st.cu_window;
  AttnArgs a;
  a.q = A.q;
  a.k = A.k;
  a.v = A.v;
  a.cu_q = cu.data();
  a.cu_k = cu.data();
  a.B = int64_t(cu.size()) - 1;
  a.Tq = a.Tk = st.N;
  a.Hq = a.Hkv = d.vH;
  a.D = d.vD;
  a.scale = float(1.0 / std::sqrt(double(d.vD)));
  a.causal = false;
  return a;
}

// One block on x (N, vC) in place. tmp (N, 3 vC) and s (N, vF) are scratch.
void block_forward(const QwenModel& m, const VisionState& st, const VisionActs& A, int64_t l, float* x, float* tmp,
                   float* s) {
  const QwenDims& d = m.dims();
  const VisionBlockW& W = m.blocks[size_t(l)];
  const int64_t N = st.N, C = d.vC;
  if (A.x_in) std::memcpy(A.x_in, x, size_t(N * C) * sizeof(float));
  rmsnorm_forward_cpu(A.h1, A.rstd1, x, W.n1.w, d.eps, N, C);
  linear_fwd(W.qkv, tmp, A.t_qkv, A.h1, N);
  parallel_for(N, 64, [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; i++) {
      std::memcpy(A.q + i * C, tmp + i * 3 * C, size_t(C) * sizeof(float));
      std::memcpy(A.k + i * C, tmp + i * 3 * C + C, size_t(C) * sizeof(float));
      std::memcpy(A.v + i * C, tmp + i * 3 * C + 2 * C, size_t(C) * sizeof(float));
    }
  });
  rope_apply_cpu(A.q, st.cs, st.sn, N, d.vH, d.vD, false);
  rope_apply_cpu(A.k, st.cs, st.sn, N, d.vH, d.vD, false);
  attention_forward_cpu(block_attn(m, st, A, l), A.att, A.lse);
  linear_fwd(W.proj, tmp, A.t_proj, A.att, N);
  parallel_for(N * C, 4096, [&](int64_t e0, int64_t e1) {
    for (int64_t e = e0; e < e1; e++) x[e] += tmp[e];
  });
  if (A.x_mid) std::memcpy(A.x_mid, x, size_t(N * C) * sizeof(float));
  rmsnorm_forward_cpu(A.h2, A.rstd2, x, W.n2.w, d.eps, N, C);
  linear_fwd(W.gate, A.g, A.t_gate, A.h2, N);
  linear_fwd(W.up, A.u, A.t_up, A.h2, N);
  swiglu_forward_cpu(s, A.g, A.u, N * d.vF);
  linear_fwd(W.down, tmp, A.t_down, s, N);
  parallel_for(N * C, 4096, [&](int64_t e0, int64_t e1) {
    for (int64_t e = e0; e < e1; e++) x[e] += tmp[e];
  });
}

}  // namespace

StoragePtr vision_forward(const QwenModel& m, const ForwardInputs& in, VisionState* save) {
  const QwenDims& d = m.dims();
  const int64_t N = in.N, C = d.vC, U = d.merge * d.merge, M = N / U, K = d.K, Co = d.Co;
  VisionState local;
  VisionState& st = save ? *save : local;
  st.N = N;
  st.M = M;
  st.index = in.index;
  st.cu_window = in.cu_window;
  st.cu_full = in.cu_full;
  st.pixels = in.pixels;
  st.pixels_offset = in.pixels_offset;
  const bool all = save && m.recompute() == Recompute::None;
  Arena scratch;
  Arena& ar = save ? st.arena : scratch;
  std::vector<VLayout> lay(size_t(d.vdepth));
  VLayout shared;
  if (all) {
    for (int64_t l = 0; l < d.vdepth; l++) lay[size_t(l)] = layout(ar, m, m.blocks[size_t(l)], N, true, true);
  } else {
    shared = layout(ar, m, m.blocks.empty() ? VisionBlockW{} : m.blocks[0], N, false, save != nullptr);
    if (save)
      for (int64_t l = 0; l < d.vdepth; l++) lay[size_t(l)].x_in = ar.reserve(N * C);
  }
  const int64_t o_cs = ar.reserve(N * d.vD / 2), o_sn = ar.reserve(N * d.vD / 2);
  const int64_t o_xf = save ? ar.reserve(N * C) : -1, o_rm = ar.reserve(N), o_hm = ar.reserve(N * C),
                o_m1 = ar.reserve(M * U * C);
  const int64_t o_t0 = m.merger0.r > 0 ? ar.reserve(M * m.merger0.r) : -1;
  const int64_t o_t2 = m.merger2.r > 0 ? ar.reserve(M * m.merger2.r) : -1;
  const int64_t o_x = scratch.reserve(N * C), o_tmp = scratch.reserve(N * std::max<int64_t>(3 * C, K > 0 ? C : 0)),
                o_s = scratch.reserve(N * d.vF), o_ge = scratch.reserve(M * U * C), o_out = scratch.reserve(M * Co);
  if (save) st.arena.alloc();
  scratch.alloc();
  st.acts.assign(size_t(d.vdepth), VisionActs{});
  for (int64_t l = 0; l < d.vdepth; l++) {
    if (all) st.acts[size_t(l)] = resolve(ar, lay[size_t(l)]);
    else if (save) st.acts[size_t(l)].x_in = ar.at(lay[size_t(l)].x_in);
  }
  st.shared = all ? VisionActs{} : resolve(ar, shared);
  st.cs = ar.at(o_cs);
  st.sn = ar.at(o_sn);
  st.x_final = o_xf >= 0 ? ar.at(o_xf) : nullptr;
  st.rstd_m = ar.at(o_rm);
  st.hm = ar.at(o_hm);
  st.m1 = ar.at(o_m1);
  st.t_m0 = o_t0 >= 0 ? ar.at(o_t0) : nullptr;
  st.t_m2 = o_t2 >= 0 ? ar.at(o_t2) : nullptr;
  float *x = scratch.at(o_x), *tmp = scratch.at(o_tmp), *s = scratch.at(o_s);

  // Patch embedding (the Conv3d with stride = kernel is a linear map of each flattened patch),
  // then window order.
  const float* px = static_cast<const float*>(in.pixels->data) + in.pixels_offset;
  linear_forward_cpu(tmp, px, m.patch.w, WeightRef{}, N, K, C);
  parallel_for(M, 16, [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; i++)
      std::memcpy(x + i * U * C, tmp + int64_t(st.index[size_t(i)]) * U * C, size_t(U * C) * sizeof(float));
  });
  const int32_t sec[2] = {int32_t(d.vD / 4), int32_t(d.vD / 4)};
  rope_table_cpu(st.cs, st.sn, in.vpos.data(), m.vis_inv_freq.data(), sec, 2, N, d.vD);
  for (int64_t l = 0; l < d.vdepth; l++) {
    VisionActs A = all ? st.acts[size_t(l)] : st.shared;
    if (!all && save) A.x_in = st.acts[size_t(l)].x_in;
    block_forward(m, st, A, l, x, tmp, s);
  }
  // Merger: RMSNorm per patch, U patches side by side, MLP with the exact GELU.
  if (st.x_final) std::memcpy(st.x_final, x, size_t(N * C) * sizeof(float));
  rmsnorm_forward_cpu(st.hm, st.rstd_m, x, m.merger_ln.w, d.eps, N, C);
  linear_fwd(m.merger0, st.m1, st.t_m0, st.hm, M);
  float* ge = scratch.at(o_ge);
  gelu_forward_cpu(ge, st.m1, M * U * C);
  float* out = scratch.at(o_out);
  linear_fwd(m.merger2, out, st.t_m2, ge, M);
  StoragePtr emb = storage_alloc(size_t(std::max<int64_t>(M * Co, 1)) * sizeof(float));
  float* e = static_cast<float*>(emb->data);
  parallel_for(M, 16, [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; i++)
      std::memcpy(e + int64_t(st.index[size_t(i)]) * Co, out + i * Co, size_t(Co) * sizeof(float));
  });
  return emb;
}

void vision_backward(const QwenModel& m, VisionState& st, const float* demb) {
  const QwenDims& d = m.dims();
  const int64_t N = st.N, C = d.vC, U = d.merge * d.merge, M = st.M, K = d.K, Co = d.Co, F = d.vF;
  int64_t rmax = std::max(m.merger0.r, m.merger2.r);
  for (const VisionBlockW& W : m.blocks)
    for (const LinearW* w : {&W.qkv, &W.proj, &W.gate, &W.up, &W.down}) rmax = std::max(rmax, w->r);
  Arena ar;
  const bool rec = m.recompute() == Recompute::Layer;
  const int64_t o_dout = ar.reserve(M * Co), o_ge = ar.reserve(M * U * C), o_dge = ar.reserve(M * U * C),
                o_dx = ar.reserve(N * C), o_dh = ar.reserve(N * C), o_s = ar.reserve(N * F), o_ds = ar.reserve(N * F),
                o_datt = ar.reserve(N * C), o_dqkv = ar.reserve(N * 3 * C), o_dq = ar.reserve(N * C),
                o_dk = ar.reserve(N * C), o_dv = ar.reserve(N * C), o_lw = ar.reserve(std::max<int64_t>(N, M) * std::max<int64_t>(rmax, 1)),
                o_x = rec ? ar.reserve(N * C) : -1, o_tmp = rec ? ar.reserve(N * 3 * C) : -1, o_s2 = rec ? ar.reserve(N * F) : -1;
  ar.alloc();
  float *dout = ar.at(o_dout), *ge = ar.at(o_ge), *dge = ar.at(o_dge), *dx = ar.at(o_dx), *dh = ar.at(o_dh),
        *s = ar.at(o_s), *ds = ar.at(o_ds), *datt = ar.at(o_datt), *dqkv = ar.at(o_dqkv), *dq = ar.at(o_dq),
        *dk = ar.at(o_dk), *dv = ar.at(o_dv), *lw = ar.at(o_lw);
  // Merger, in window order.
  parallel_for(M, 16, [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; i++) std::memcpy(dout + i * Co, demb + int64_t(st.index[size_t(i)]) * Co, size_t(Co) * sizeof(float));
  });
  gelu_forward_cpu(ge, st.m1, M * U * C);
  linear_bwd(m.merger2, dge, false, dout, ge, st.t_m2, M, lw);
  gelu_backward_cpu(dge, dge, st.m1, M * U * C);
  linear_bwd(m.merger0, dh, false, dge, st.hm, st.t_m0, M, lw);
  rmsnorm_backward_cpu(dx, m.merger_ln.g, dh, st.x_final, st.rstd_m, m.merger_ln.w, N, C, false);
  for (int64_t l = d.vdepth - 1; l >= 0; l--) {
    const VisionBlockW& W = m.blocks[size_t(l)];
    VisionActs A = rec ? st.shared : st.acts[size_t(l)];
    if (rec) {
      float* x = ar.at(o_x);
      std::memcpy(x, st.acts[size_t(l)].x_in, size_t(N * C) * sizeof(float));
      A.x_in = nullptr;
      block_forward(m, st, A, l, x, ar.at(o_tmp), ar.at(o_s2));
      A.x_in = st.acts[size_t(l)].x_in;
    }
    swiglu_forward_cpu(s, A.g, A.u, N * F);
    linear_bwd(W.down, ds, false, dx, s, A.t_down, N, lw);
    swiglu_backward_cpu(A.g, A.u, ds, A.g, A.u, N * F);
    linear_bwd(W.gate, dh, false, A.g, A.h2, A.t_gate, N, lw);
    linear_bwd(W.up, dh, true, A.u, A.h2, A.t_up, N, lw);
    rmsnorm_backward_cpu(dx, W.n2.g, dh, A.x_mid, A.rstd2, W.n2.w, N, C, true);
    linear_bwd(W.proj, datt, false, dx, A.att, A.t_proj, N, lw);
    attention_backward_cpu(block_attn(m, st, A, l), A.att, A.lse, datt, dq, dk, dv);
    rope_apply_cpu(dq, st.cs, st.sn, N, d.vH, d.vD, true);
    rope_apply_cpu(dk, st.cs, st.sn, N, d.vH, d.vD, true);
    parallel_for(N, 64, [&](int64_t i0, int64_t i1) {
      for (int64_t i = i0; i < i1; i++) {
        std::memcpy(dqkv + i * 3 * C, dq + i * C, size_t(C) * sizeof(float));
        std::memcpy(dqkv + i * 3 * C + C, dk + i * C, size_t(C) * sizeof(float));
        std::memcpy(dqkv + i * 3 * C + 2 * C, dv + i * C, size_t(C) * sizeof(float));
      }
    });
    linear_bwd(W.qkv, dh, false, dqkv, A.h1, A.t_qkv, N, lw);
    rmsnorm_backward_cpu(dx, W.n1.g, dh, A.x_in, A.rstd1, W.n1.w, N, C, true);
  }
  if (m.patch.g) {
    // Back to the processor's order, then the patch embedding's weight gradient.
    float* dx0 = dh;
    parallel_for(M, 16, [&](int64_t i0, int64_t i1) {
      for (int64_t i = i0; i < i1; i++)
        std::memcpy(dx0 + int64_t(st.index[size_t(i)]) * U * C, dx + i * U * C, size_t(U * C) * sizeof(float));
    });
    const float* px = static_cast<const float*>(st.pixels->data) + st.pixels_offset;
    linear_backward_cpu(nullptr, m.patch.g, nullptr, dx0, px, WeightRef{}, N, K, C, false);
  }
}

}  // namespace vt
