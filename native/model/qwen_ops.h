// Qwen2.5-VL CPU operators: activations are f32 row-major; weights stay in their stored dtype
// (bf16, f16 or f32) and are widened to f32 as they are read. Every operator has a scalar path
// and AVX2 / AVX-512 paths picked at run time (cpu().use_avx2 / use_avx512).
//
// Letters: T tokens (rows), C channels, K input features, N output features, H heads, D head dim,
// S position streams (1 text, 2 vision h/w, 3 M-RoPE t/h/w).
#pragma once
#include <cstdint>

#include "../core/dtype.h"

namespace vt {
namespace qwen {

// y (T, N) = x (T, K) @ w(N, K)^T [+ b (N)], w and b of dtype wdt / bdt. y must not alias x.
void linear(float* y, const float* x, const void* w, DType wdt, const void* b, DType bdt, int64_t T, int64_t K,
            int64_t N);
// y (T, C) = x * rsqrt(mean(x^2) + eps) * w (C). y may alias x.
void rms_norm(float* y, const float* x, const void* w, DType wdt, float eps, int64_t T, int64_t C);
// x (T, H, D) rotated in place (rotate-half convention): frequency j in [0, D/2) uses position
// stream s(j) (sections[s] consecutive frequencies each), angle = pos[s(j) * T + t] * inv_freq[j].
void rope(float* x, const int32_t* pos, const float* inv_freq, const int32_t* sections, int S, int64_t T, int64_t H,
          int64_t D);
// y (T, F) = silu(g) * u, g and u rows of stride ldg / ldu (so a fused gate|up output works).
void swiglu(float* y, const float* g, int64_t ldg, const float* u, int64_t ldu, int64_t T, int64_t F);
// y = gelu(x) (exact, erf form), n elements. y may alias x.
void gelu(float* y, const float* x, int64_t n);
// y (T, C) = table[ids[t]] widened to f32. ids are checked by the caller.
void embedding(float* y, const int32_t* ids, const void* table, DType tdt, int64_t T, int64_t C);
// y += x, n elements.
void add_inplace(float* y, const float* x, int64_t n);

// Attention over variable-length sequences (cu_q, cu_k: nseq + 1 offsets), GQA (Hq a multiple
// of Hkv). q (Tq, Hq, D) row stride ldq, k/v (Tk, Hkv, D) row strides ldk/ldv, out (Tq, Hq, D).
// causal: query i of a sequence sees keys j <= i + (lenK - lenQ) (bottom-right aligned).
// key_ok (Tk) optional: keys with key_ok[j] == 0 are masked; a query with no visible key gets 0.
void attention(float* out, const float* q, int64_t ldq, const float* k, int64_t ldk, const float* v, int64_t ldv,
               const int32_t* cu_q, const int32_t* cu_k, int64_t nseq, int64_t Hq, int64_t Hkv, int64_t D,
               bool causal, float scale, const uint8_t* key_ok);

// One Qwen2 decoder layer's weights (pointers into the caller's tensors).
struct DecoderLayerW {
  const void *ln1, *ln2, *wq, *bq, *wk, *bk, *wv, *bv, *wo, *wg, *wu, *wd;
  DType dln1, dln2, dwq, dbq, dwk, dbk, dwv, dbv, dwo, dwg, dwu, dwd;
  float *kcache, *vcache;  // (B, maxLen, Hkv, D) each
};
struct DecoderDims {
  int64_t B, T, past, max_len, C, Hq, Hkv, D, F;
  float eps;
};
// Runs the layers on x (B*T, C) in place. pos (3, B*T) M-RoPE positions; key_ok (B, max_len)
// marks the keys (padding excluded) visible to the batch rows; inv_freq (D/2); sections (3).
void decoder_layers(float* x, const DecoderLayerW* layers, int64_t nlayers, const DecoderDims& d, const int32_t* pos,
                    const uint8_t* key_ok, const float* inv_freq, const int32_t* sections);

}  // namespace qwen
}  // namespace vt
