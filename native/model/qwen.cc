// The Qwen2.5-VL model (qwen.h): parameters resolved once at creation, the whole forward
// (embeddings, vision tower, decoder, final norm, LM head) and its backward.
#include "qwen.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <stdexcept>

#include "../core/parallel.h"
#include "../ops/embedding.h"
#include "../ops/linear.h"
#include "../ops/norm.h"
#include "../ops/rope.h"
#include "layers.h"

namespace vt {

ForwardState::~ForwardState() = default;

namespace {

std::string shape_str(const std::vector<int64_t>& s) {
  std::string o = "[";
  for (size_t i = 0; i < s.size(); i++) o += (i ? ", " : "") + std::to_string(s[i]);
  return o + "]";
}

class Resolver {
 public:
  explicit Resolver(const ParamStore& s) : s_(s) {}
  // The parameter `name`, whose element count must be `numel` (its shape is named in errors).
  PRef get(const std::string& name, std::vector<int64_t> shape, bool optional = false) const {
    const Param* p = s_.find(name);
    if (!p) {
      if (optional) return {};
      throw std::invalid_argument("Expected parameter " + name + " of shape " + shape_str(shape) + " but it is missing");
    }
    int64_t n = 1;
    for (int64_t d : shape) n *= d;
    if (p->numel != n)
      throw std::invalid_argument("Expected parameter " + name + " of shape " + shape_str(shape) + " but received " +
                                  shape_str(p->shape));
    return {p->value, p->grad};
  }
  LinearW linear(const std::string& mod, int64_t in, int64_t out, bool bias, const LoraSpec& lora) const {
    LinearW w;
    w.in = in;
    w.out = out;
    w.w = get(mod + ".weight", {out, in});
    if (bias) w.b = get(mod + ".bias", {out});
    if (std::find(lora.modules.begin(), lora.modules.end(), mod) != lora.modules.end()) {
      const PRef a = get(mod + ".lora_A.weight", {lora.rank, in}), b = get(mod + ".lora_B.weight", {out, lora.rank});
      if (a.w.dtype != DType::F32 || b.w.dtype != DType::F32)
        throw std::invalid_argument("Expected f32 LoRA adapters for " + mod);
      w.A = static_cast<const float*>(a.w.data);
      w.B = static_cast<const float*>(b.w.data);
      w.gA = a.g;
      w.gB = b.g;
      w.r = lora.rank;
      w.scale = lora.alpha / float(lora.rank);
    }
    return w;
  }

 private:
  const ParamStore& s_;
};

}  // namespace

QwenModel::QwenModel(const QwenDims& dims, std::vector<ParamSource> params, const LoraSpec& lora, Recompute recompute,
                     bool train)
    : d_(dims), recompute_(recompute), train_(train) {
  const QwenDims& d = d_;
  if (d.C <= 0 || d.layers < 0 || d.Hq <= 0 || d.Hkv <= 0 || d.Hq % d.Hkv || d.D <= 0 || d.D % 2 || d.Hq * d.D != d.C ||
      d.F <= 0 || d.V <= 0)
    throw std::invalid_argument("Expected consistent decoder sizes (hidden = heads x head dim, heads a multiple of kv heads, even head dim)");
  if (int64_t(d.sections[0]) + d.sections[1] + d.sections[2] != d.D / 2 || d.sections[0] < 0 || d.sections[1] < 0 ||
      d.sections[2] < 0)
    throw std::invalid_argument("Expected M-RoPE sections summing to head dim / 2 = " + std::to_string(d.D / 2));
  if (d.vision && (d.vC <= 0 || d.vH <= 0 || d.vC % d.vH || (d.vC / d.vH) % 4 || d.vD != d.vC / d.vH || d.vF <= 0 ||
                   d.K <= 0 || d.merge <= 0 || d.Co != d.C || d.vdepth < 0))
    throw std::invalid_argument("Expected consistent vision sizes (hidden = heads x head dim, head dim a multiple of 4, merger output = decoder hidden)");
  store_ = std::make_unique<ParamStore>(std::move(params));
  const Resolver r(*store_);
  const int64_t C = d.C, QD = d.Hq * d.D, KD = d.Hkv * d.D;
  embed = r.get("model.embed_tokens.weight", {d.V, C});
  norm = r.get("model.norm.weight", {C});
  lm_head = d.tied ? embed : r.get("lm_head.weight", {d.V, C});
  layers.resize(size_t(d.layers));
  for (int64_t l = 0; l < d.layers; l++) {
    const std::string p = "model.layers." + std::to_string(l) + ".";
    DecoderLayerW& L = layers[size_t(l)];
    L.ln1 = r.get(p + "input_layernorm.weight", {C});
    L.ln2 = r.get(p + "post_attention_layernorm.weight", {C});
    L.q = r.linear(p + "self_attn.q_proj", C, QD, true, lora);
    L.k = r.linear(p + "self_attn.k_proj", C, KD, true, lora);
    L.v = r.linear(p + "self_attn.v_proj", C, KD, true, lora);
    L.o = r.linear(p + "self_attn.o_proj", QD, C, false, lora);
    L.gate = r.linear(p + "mlp.gate_proj", C, d.F, false, lora);
    L.up = r.linear(p + "mlp.up_proj", C, d.F, false, lora);
    L.down = r.linear(p + "mlp.down_proj", d.F, C, false, lora);
  }
  inv_freq.resize(size_t(d.D / 2));
  for (int64_t j = 0; j < d.D / 2; j++) inv_freq[size_t(j)] = float(1.0 / std::pow(d.rope_theta, double(2 * j) / double(d.D)));
  if (d.vision) {
    const int64_t vC = d.vC, U = d.merge * d.merge;
    patch = r.get("visual.patch_embed.proj.weight", {vC, d.K});
    blocks.resize(size_t(d.vdepth));
    for (int64_t l = 0; l < d.vdepth; l++) {
      const std::string p = "visual.blocks." + std::to_string(l) + ".";
      VisionBlockW& W = blocks[size_t(l)];
      W.n1 = r.get(p + "norm1.weight", {vC});
      W.n2 = r.get(p + "norm2.weight", {vC});
      W.qkv = r.linear(p + "attn.qkv", vC, 3 * vC, true, lora);
      W.proj = r.linear(p + "attn.proj", vC, vC, true, lora);
      W.gate = r.linear(p + "mlp.gate_proj", vC, d.vF, true, lora);
      W.up = r.linear(p + "mlp.up_proj", vC, d.vF, true, lora);
      W.down = r.linear(p + "mlp.down_proj", d.vF, vC, true, lora);
    }
    merger_ln = r.get("visual.merger.ln_q.weight", {vC});
    merger0 = r.linear("visual.merger.mlp.0", U * vC, U * vC, true, lora);
    merger2 = r.linear("visual.merger.mlp.2", U * vC, d.Co, true, lora);
    // 2-D rotary: the first vD/4 frequencies turn with the patch row, the next vD/4 with its
    // column, both over the same vD/4 frequencies of base 10000.
    const int64_t q4 = d.vD / 4;
    vis_inv_freq.resize(size_t(d.vD / 2));
    for (int64_t j = 0; j < d.vD / 2; j++)
      vis_inv_freq[size_t(j)] = float(1.0 / std::pow(10000.0, double(2 * (j % q4)) / double(d.vD / 2)));
  }
  // The layer drivers share one set of LoRA buffers across layers: every layer must have the
  // same adapters.
  for (const DecoderLayerW& L : layers)
    if (L.q.r != layers[0].q.r || L.k.r != layers[0].k.r || L.v.r != layers[0].v.r || L.o.r != layers[0].o.r ||
        L.gate.r != layers[0].gate.r || L.up.r != layers[0].up.r || L.down.r != layers[0].down.r)
      throw std::invalid_argument("Expected the same LoRA targets in every decoder layer");
  for (const VisionBlockW& W : blocks)
    if (W.qkv.r != blocks[0].qkv.r || W.proj.r != blocks[0].proj.r || W.gate.r != blocks[0].gate.r ||
        W.up.r != blocks[0].up.r || W.down.r != blocks[0].down.r)
      throw std::invalid_argument("Expected the same LoRA targets in every vision block");
}

StoragePtr QwenModel::vision_forward(const ForwardInputs& in) const { return vt::vision_forward(*this, in, nullptr); }

namespace {
bool vision_trains(const QwenModel& m) {
  if (m.patch.g || m.merger_ln.g || m.merger0.trainable() || m.merger2.trainable()) return true;
  for (const VisionBlockW& W : m.blocks)
    if (W.n1.g || W.n2.g || W.qkv.trainable() || W.proj.trainable() || W.gate.trainable() || W.up.trainable() ||
        W.down.trainable())
      return true;
  return false;
}
bool layer_trains(const DecoderLayerW& L) {
  return L.ln1.g || L.ln2.g || L.q.trainable() || L.k.trainable() || L.v.trainable() || L.o.trainable() ||
         L.gate.trainable() || L.up.trainable() || L.down.trainable();
}
}  // namespace

ForwardResult QwenModel::forward(ForwardInputs in) const {
  const QwenDims& d = d_;
  const int64_t B = in.B, T = in.T, BT = B * T, C = d.C;
  ForwardResult res;
  std::shared_ptr<ForwardState> st;
  if (in.save) {
    st = std::make_shared<ForwardState>();
    st->dec = std::make_unique<DecoderState>();
  }
  // Embeddings, with the vision tower's rows scattered in.
  ScratchBuffer<float> xbuf(size_t(std::max<int64_t>(BT * C, 1)));
  float* x = xbuf.data();
  embedding_forward_cpu(x, in.ids.data(), embed.w, BT, C);
  if (in.pixels) {
    VisionState* vs = nullptr;
    if (st && vision_trains(*this)) {
      st->vision = std::make_unique<VisionState>();
      vs = st->vision.get();
    }
    StoragePtr emb = vt::vision_forward(*this, in, vs);
    const float* e = static_cast<const float*>(emb->data);
    for (int64_t i = 0; i < BT; i++)
      if (!in.vrow.empty() && in.vrow[size_t(i)] >= 0)
        std::memcpy(x + i * C, e + int64_t(in.vrow[size_t(i)]) * C, size_t(C) * sizeof(float));
  }
  // Rotary tables and attention segments.
  DecoderState local;
  DecoderState& ds = st ? *st->dec : local;
  ds.B = B;
  ds.T = T;
  ScratchBuffer<float> cs_local, sn_local;
  float *cs, *sn;
  cs_local.reset(size_t(std::max<int64_t>(BT * d.D / 2, 1)));
  sn_local.reset(size_t(std::max<int64_t>(BT * d.D / 2, 1)));
  cs = cs_local.data();
  sn = sn_local.data();
  rope_table_cpu(cs, sn, in.pos.data(), inv_freq.data(), d.sections, 3, BT, d.D);
  const uint8_t* mask = in.mask.empty() ? nullptr : in.mask.data();
  DecoderRun r;
  r.x = x;
  r.B = B;
  r.T = T;
  r.cs = cs;
  r.sn = sn;
  if (in.kcache) {
    attention_segments(B, T, nullptr, in.max_len, in.past, static_cast<const uint8_t*>(in.keymask->data), in.max_len,
                       ds.cu_q, ds.cu_k);
    r.kcache = static_cast<float*>(in.kcache->data);
    r.vcache = static_cast<float*>(in.vcache->data);
    r.past = in.past;
    r.max_len = in.max_len;
  } else {
    attention_segments(B, T, mask, T, 0, nullptr, 0, ds.cu_q, ds.cu_k);
  }
  r.cu_q = ds.cu_q.data();
  r.cu_k = ds.cu_k.data();
  r.nseg = int64_t(ds.cu_q.size()) - 1;
  r.st = st ? st->dec.get() : nullptr;
  decoder_forward(*this, r);
  // Final norm (its input and scale kept for the backward) and the LM head.
  res.hidden = storage_alloc(size_t(std::max<int64_t>(BT * C, 1)) * sizeof(float));
  float* hidden = static_cast<float*>(res.hidden->data);
  float* rstd = nullptr;
  ScratchBuffer<float> rstd_buf;
  if (st) {
    rstd_buf.reset(size_t(std::max<int64_t>(BT, 1)));
    rstd = rstd_buf.data();
  }
  rmsnorm_forward_cpu(hidden, rstd, x, norm.w, d.eps, BT, C);
  if (in.logits == 2) {
    res.logits = storage_alloc(size_t(std::max<int64_t>(BT * d.V, 1)) * sizeof(float));
    linear_forward_cpu(static_cast<float*>(res.logits->data), hidden, lm_head.w, WeightRef{}, BT, C, d.V);
  } else if (in.logits == 1) {
    ScratchBuffer<float> last(size_t(std::max<int64_t>(B * C, 1)));
    for (int64_t b = 0; b < B; b++) std::memcpy(last.data() + b * C, hidden + ((b + 1) * T - 1) * C, size_t(C) * sizeof(float));
    res.logits = storage_alloc(size_t(std::max<int64_t>(B * d.V, 1)) * sizeof(float));
    linear_forward_cpu(static_cast<float*>(res.logits->data), last.data(), lm_head.w, WeightRef{}, B, C, d.V);
  }
  if (st) {
    // Keep what the backward reads: the final norm's input (the residual stream), its scale,
    // the rope tables. They move into the state; the residual buffer too.
    st->in = std::move(in);
    st->hidden = res.hidden;
    st->dec->x_final = xbuf.data();
    st->dec->rstd_final = rstd_buf.data();
    st->dec->cs = cs;
    st->dec->sn = sn;
    struct Keep {
      ScratchBuffer<float> x, rstd, cs, sn;
    };
    auto keep = std::make_shared<Keep>();
    keep->x.swap(xbuf);
    keep->rstd.swap(rstd_buf);
    keep->cs.swap(cs_local);
    keep->sn.swap(sn_local);
    st->keep = keep;
    res.state = st;
  }
  return res;
}

void QwenModel::backward(ForwardState& st, const float* dlogits, const float* dhidden) const {
  const QwenDims& d = d_;
  DecoderState& ds = *st.dec;
  const int64_t B = ds.B, T = ds.T, BT = B * T, C = d.C;
  const float* hidden = static_cast<const float*>(st.hidden->data);
  ScratchBuffer<float> dh(size_t(std::max<int64_t>(BT * C, 1)));
  std::fill(dh.data(), dh.data() + BT * C, 0.0f);
  if (dhidden) std::memcpy(dh.data(), dhidden, size_t(BT * C) * sizeof(float));
  if (dlogits) {
    if (st.in.logits == 2) {
      linear_backward_cpu(dh.data(), lm_head.g, nullptr, dlogits, hidden, lm_head.w, BT, C, d.V, true);
    } else {
      // Logits of each row's last position only: their rows of the hidden states.
      ScratchBuffer<float> last(size_t(std::max<int64_t>(B * C, 1))), dlast(size_t(std::max<int64_t>(B * C, 1)));
      for (int64_t b = 0; b < B; b++) std::memcpy(last.data() + b * C, hidden + ((b + 1) * T - 1) * C, size_t(C) * sizeof(float));
      linear_backward_cpu(dlast.data(), lm_head.g, nullptr, dlogits, last.data(), lm_head.w, B, C, d.V, false);
      for (int64_t b = 0; b < B; b++) {
        float* row = dh.data() + ((b + 1) * T - 1) * C;
        for (int64_t c = 0; c < C; c++) row[c] += dlast[size_t(b * C + c)];
      }
    }
  }
  // Padding positions are not part of the model: gradients given there are dropped.
  if (!st.in.mask.empty())
    for (int64_t i = 0; i < BT; i++)
      if (!st.in.mask[size_t(i)]) std::fill(dh.data() + i * C, dh.data() + (i + 1) * C, 0.0f);
  ScratchBuffer<float> dx(size_t(std::max<int64_t>(BT * C, 1)));
  rmsnorm_backward_cpu(dx.data(), norm.g, dh.data(), ds.x_final, ds.rstd_final, norm.w, BT, C, false);
  dh.release();
  // How deep the gradient must go: to the embeddings or the vision tower when they train, else
  // down to the lowest layer that trains.
  const bool vis = st.vision != nullptr;
  int64_t lowest = d.layers;
  if (embed.g || vis) {
    lowest = 0;
  } else {
    for (int64_t l = 0; l < d.layers; l++)
      if (layer_trains(layers[size_t(l)])) {
        lowest = l;
        break;
      }
  }
  decoder_backward(*this, ds, dx.data(), lowest);
  if (lowest > 0) return;
  if (embed.g) {
    std::vector<int32_t> ids = st.in.ids;
    for (int64_t i = 0; i < BT; i++)
      if (!st.in.vrow.empty() && st.in.vrow[size_t(i)] >= 0) ids[size_t(i)] = -1;  // replaced by vision rows
    embedding_backward_cpu(embed.g, dx.data(), ids.data(), BT, C);
  }
  if (vis) {
    const int64_t M = st.vision->M;
    ScratchBuffer<float> demb(size_t(std::max<int64_t>(M * d.Co, 1)));
    std::fill(demb.data(), demb.data() + M * d.Co, 0.0f);
    for (int64_t i = 0; i < BT; i++) {
      const int32_t row = st.in.vrow.empty() ? -1 : st.in.vrow[size_t(i)];
      if (row < 0) continue;
      // Added, not copied: positions of several rows may share one embedding row (a video shared by
      // the completions of one prompt), and its gradient is the sum over them.
      float* g = demb.data() + int64_t(row) * d.Co;
      const float* src = dx.data() + i * C;
      for (int64_t c = 0; c < C; c++) g[c] += src[c];
    }
    vision_backward(*this, *st.vision, demb.data());
  }
}

}  // namespace vt
