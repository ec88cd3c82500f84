// The Qwen2.5-VL network (vision tower, patch merger, Qwen2 decoder with M-RoPE), forward and
// backward, written once from the ops of native/ops and the attention kernels, llm.c style:
// explicit layer functions with saved-activation structs, no tape. Decode runs the same layer
// forward with nothing saved, inside one thread team.
//
// Letters: B batch rows, T tokens per row, BT = B*T, C hidden, Hq / Hkv query / key-value heads,
// D head dim, F intermediate, V vocabulary; vision: N patches, vC hidden, vH heads, vD head dim,
// vF intermediate, K patch features (channels x temporal patch x patch x patch), U = merge^2
// patches per merged token, M = N / U merged tokens, Co the merger's output width (= C).
#pragma once
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "../core/dtype.h"
#include "../core/storage.h"
#include "params.h"

namespace vt {

struct QwenDims {
  int64_t C = 0, layers = 0, Hq = 0, Hkv = 0, D = 0, F = 0, V = 0;
  float eps = 1e-6f;
  double rope_theta = 1e6;
  int32_t sections[3] = {0, 0, 0};  // M-RoPE frequency counts of the t, h, w streams (sum D/2)
  bool tied = false;                // LM head = embedding table
  bool vision = false;
  int64_t vC = 0, vdepth = 0, vH = 0, vD = 0, vF = 0, K = 0, merge = 2, Co = 0;
  std::vector<int> fullatt;  // vision blocks attending over whole frames (others: windows)
};

// A parameter as the network uses it: the value and, when trainable, its gradient.
struct PRef {
  WeightRef w;
  float* g = nullptr;
};
// A linear layer: weight (out, in), optional bias, optional LoRA adapter (A (r, in), B (out, r)).
struct LinearW {
  PRef w, b;
  const float *A = nullptr, *B = nullptr;
  float *gA = nullptr, *gB = nullptr;
  int64_t in = 0, out = 0, r = 0;
  float scale = 0.0f;
  bool trainable() const { return w.g || b.g || gA || gB; }
};
struct DecoderLayerW {
  PRef ln1, ln2;
  LinearW q, k, v, o, gate, up, down;
};
struct VisionBlockW {
  PRef n1, n2;
  LinearW qkv, proj, gate, up, down;
};

struct LoraSpec {
  int64_t rank = 0;
  float alpha = 0.0f;
  std::vector<std::string> modules;  // e.g. "model.layers.0.self_attn.q_proj"
};

enum class Recompute { None, Layer };

// One forward's inputs (copied at the call, so what was validated is what the worker reads).
struct ForwardInputs {
  int64_t B = 0, T = 0;
  std::vector<int32_t> ids;   // (BT) token ids (vision positions too: their embedding is replaced)
  std::vector<int32_t> vrow;  // (BT) row of the vision embeddings for the position, or -1; may be empty
  std::vector<int32_t> pos;   // (3, BT) M-RoPE positions
  std::vector<uint8_t> mask;  // (BT) 1 real, 0 padding; empty: all real
  // Vision (when pixels): pixels (N, K) f32; the merged-token window order `index` (M), the
  // window and frame boundaries in patches (window order), and each patch's (row, col) (2, N),
  // window order.
  StoragePtr pixels;
  int64_t pixels_offset = 0, N = 0;
  std::vector<int32_t> index, cu_window, cu_full, vpos;
  // KV cache (inference): k, v (layers, B, max_len, Hkv, D) f32; key_ok (B, max_len).
  StoragePtr kcache, vcache, keymask;
  int64_t past = 0, max_len = 0;
  int logits = 2;  // 0 none, 1 last position of each row, 2 all
  bool save = false;
};

struct VisionState;
struct DecoderState;

// What a forward with save kept for its backward.
struct ForwardState {
  ForwardInputs in;
  std::unique_ptr<VisionState> vision;
  std::unique_ptr<DecoderState> dec;
  StoragePtr hidden;  // (BT, C) the final normed hidden states (also the result)
  std::shared_ptr<void> keep;  // buffers the decoder state points into
  bool used = false;
  ~ForwardState();
};

struct ForwardResult {
  StoragePtr hidden, logits;
  std::shared_ptr<ForwardState> state;  // when saved
};

class QwenModel {
 public:
  QwenModel(const QwenDims& dims, std::vector<ParamSource> params, const LoraSpec& lora, Recompute recompute, bool train);
  const QwenDims& dims() const { return d_; }
  ParamStore& store() { return *store_; }
  const ParamStore& store() const { return *store_; }
  bool train() const { return train_; }
  Recompute recompute() const { return recompute_; }
  // Serialises the jobs on one model (a backward adds into shared gradients).
  std::mutex& mutex() const { return mu_; }

  ForwardResult forward(ForwardInputs in) const;
  // Vision embeddings (M, Co) of pixels, in the processor's order (no decoder).
  StoragePtr vision_forward(const ForwardInputs& in) const;
  // dlogits (BT, V) or (B, V) as the forward's logits; or dhidden (BT, C). Adds into the
  // gradients. The state is consumed.
  void backward(ForwardState& st, const float* dlogits, const float* dhidden) const;

  // The parameters as the layers see them.
  PRef embed, norm, lm_head;
  std::vector<DecoderLayerW> layers;
  PRef patch;
  std::vector<VisionBlockW> blocks;
  PRef merger_ln;
  LinearW merger0, merger2;
  std::vector<float> inv_freq, vis_inv_freq;

 private:
  QwenDims d_;
  std::unique_ptr<ParamStore> store_;
  Recompute recompute_;
  bool train_;
  mutable std::mutex mu_;
};

}  // namespace vt
