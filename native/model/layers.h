// The network's layers (internal to native/model): the decoder layer and the vision block with
// their saved-activation structs, the vision tower and merger, and the drivers that run a stack.
#pragma once
#include <cstdint>
#include <memory>
#include <vector>

#include "../core/storage.h"
#include "../kernels/attention/attention.h"
#include "qwen.h"

namespace vt {

// A set of float buffers carved from one allocation (counted host memory).
class Arena {
 public:
  // Reserves n floats (64-byte aligned); returns the offset. Pointers are valid after alloc().
  int64_t reserve(int64_t n) {
    const int64_t off = size_;
    size_ += (n + 15) / 16 * 16;
    return off;
  }
  void alloc() { buf_.reset(size_t(size_ > 0 ? size_ : 1)); }
  float* at(int64_t off) const { return buf_.data() + off; }
  int64_t floats() const { return size_; }

 private:
  int64_t size_ = 0;
  ScratchBuffer<float> buf_;
};

// One decoder layer's activations: saved for its backward (training) or scratch (inference).
// Shapes: x_in, h1, x_mid, h2 (BT, C); rstd1, rstd2 (BT); q, att (BT, Hq*D); k, v (BT, Hkv*D);
// lse (BT, Hq); g, u (BT, F) before the activation; t_* (BT, r) LoRA down-projections.
struct DecoderActs {
  float *x_in = nullptr, *h1 = nullptr, *rstd1 = nullptr, *q = nullptr, *k = nullptr, *v = nullptr, *att = nullptr,
        *lse = nullptr, *x_mid = nullptr, *h2 = nullptr, *rstd2 = nullptr, *g = nullptr, *u = nullptr;
  float *t_q = nullptr, *t_k = nullptr, *t_v = nullptr, *t_o = nullptr, *t_gate = nullptr, *t_up = nullptr,
        *t_down = nullptr;
};

// What a decoder forward kept for its backward.
struct DecoderState {
  int64_t B = 0, T = 0;
  Arena arena;                    // every saved buffer
  std::vector<DecoderActs> acts;  // per layer ('layer' recompute: only x_in each, the rest in `shared`)
  DecoderActs shared;             // the recompute scratch set
  float *cs = nullptr, *sn = nullptr;  // rope tables (BT, D/2)
  float *x_final = nullptr, *rstd_final = nullptr;
  std::vector<int32_t> cu_q, cu_k;  // attention segments of the batch
};

// Runs the decoder stack on x (BT, C) in place (the residual stream): embeddings in, the last
// layer's output out. With st, activations are saved into it (training); with a cache, K/V are
// appended to it and attention runs over it.
struct DecoderRun {
  float* x = nullptr;
  int64_t B = 0, T = 0;
  const float *cs = nullptr, *sn = nullptr;
  const int32_t *cu_q = nullptr, *cu_k = nullptr;
  int64_t nseg = 0;
  float *kcache = nullptr, *vcache = nullptr;  // (layers, B, max_len, Hkv, D) or null
  int64_t past = 0, max_len = 0;
  DecoderState* st = nullptr;
};
void decoder_forward(const QwenModel& m, const DecoderRun& r);
// dx (BT, C): the gradient of the stack's output in, of its input (the embeddings) out.
// Layers below `lowest` (the lowest layer whose gradient or input gradient anyone needs) are skipped.
void decoder_backward(const QwenModel& m, DecoderState& st, float* dx, int64_t lowest);

// The attention segments of rows whose real tokens form one run [s_b, e_b) each (masks with
// holes are rejected before): real queries see their row's real keys (causal, bottom-right
// aligned); padding queries see none. Keys of row b start at b * kstride + kbase; keys before
// kbase + s_b of a row with a cache are its padding. Filler segments cover the gaps.
void attention_segments(int64_t B, int64_t T, const uint8_t* mask, int64_t kstride, int64_t klen_past,
                        const uint8_t* cache_mask, int64_t cache_stride, std::vector<int32_t>& cu_q,
                        std::vector<int32_t>& cu_k);

// One vision block's activations. Shapes: x_in, h1, x_mid, h2 (N, vC); q, k, v, att (N, vH*vD);
// lse (N, vH); g, u (N, vF); rstd1, rstd2 (N); t_* (N, r).
struct VisionActs {
  float *x_in = nullptr, *h1 = nullptr, *rstd1 = nullptr, *q = nullptr, *k = nullptr, *v = nullptr, *att = nullptr,
        *lse = nullptr, *x_mid = nullptr, *h2 = nullptr, *rstd2 = nullptr, *g = nullptr, *u = nullptr;
  float *t_qkv = nullptr, *t_proj = nullptr, *t_gate = nullptr, *t_up = nullptr, *t_down = nullptr;
};
struct VisionState {
  int64_t N = 0, M = 0;
  Arena arena;
  std::vector<VisionActs> acts;
  VisionActs shared;
  float *cs = nullptr, *sn = nullptr;  // 2-D rope tables (N, vD/2)
  float *x_final = nullptr, *rstd_m = nullptr, *hm = nullptr, *m1 = nullptr;  // merger
  float *t_m0 = nullptr, *t_m2 = nullptr;
  std::vector<int32_t> index, cu_window, cu_full;
  StoragePtr pixels;
  int64_t pixels_offset = 0;
};
// Vision embeddings (M, Co), processor order. With st: activations saved for vision_backward.
StoragePtr vision_forward(const QwenModel& m, const ForwardInputs& in, VisionState* st);
// demb (M, Co) processor order: adds the tower's parameter gradients.
void vision_backward(const QwenModel& m, VisionState& st, const float* demb);

}  // namespace vt
