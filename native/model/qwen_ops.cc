// Qwen2.5-VL CPU operators (qwen_ops.h): scalar reference paths, run-time ISA dispatch, and the
// fused decoder layer stack that one forward or decode step runs as a single native job.
#include "qwen_ops.h"

#include <algorithm>
#include <atomic>
#include <memory>
#include <thread>
#include <cmath>
#include <cstring>
#include <functional>
#include <vector>

#include "../core/gemm.h"
#include "../core/half.h"
#include "../core/parallel.h"
#include "../core/simd.h"
#include "../core/storage.h"
#include "../core/vec.h"
#include "../kernels/attention/attention.h"

namespace vt {
namespace qwen {


namespace {
inline float dot(const float* a, const float* b, int64_t n) { return vec_dot(a, b, n); }
inline void axpy(float* y, float a, const float* x, int64_t n) { vec_axpy(y, a, x, n); }
inline double sumsq(const float* x, int64_t n) { return vec_sumsq(x, n); }
// Up to this many rows the weights are streamed once through the GEMV (decode and short
// prompts); beyond it, blocks of 64 weight rows are widened to f32 and multiplied by the
// builtin GEMM, whose FLOP rate then dominates the one-time widening.
constexpr int64_t kGemvMaxRows = 8;
constexpr int64_t kGemmBlockN = 64;
}  // namespace

void linear(float* y, const float* x, const void* w, DType wdt, const void* b, DType bdt, int64_t T, int64_t K,
            int64_t N) {
  if (T <= 0 || N <= 0) return;
  if (T <= kGemvMaxRows) {
    // Grain: 16 rows of K weights keeps each thread's share large enough to amortise the split.
    parallel_for(N, 16, [&](int64_t n0, int64_t n1) { gemv_rows(y, N, x, K, T, w, wdt, K, n0, n1); });
  } else {
    const int nth = num_threads();
    std::vector<ScratchBuffer<float>> scratch(static_cast<size_t>(std::max(nth, 1)));
    const int64_t nblocks = (N + kGemmBlockN - 1) / kGemmBlockN;
    parallel_chunks(nblocks, 1, [&](int64_t b0, int64_t b1, int tid) {
      ScratchBuffer<float>& s = scratch[static_cast<size_t>(tid)];
      if (s.size() == 0) s.reset(static_cast<size_t>(kGemmBlockN * K));
      for (int64_t blk = b0; blk < b1; blk++) {
        const int64_t n0 = blk * kGemmBlockN, n1 = std::min(N, n0 + kGemmBlockN);
        widen_rows(s.data(), w, wdt, K, n0, n1);
        sgemm_serial(false, true, T, n1 - n0, K, 1.0f, x, K, s.data(), K, 0.0f, y + n0, N);
      }
    });
  }
  if (b) {
    std::vector<float> bb(static_cast<size_t>(N));
    for (int64_t n = 0; n < N; n++) bb[static_cast<size_t>(n)] = load_f32(b, bdt, n);
    parallel_for(T, 64, [&](int64_t t0, int64_t t1) {
      for (int64_t t = t0; t < t1; t++)
        for (int64_t n = 0; n < N; n++) y[t * N + n] += bb[static_cast<size_t>(n)];
    });
  }
}

void rms_norm(float* y, const float* x, const void* w, DType wdt, float eps, int64_t T, int64_t C) {
  std::vector<float> ww(static_cast<size_t>(C));
  for (int64_t c = 0; c < C; c++) ww[static_cast<size_t>(c)] = load_f32(w, wdt, c);
  parallel_for(T, 16, [&](int64_t t0, int64_t t1) {
    for (int64_t t = t0; t < t1; t++) {
      const float* xr = x + t * C;
      float* yr = y + t * C;
      const float r = float(1.0 / std::sqrt(sumsq(xr, C) / double(C) + double(eps)));
      for (int64_t c = 0; c < C; c++) yr[c] = (xr[c] * r) * ww[static_cast<size_t>(c)];
    }
  });
}

void rope(float* x, const int32_t* pos, const float* inv_freq, const int32_t* sections, int S, int64_t T, int64_t H,
          int64_t D) {
  const int64_t half = D / 2;
  std::vector<int> stream(static_cast<size_t>(half), 0);
  {
    int64_t j = 0;
    for (int s = 0; s < S; s++)
      for (int32_t c = 0; c < sections[s] && j < half; c++) stream[static_cast<size_t>(j++)] = s;
  }
  parallel_for(T, 8, [&](int64_t t0, int64_t t1) {
    std::vector<float> cs(static_cast<size_t>(half)), sn(static_cast<size_t>(half));
    for (int64_t t = t0; t < t1; t++) {
      for (int64_t j = 0; j < half; j++) {
        const double a = double(pos[int64_t(stream[static_cast<size_t>(j)]) * T + t]) * double(inv_freq[j]);
        cs[static_cast<size_t>(j)] = float(std::cos(a));
        sn[static_cast<size_t>(j)] = float(std::sin(a));
      }
      for (int64_t h = 0; h < H; h++) {
        float* r = x + (t * H + h) * D;
        for (int64_t j = 0; j < half; j++) {
          const float a = r[j], b = r[j + half];
          r[j] = a * cs[static_cast<size_t>(j)] - b * sn[static_cast<size_t>(j)];
          r[j + half] = b * cs[static_cast<size_t>(j)] + a * sn[static_cast<size_t>(j)];
        }
      }
    }
  });
}

void swiglu(float* y, const float* g, int64_t ldg, const float* u, int64_t ldu, int64_t T, int64_t F) {
  parallel_for(T, 4, [&](int64_t t0, int64_t t1) {
    for (int64_t t = t0; t < t1; t++)
      for (int64_t f = 0; f < F; f++) {
        const float gv = g[t * ldg + f];
        y[t * F + f] = gv / (1.0f + std::exp(-gv)) * u[t * ldu + f];
      }
  });
}

void gelu(float* y, const float* x, int64_t n) {
  parallel_for(n, 4096, [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; i++) y[i] = 0.5f * x[i] * (1.0f + std::erf(x[i] * 0.70710678118654752f));
  });
}

void embedding(float* y, const int32_t* ids, const void* table, DType tdt, int64_t T, int64_t C) {
  parallel_for(T, 16, [&](int64_t t0, int64_t t1) {
    for (int64_t t = t0; t < t1; t++) widen_rows(y + t * C, table, tdt, C, ids[t], int64_t(ids[t]) + 1);
  });
}

void add_inplace(float* y, const float* x, int64_t n) {
  parallel_for(n, 8192, [&](int64_t i0, int64_t i1) { axpy(y + i0, 1.0f, x + i0, i1 - i0); });
}

namespace {
struct RowAttnArgs {
  float* out;
  const float *q, *k, *v;
  int64_t ldq, ldk, ldv;
  const int32_t *cu_q, *cu_k;
  int64_t nseq, Hq, Hkv, D;
  bool causal;
  float scale;
  const uint8_t* key_ok;
};
// Work items [i0, i1) of (query token, head), items of one token adjacent; p holds the scores
// of one row (max key length).
void attend_items(const RowAttnArgs& a, int64_t i0, int64_t i1, float* p) {
  const int64_t group = a.Hq / a.Hkv, D = a.D;
  for (int64_t item = i0; item < i1; item++) {
    const int64_t i = item / a.Hq, h = item % a.Hq, hk = h / group;
    const int64_t s = std::upper_bound(a.cu_q, a.cu_q + a.nseq + 1, int32_t(i)) - a.cu_q - 1;
    const int64_t lq = a.cu_q[s + 1] - a.cu_q[s], k0 = a.cu_k[s], lk = a.cu_k[s + 1] - k0;
    int64_t kend = lk;
    if (a.causal) kend = std::min<int64_t>(lk, (i - a.cu_q[s]) + (lk - lq) + 1);
    const float* qr = a.q + i * a.ldq + h * D;
    float* o = a.out + (i * a.Hq + h) * D;
    float mx = -INFINITY;
    for (int64_t j = 0; j < kend; j++) {
      if (a.key_ok && !a.key_ok[k0 + j]) { p[j] = -INFINITY; continue; }
      const float sc = dot(qr, a.k + (k0 + j) * a.ldk + hk * D, D) * a.scale;
      p[j] = sc;
      mx = std::max(mx, sc);
    }
    std::fill(o, o + D, 0.0f);
    if (mx == -INFINITY) continue;
    double sum = 0;
    for (int64_t j = 0; j < kend; j++) {
      const float e = p[j] == -INFINITY ? 0.0f : std::exp(p[j] - mx);
      p[j] = e;
      sum += e;
    }
    const float inv = float(1.0 / sum);
    for (int64_t j = 0; j < kend; j++)
      if (p[j] != 0.0f) axpy(o, p[j] * inv, a.v + (k0 + j) * a.ldv + hk * D, D);
  }
}
}  // namespace

void attention(float* out, const float* q, int64_t ldq, const float* k, int64_t ldk, const float* v, int64_t ldv,
               const int32_t* cu_q, const int32_t* cu_k, int64_t nseq, int64_t Hq, int64_t Hkv, int64_t D,
               bool causal, float scale, const uint8_t* key_ok) {
  const RowAttnArgs a{out, q, k, v, ldq, ldk, ldv, cu_q, cu_k, nseq, Hq, Hkv, D, causal, scale, key_ok};
  int64_t maxk = 1;
  for (int64_t s = 0; s < nseq; s++) maxk = std::max<int64_t>(maxk, cu_k[s + 1] - cu_k[s]);
  const int nth = std::max(num_threads(), 1);
  std::vector<ScratchBuffer<float>> scratch(static_cast<size_t>(nth));
  parallel_chunks(cu_q[nseq] * Hq, 8, [&](int64_t i0, int64_t i1, int tid) {
    ScratchBuffer<float>& p = scratch[static_cast<size_t>(tid)];
    if (p.size() == 0) p.reset(static_cast<size_t>(maxk));
    attend_items(a, i0, i1, p.data());
  });
}

namespace {
// A spinning barrier for the threads of one parallel_run region: decode runs ~15 dependent
// steps per layer, and waking the pool's workers through a condition variable for each cost
// more than the step itself (measured: 48 ms of 58 ms per 0.5B token went to the 24 layers
// whose weights stream in ~26 ms).
class SpinBarrier {
 public:
  // n: the region's thread count (every caller passes the same).
  void wait(int n) {
    if (n <= 1) return;
    const int g = gen_.load(std::memory_order_acquire);
    if (count_.fetch_add(1, std::memory_order_acq_rel) + 1 == n) {
      count_.store(0, std::memory_order_relaxed);
      gen_.fetch_add(1, std::memory_order_acq_rel);
      return;
    }
    for (int spins = 0; gen_.load(std::memory_order_acquire) == g; spins++)
      if (spins > 2000) std::this_thread::yield();
  }

 private:
  std::atomic<int> count_{0}, gen_{0};
};

inline void split(int64_t n, int tid, int nth, int64_t align, int64_t& b, int64_t& e) {
  const int64_t units = (n + align - 1) / align;
  const int64_t per = units / nth, rem = units % nth;
  const int64_t ub = tid * per + std::min<int64_t>(tid, rem), ue = ub + per + (tid < rem ? 1 : 0);
  b = std::min(n, ub * align);
  e = std::min(n, ue * align);
}

// This thread's share of linear(): output columns [n0, n1) for every row.
void linear_part(float* y, const float* x, const void* w, DType wdt, const void* b, DType bdt, int64_t T, int64_t K,
                 int64_t N, int tid, int nth, ScratchBuffer<float>& scratch) {
  int64_t n0, n1;
  if (T <= kGemvMaxRows) {
    split(N, tid, nth, 16, n0, n1);
    if (n0 < n1) gemv_rows(y, N, x, K, T, w, wdt, K, n0, n1);
  } else {
    split(N, tid, nth, kGemmBlockN, n0, n1);
    if (n0 < n1 && scratch.size() < static_cast<size_t>(kGemmBlockN * K)) scratch.reset(static_cast<size_t>(kGemmBlockN * K));
    for (int64_t c0 = n0; c0 < n1; c0 += kGemmBlockN) {
      const int64_t c1 = std::min(n1, c0 + kGemmBlockN);
      widen_rows(scratch.data(), w, wdt, K, c0, c1);
      sgemm_serial(false, true, T, c1 - c0, K, 1.0f, x, K, scratch.data(), K, 0.0f, y + c0, N);
    }
  }
  if (b && n0 < n1)
    for (int64_t t = 0; t < T; t++)
      for (int64_t n = n0; n < n1; n++) y[t * N + n] += load_f32(b, bdt, n);
}

void rms_norm_rows(float* y, const float* x, const void* w, DType wdt, float eps, int64_t t0, int64_t t1, int64_t C) {
  for (int64_t t = t0; t < t1; t++) {
    const float* xr = x + t * C;
    float* yr = y + t * C;
    const float r = float(1.0 / std::sqrt(sumsq(xr, C) / double(C) + double(eps)));
    for (int64_t c = 0; c < C; c++) yr[c] = (xr[c] * r) * load_f32(w, wdt, c);
  }
}

void rope_rows(float* x, const int32_t* pos, const float* inv_freq, const int* stream, int64_t T, int64_t t0, int64_t t1,
               int64_t H, int64_t D, float* cs, float* sn) {
  const int64_t half = D / 2;
  for (int64_t t = t0; t < t1; t++) {
    for (int64_t j = 0; j < half; j++) {
      const double a = double(pos[int64_t(stream[j]) * T + t]) * double(inv_freq[j]);
      cs[j] = float(std::cos(a));
      sn[j] = float(std::sin(a));
    }
    for (int64_t h = 0; h < H; h++) {
      float* r = x + (t * H + h) * D;
      for (int64_t j = 0; j < half; j++) {
        const float a = r[j], b = r[j + half];
        r[j] = a * cs[j] - b * sn[j];
        r[j + half] = b * cs[j] + a * sn[j];
      }
    }
  }
}
}  // namespace

void decoder_layers(float* x, const DecoderLayerW* layers, int64_t nlayers, const DecoderDims& d, const int32_t* pos,
                    const uint8_t* key_ok, const float* inv_freq, const int32_t* sections) {
  const int64_t BT = d.B * d.T, C = d.C, QD = d.Hq * d.D, KD = d.Hkv * d.D, F = d.F, half = d.D / 2;
  ScratchBuffer<float> h(static_cast<size_t>(BT * C)), q(static_cast<size_t>(BT * QD)), k(static_cast<size_t>(BT * KD)),
      v(static_cast<size_t>(BT * KD)), att(static_cast<size_t>(BT * QD)), o(static_cast<size_t>(BT * C)),
      g(static_cast<size_t>(BT * F)), u(static_cast<size_t>(BT * F));
  const float scale = float(1.0 / std::sqrt(double(d.D)));
  const int64_t kv_len = d.past + d.T;
  const int32_t cu_q1[2] = {0, int32_t(d.T)};
  const int32_t cu_k1[2] = {0, int32_t(kv_len)};
  std::vector<int> stream(static_cast<size_t>(half), 0);
  {
    int64_t j = 0;
    for (int s = 0; s < 3; s++)
      for (int32_t c = 0; c < sections[s] && j < half; c++) stream[static_cast<size_t>(j++)] = s;
  }
  // Prompts (more than a GEMV's worth of rows) go through the fused attention kernel when every
  // row's visible keys are one run [pad_b, kv_len) (no mask, or left padding): the batch rows
  // become segments of the cache, with empty-query segments over the gaps between rows.
  std::vector<int32_t> fcu_q, fcu_k;
  bool flash = d.T > kGemvMaxRows;
  for (int64_t b = 0; flash && b < d.B; b++) {
    int64_t pad = 0;
    if (key_ok) {
      const uint8_t* r = key_ok + b * d.max_len;
      while (pad < kv_len && !r[pad]) pad++;
      for (int64_t j = pad; j < kv_len; j++)
        if (!r[j]) flash = false;
    }
    if (b == 0) { fcu_q.push_back(0); fcu_k.push_back(0); }
    fcu_q.push_back(int32_t(b * d.T));
    fcu_k.push_back(int32_t(b * d.max_len + pad));
    fcu_q.push_back(int32_t((b + 1) * d.T));
    fcu_k.push_back(int32_t(b * d.max_len + kv_len));
  }
  if (flash) {
    fcu_q.push_back(int32_t(BT));
    fcu_k.push_back(int32_t(d.B * d.max_len));
  }
  ScratchBuffer<float> lse(flash ? static_cast<size_t>(BT * d.Hq) : 0);
  const int nmax = std::max(num_threads(), 1);
  std::vector<ScratchBuffer<float>> wide(static_cast<size_t>(nmax)), rows(static_cast<size_t>(nmax));
  std::vector<ScratchBuffer<float>> trig(static_cast<size_t>(nmax));
  for (auto& r : trig) r.reset(static_cast<size_t>(d.D));
  if (!flash)
    for (auto& r : rows) r.reset(static_cast<size_t>(std::max<int64_t>(kv_len, d.D)));
  SpinBarrier barrier;

  // Norm, q/k/v projections, rotary, cache append.
  auto pre = [&](const DecoderLayerW& L, int tid, int nth, const std::function<void()>& sync) {
    int64_t r0, r1;
    split(BT, tid, nth, 1, r0, r1);
    ScratchBuffer<float>& ws = wide[static_cast<size_t>(tid)];
    float* cs = trig[static_cast<size_t>(tid)].data();
    rms_norm_rows(h.data(), x, L.ln1, L.dln1, d.eps, r0, r1, C);
    sync();
    linear_part(q.data(), h.data(), L.wq, L.dwq, L.bq, L.dbq, BT, C, QD, tid, nth, ws);
    linear_part(k.data(), h.data(), L.wk, L.dwk, L.bk, L.dbk, BT, C, KD, tid, nth, ws);
    linear_part(v.data(), h.data(), L.wv, L.dwv, L.bv, L.dbv, BT, C, KD, tid, nth, ws);
    sync();
    rope_rows(q.data(), pos, inv_freq, stream.data(), BT, r0, r1, d.Hq, d.D, cs, cs + half);
    rope_rows(k.data(), pos, inv_freq, stream.data(), BT, r0, r1, d.Hkv, d.D, cs, cs + half);
    sync();
    int64_t t0, t1;
    split(d.T, tid, nth, 1, t0, t1);
    for (int64_t b = 0; b < d.B; b++) {
      float* kc = L.kcache + b * d.max_len * KD;
      float* vc = L.vcache + b * d.max_len * KD;
      std::memcpy(kc + (d.past + t0) * KD, k.data() + (b * d.T + t0) * KD, static_cast<size_t>((t1 - t0) * KD) * sizeof(float));
      std::memcpy(vc + (d.past + t0) * KD, v.data() + (b * d.T + t0) * KD, static_cast<size_t>((t1 - t0) * KD) * sizeof(float));
    }
  };
  // Decode-sized attention inside the region: (token, head) items split over the threads.
  auto attend_part = [&](const DecoderLayerW& L, int tid, int nth) {
    for (int64_t b = 0; b < d.B; b++) {
      const RowAttnArgs a{att.data() + b * d.T * QD, q.data() + b * d.T * QD, L.kcache + b * d.max_len * KD,
                       L.vcache + b * d.max_len * KD, QD, KD, KD, cu_q1, cu_k1, 1, d.Hq, d.Hkv, d.D, true, scale,
                       key_ok ? key_ok + b * d.max_len : nullptr};
      int64_t i0, i1;
      split(d.T * d.Hq, tid, nth, 1, i0, i1);
      attend_items(a, i0, i1, rows[static_cast<size_t>(tid)].data());
    }
  };
  // Output projection, residual, norm, SwiGLU MLP, residual.
  auto post = [&](const DecoderLayerW& L, int tid, int nth, const std::function<void()>& sync) {
    int64_t r0, r1, e0, e1;
    split(BT, tid, nth, 1, r0, r1);
    split(BT * C, tid, nth, 16, e0, e1);
    ScratchBuffer<float>& ws = wide[static_cast<size_t>(tid)];
    linear_part(o.data(), att.data(), L.wo, L.dwo, nullptr, DType::F32, BT, QD, C, tid, nth, ws);
    sync();
    axpy(x + e0, 1.0f, o.data() + e0, e1 - e0);
    sync();
    rms_norm_rows(h.data(), x, L.ln2, L.dln2, d.eps, r0, r1, C);
    sync();
    linear_part(g.data(), h.data(), L.wg, L.dwg, nullptr, DType::F32, BT, C, F, tid, nth, ws);
    linear_part(u.data(), h.data(), L.wu, L.dwu, nullptr, DType::F32, BT, C, F, tid, nth, ws);
    {
      // Each thread owns the same columns of g and u it just wrote (same split of F).
      int64_t f0, f1;
      split(F, tid, nth, BT <= kGemvMaxRows ? 16 : kGemmBlockN, f0, f1);
      for (int64_t t = 0; t < BT; t++)
        for (int64_t f = f0; f < f1; f++) {
          const float gv = g[static_cast<size_t>(t * F + f)];
          g[static_cast<size_t>(t * F + f)] = gv / (1.0f + std::exp(-gv)) * u[static_cast<size_t>(t * F + f)];
        }
    }
    sync();
    linear_part(o.data(), g.data(), L.wd, L.dwd, nullptr, DType::F32, BT, F, C, tid, nth, ws);
    sync();
    axpy(x + e0, 1.0f, o.data() + e0, e1 - e0);
  };

  if (!flash) {
    // Decode: one region for the whole stack; steps split by (tid, nth), separated by a barrier.
    parallel_run(nmax, [&](int tid, int nth) {
      const std::function<void()> sync = [&] { barrier.wait(nth); };
      for (int64_t l = 0; l < nlayers; l++) {
        pre(layers[l], tid, nth, sync);
        sync();
        attend_part(layers[l], tid, nth);
        sync();
        post(layers[l], tid, nth, sync);
        sync();
      }
    });
    return;
  }
  vt::AttnArgs fa;
  fa.cu_q = fcu_q.data();
  fa.cu_k = fcu_k.data();
  fa.B = int64_t(fcu_q.size()) - 1;
  fa.Tq = BT;
  fa.Tk = d.B * d.max_len;
  fa.Hq = d.Hq;
  fa.Hkv = d.Hkv;
  fa.D = d.D;
  fa.scale = scale;
  fa.causal = true;
  for (int64_t l = 0; l < nlayers; l++) {
    const DecoderLayerW& L = layers[l];
    parallel_run(nmax, [&](int tid, int nth) { pre(L, tid, nth, [&] { barrier.wait(nth); }); });
    fa.q = q.data();
    fa.k = L.kcache;
    fa.v = L.vcache;
    attention_forward_cpu(fa, att.data(), lse.data());
    parallel_run(nmax, [&](int tid, int nth) { post(L, tid, nth, [&] { barrier.wait(nth); }); });
  }
}

}  // namespace qwen
}  // namespace vt
