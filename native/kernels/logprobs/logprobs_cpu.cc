// CPU log-prob gathering: row kernels' dispatch and scalar forms, the from-logits drivers and
// the fused LM-head forward and backward (gather.h).
#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "../../core/convert.h"
#include "../../core/gemm.h"
#include "../../core/gemm_bf16.h"
#include "../../core/parallel.h"
#include "../../core/simd.h"
#include "../../core/storage.h"
#include "logprobs.h"
#include "logprobs_rows.h"

namespace vt {
namespace gather {
namespace detail {

SoftmaxState row_state_scalar(const float* x, int64_t n, float scale, bool entropy) {
  SoftmaxState st = softmax_state_empty();
  for (int64_t c0 = 0; c0 < n; c0 += kChunk) {
    const int64_t len = std::min(kChunk, n - c0);
    float cm = -INFINITY;
    for (int64_t v = 0; v < len; ++v) cm = std::max(cm, x[c0 + v]);
    cm *= scale;
    if (cm == -INFINITY) {
      if (has_nan(x + c0, len)) softmax_state_merge(st, softmax_state_nan());
      continue;
    }
    float s = 0, t = 0;
    for (int64_t v = 0; v < len; ++v) {
      const float d = x[c0 + v] * scale - cm;
      const float e = std::exp(d);
      s += e;
      if (entropy && e != 0.0f) t += e * d;
    }
    softmax_state_merge(st, SoftmaxState{double(cm), double(s), double(t)});
  }
  return st;
}

void row_grad_scalar(const float* x, int64_t n, float scale, float lse, float coef, float* out) {
  for (int64_t v = 0; v < n; ++v) out[v] = -coef * std::exp(x[v] * scale - lse);
}

}  // namespace detail

bool has_nan(const float* x, int64_t n) {
  for (int64_t v = 0; v < n; ++v)
    if (x[v] != x[v]) return true;
  return false;
}

SoftmaxState row_state(const float* x, int64_t n, float scale, bool entropy) {
#if VT_X86
  if (cpu().use_avx512) return detail::row_state_avx512(x, n, scale, entropy);
  if (cpu().use_avx2) return detail::row_state_avx2(x, n, scale, entropy);
#endif
  return detail::row_state_scalar(x, n, scale, entropy);
}

void row_grad(const float* x, int64_t n, float scale, float lse, float coef, float* out) {
#if VT_X86
  if (cpu().use_avx512) return detail::row_grad_avx512(x, n, scale, lse, coef, out);
  if (cpu().use_avx2) return detail::row_grad_avx2(x, n, scale, lse, coef, out);
#endif
  detail::row_grad_scalar(x, n, scale, lse, coef, out);
}

namespace {

// One row's backward: d[v] = g/T * (onehot(y) - p_v), in place allowed.
void row_backward(const float* x, int64_t V, int32_t y, float scale, float lse, float g, float* d) {
  const float gs = g * scale;
  if (lse == -INFINITY || (g == 0.0f && lse == lse)) {
    // An all -inf row has no distribution (its logp is -inf): no gradient flows. A zero upstream
    // gradient gives zeros too, unless the row is NaN (autograd's 0 * NaN is NaN).
    std::fill(d, d + V, 0.0f);
    return;
  }
  const float xy = x[y];  // read before an in-place write
  row_grad(x, V, scale, lse, gs, d);
  d[y] = gs * (1.0f - std::exp(xy * scale - lse));
}

}  // namespace
}  // namespace gather

void gather_logprobs_cpu(const float* x, int64_t N, int64_t V, int64_t ldx, const int32_t* tgt, float temperature,
                         float* logp, float* lse, float* ent) {
  const float scale = 1.0f / temperature;
  parallel_for(N, 1, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const float* row = x + r * ldx;
      const SoftmaxState st = gather::row_state(row, V, scale, ent != nullptr);
      lse[r] = float(softmax_state_lse(st));
      logp[r] = float(softmax_state_logprob(st, double(row[tgt[r]] * scale)));
      if (ent) ent[r] = float(softmax_state_entropy(st));
    }
  });
}

void gather_logprobs_backward_cpu(const float* x, int64_t N, int64_t V, int64_t ldx, const int32_t* tgt,
                                  const float* lse, const float* dlogp, float temperature, float* dx) {
  const float scale = 1.0f / temperature;
  parallel_for(N, 1, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r)
      gather::row_backward(x + r * ldx, V, tgt[r], scale, lse[r], dlogp[r], dx + r * V);
  });
}

// ---- fused LM head ----
// Each token block (<= token_block tokens) walks the vocabulary in chunks of vocab_chunk rows: a
// logits tile (tokens x chunk, a few MiB) comes from one multithreaded GEMM (the BLAS when
// linked), then its rows are reduced to per-chunk softmax states in parallel; the states merge
// in chunk order at the end, so the result does not depend on timing. The backward recomputes
// each tile, turns it into dZ in place, and feeds two more GEMMs (dW chunk, dHidden block).
namespace {

// The tiles' GEMMs: what sgemm's Auto picks for this CPU (native/core/gemm.cc: the builtin GEMM
// at AVX-512, where the forward at N 256, H 896, V 151936 takes 350-360 ms on 2 Zen 4 cores).
constexpr GemmImpl kTileGemm = GemmImpl::Auto;

struct Plan {
  int64_t nb, vc, nchunks;
};

// Whether the weight chunks are converted to f32 first (f16 always, bf16 for the f32 GEMM).
bool converts(const LinearLogprobsArgs& a) { return a.wdtype != DType::F32 && !(a.bf16 && a.wdtype == DType::BF16); }

Plan plan(const LinearLogprobsArgs& a) {
  Plan p;
  p.nb = std::max<int64_t>(1, std::min(a.token_block, a.N));
  p.vc = std::max<int64_t>(16, std::min(a.vocab_chunk, a.V));
  p.nchunks = (a.V + p.vc - 1) / p.vc;
  return p;
}

// Weight rows [v0, v0 + n) as the tiles' GEMMs take them.
struct WeightRows {
  const void* p;
  DType dt;
};

// C (M, N) (+)= alpha op(A) op(B) for the tiles: sgemm, or gemm_bf16 when a.bf16 (A is f32).
void tile_gemm(const LinearLogprobsArgs& a, bool tA, bool tB, int64_t M, int64_t N, int64_t K, float alpha, const float* A,
               int64_t lda, WeightRows B, int64_t ldb, float beta, float* C, int64_t ldc) {
  if (a.bf16)
    gemm_bf16(tA, tB, M, N, K, alpha, A, DType::F32, lda, B.p, B.dt, ldb, beta, C, ldc);
  else
    sgemm(tA, tB, M, N, K, alpha, A, lda, static_cast<const float*>(B.p), ldb, beta, C, ldc, kTileGemm);
}

// Tile (nb, n) of z = (h w^T + b) / T for tokens [t0, t0 + nb), vocabulary rows [v0, v0 + n).
// Returns the weight rows used: the chunk itself (f32, or bf16 for the bf16 GEMM) or its f32
// conversion in wbuf.
WeightRows logits_tile(const LinearLogprobsArgs& a, int64_t t0, int64_t nb, int64_t v0, int64_t n, int64_t ldt, float* tile,
                       float* wbuf) {
  const float scale = 1.0f / a.temperature;
  WeightRows w;
  if (a.wdtype == DType::F32 || (a.bf16 && a.wdtype == DType::BF16)) {
    w = {static_cast<const char*>(a.weight) + v0 * a.H * (a.wdtype == DType::F32 ? 4 : 2), a.wdtype};
  } else {
    const uint16_t* src = static_cast<const uint16_t*>(a.weight) + v0 * a.H;
    parallel_for(n, 64, [&](int64_t r0, int64_t r1) { cast(src + r0 * a.H, a.wdtype, wbuf + r0 * a.H, DType::F32, (r1 - r0) * a.H); });
    w = {wbuf, DType::F32};
  }
  tile_gemm(a, false, true, nb, n, a.H, scale, a.hidden + t0 * a.H, a.H, w, a.H, 0.0f, tile, ldt);
  if (a.bias) {
    parallel_for(nb, 16, [&](int64_t r0, int64_t r1) {
      for (int64_t r = r0; r < r1; ++r)
        for (int64_t j = 0; j < n; ++j) tile[r * ldt + j] += a.bias[v0 + j] * scale;
    });
  }
  return w;
}

}  // namespace

void linear_logprobs_cpu(const LinearLogprobsArgs& a, float* logp, float* lse, float* ent) {
  const Plan p = plan(a);
  ScratchBuffer<SoftmaxState> states(size_t(p.nb * p.nchunks));
  ScratchBuffer<float> zy(size_t(p.nb)), tile(size_t(p.nb * p.vc));
  ScratchBuffer<float> wbuf(converts(a) ? size_t(p.vc * a.H) : 0);
  for (int64_t t0 = 0; t0 < a.N; t0 += p.nb) {
    const int64_t nb = std::min(p.nb, a.N - t0);
    for (int64_t c = 0; c < p.nchunks; ++c) {
      const int64_t v0 = c * p.vc, n = std::min(p.vc, a.V - v0);
      logits_tile(a, t0, nb, v0, n, p.vc, tile.data(), wbuf.data());
      parallel_for(nb, 8, [&](int64_t r0, int64_t r1) {
        for (int64_t r = r0; r < r1; ++r) {
          const float* row = tile.data() + r * p.vc;
          states[size_t(r * p.nchunks + c)] = gather::row_state(row, n, 1.0f, ent != nullptr);
          const int64_t y = a.tgt[t0 + r];
          if (y >= v0 && y < v0 + n) zy[size_t(r)] = row[y - v0];
        }
      });
    }
    // Merge each token's chunk states in chunk order.
    for (int64_t r = 0; r < nb; ++r) {
      SoftmaxState st = softmax_state_empty();
      for (int64_t c = 0; c < p.nchunks; ++c) softmax_state_merge(st, states[size_t(r * p.nchunks + c)]);
      lse[t0 + r] = float(softmax_state_lse(st));
      logp[t0 + r] = float(softmax_state_logprob(st, double(zy[size_t(r)])));
      if (ent) ent[t0 + r] = float(softmax_state_entropy(st));
    }
  }
}

void linear_logprobs_backward_cpu(const LinearLogprobsArgs& a, const float* lse, const float* dlogp, float* dhidden,
                                  float* dweight, float* dbias, bool accumulate) {
  if (a.N == 0) {
    if (!accumulate) {
      if (dweight) std::fill(dweight, dweight + a.V * a.H, 0.0f);
      if (dbias) std::fill(dbias, dbias + a.V, 0.0f);
    }
    return;
  }
  const Plan p = plan(a);
  const float scale = 1.0f / a.temperature;
  ScratchBuffer<float> tile(size_t(p.nb * p.vc));
  ScratchBuffer<float> wbuf(converts(a) ? size_t(p.vc * a.H) : 0);
  for (int64_t t0 = 0; t0 < a.N; t0 += p.nb) {
    const int64_t nb = std::min(p.nb, a.N - t0);
    const bool first = t0 == 0 && !accumulate;
    for (int64_t c = 0; c < p.nchunks; ++c) {
      const int64_t v0 = c * p.vc, n = std::min(p.vc, a.V - v0);
      float* tl = tile.data();
      const WeightRows w = logits_tile(a, t0, nb, v0, n, p.vc, tl, wbuf.data());
      // dZ = dlogp * (onehot - p) / T, in place over the logits tile.
      parallel_for(nb, 8, [&](int64_t r0, int64_t r1) {
        for (int64_t r = r0; r < r1; ++r) {
          float* row = tl + r * p.vc;
          const float g = dlogp[t0 + r] * scale, l = lse[t0 + r];
          const int64_t y = a.tgt[t0 + r];
          if (l == -INFINITY || g == 0.0f) {
            std::fill(row, row + n, 0.0f);
            continue;
          }
          const bool here = y >= v0 && y < v0 + n;
          const float zyv = here ? row[y - v0] : 0.0f;
          gather::row_grad(row, n, 1.0f, l, g, row);
          if (here) row[y - v0] = g * (1.0f - std::exp(zyv - l));
        }
      });
      // dW[v0:v0+n] (+)= dZ^T h ; db (+)= colsum dZ ; dH (+)= dZ W.
      if (dweight)
        tile_gemm(a, true, false, n, a.H, nb, 1.0f, tl, p.vc, {a.hidden + t0 * a.H, DType::F32}, a.H, first ? 0.0f : 1.0f, dweight + v0 * a.H, a.H);
      if (dbias) {
        parallel_for(n, 64, [&](int64_t j0, int64_t j1) {
          for (int64_t j = j0; j < j1; ++j) {
            float s = first ? 0.0f : dbias[v0 + j];
            for (int64_t r = 0; r < nb; ++r) s += tl[r * p.vc + j];
            dbias[v0 + j] = s;
          }
        });
      }
      tile_gemm(a, false, false, nb, a.H, n, 1.0f, tl, p.vc, w, a.H, c == 0 ? 0.0f : 1.0f, dhidden + t0 * a.H, a.H);
    }
  }
}

}  // namespace vt
