// N-API boundary of the Qwen2.5-VL operators (the math is in qwen_ops*.cc). Each function takes
// an `async` flag: true returns a Promise and runs on a libuv worker, false runs now.
//   qwenLinear(x, w, b|null, async) -> Storage f32 (T, N)
//   qwenRmsNorm(x, w, eps, async) -> Storage f32 (T, C)
//   qwenRope(x, pos, invFreq, sections, async) -> undefined (x rotated in place)
//   qwenSwiglu(g, u, async) / qwenGelu(x, async) -> Storage f32
//   qwenEmbedding(ids, table, async) -> Storage f32 (T, C)
//   qwenAttention(q, k, v, cuQ, cuK, causal, scale, async) -> Storage f32 (Tq, Hq, D)
//   qwenDecoderLayers(x, layers[], dims, pos, keyOk|null, invFreq, sections, async) -> undefined
// The TS layer (src/model/qwen.ts) validates with the public names first; these checks repeat
// the ones memory safety rests on.
#include <algorithm>
#include <cmath>
#include <optional>
#include <string>
#include <vector>

#include "napi_util.h"
#include "../model/qwen_ops.h"

namespace vt {
namespace addon {
namespace {

TensorArg f32c(const Napi::Value& v, const char* name, int ndim, const char* layout) {
  TensorArg t = contiguous_arg(v, name, {DType::F32}, ndim, layout);
  require_cpu(t);
  return t;
}
TensorArg weight(const Napi::Value& v, const std::string& name, int ndim, const char* layout) {
  TensorArg t = contiguous_arg(v, name, {DType::F32, DType::BF16, DType::F16}, ndim, layout);
  require_cpu(t);
  return t;
}
TensorArg i32c(const Napi::Value& v, const char* name, int ndim, const char* layout) {
  TensorArg t = contiguous_arg(v, name, {DType::I32}, ndim, layout);
  require_cpu(t);
  return t;
}
[[noreturn]] void bad_shape(const std::string& name, const std::string& want, const TensorArg& t) {
  throw_range("Expected " + name + " of shape " + want + " but received " + t.shape_str());
}
std::string s(int64_t v) { return std::to_string(v); }
Napi::Value result(Napi::Env env, const StoragePtr& out) { return out ? Napi::Value(wrap_storage(env, out)) : env.Undefined(); }
StoragePtr alloc_f32(int64_t n) { return storage_alloc(size_t(std::max<int64_t>(n, 1)) * sizeof(float), -1); }

Napi::Value Linear(const Napi::CallbackInfo& info) {
  TensorArg x = f32c(info[0], "x", 2, "[T, K]");
  TensorArg w = weight(info[1], "weight", 2, "[N, K]");
  const int64_t T = x.shape[0], K = x.shape[1], N = w.shape[0];
  if (w.shape[1] != K) bad_shape("weight", "[N, " + s(K) + "] (K from x)", w);
  std::optional<TensorArg> b;
  if (!info[2].IsNull() && !info[2].IsUndefined()) {
    b = weight(info[2], "bias", 1, "[N]");
    if (b->shape[0] != N) bad_shape("bias", "[" + s(N) + "]", *b);
  }
  auto out = alloc_f32(T * N);
  return run_job(
      info.Env(), opt_bool(info[3], false),
      [=] {
        qwen::linear(static_cast<float*>(out->data), x.ptr<float>(), w.data(), w.dtype, b ? b->data() : nullptr,
                     b ? b->dtype : DType::F32, T, K, N);
      },
      [out](Napi::Env env) { return result(env, out); });
}

Napi::Value RmsNorm(const Napi::CallbackInfo& info) {
  TensorArg x = f32c(info[0], "x", 2, "[T, C]");
  TensorArg w = weight(info[1], "weight", 1, "[C]");
  if (w.shape[0] != x.shape[1]) bad_shape("weight", "[" + s(x.shape[1]) + "]", w);
  const float eps = float(info[2].As<Napi::Number>().DoubleValue());
  auto out = alloc_f32(x.numel());
  return run_job(
      info.Env(), opt_bool(info[3], false),
      [=] { qwen::rms_norm(static_cast<float*>(out->data), x.ptr<float>(), w.data(), w.dtype, eps, x.shape[0], x.shape[1]); },
      [out](Napi::Env env) { return result(env, out); });
}

struct RopeArgs {
  TensorArg pos, inv, sec;
};
RopeArgs rope_args(const Napi::Value& p, const Napi::Value& f, const Napi::Value& sc, int64_t T, int64_t D) {
  RopeArgs r{i32c(p, "positions", 2, "[S, T]"), f32c(f, "invFreq", 1, "[D/2]"), i32c(sc, "sections", 1, "[S]")};
  if (r.pos.shape[1] != T) bad_shape("positions", "[S, " + s(T) + "]", r.pos);
  if (r.inv.shape[0] != D / 2 || D % 2) bad_shape("invFreq", "[" + s(D / 2) + "] (an even head dim)", r.inv);
  if (r.sec.shape[0] != r.pos.shape[0]) bad_shape("sections", "[" + s(r.pos.shape[0]) + "] (one per position stream)", r.sec);
  int64_t tot = 0;
  for (int64_t i = 0; i < r.sec.shape[0]; i++) {
    if (r.sec.ptr<int32_t>()[i] < 0) throw_range("Expected non-negative sections");
    tot += r.sec.ptr<int32_t>()[i];
  }
  if (tot != D / 2) throw_range("Expected sections summing to " + s(D / 2) + " (half the head dim) but they sum to " + s(tot));
  return r;
}

Napi::Value Rope(const Napi::CallbackInfo& info) {
  TensorArg x = f32c(info[0], "x", 3, "[T, H, D]");
  RopeArgs r = rope_args(info[1], info[2], info[3], x.shape[0], x.shape[2]);
  return run_job(
      info.Env(), opt_bool(info[4], false),
      [=] {
        qwen::rope(x.ptr<float>(), r.pos.ptr<int32_t>(), r.inv.ptr<float>(), r.sec.ptr<int32_t>(), int(r.pos.shape[0]),
                   x.shape[0], x.shape[1], x.shape[2]);
      },
      [](Napi::Env env) { return env.Undefined(); });
}

Napi::Value Swiglu(const Napi::CallbackInfo& info) {
  TensorArg g = f32c(info[0], "gate", 2, "[T, F]"), u = f32c(info[1], "up", 2, "[T, F]");
  if (u.shape != g.shape) bad_shape("up", g.shape_str() + " (the shape of gate)", u);
  auto out = alloc_f32(g.numel());
  return run_job(
      info.Env(), opt_bool(info[2], false),
      [=] {
        qwen::swiglu(static_cast<float*>(out->data), g.ptr<float>(), g.shape[1], u.ptr<float>(), u.shape[1], g.shape[0],
                     g.shape[1]);
      },
      [out](Napi::Env env) { return result(env, out); });
}

Napi::Value Gelu(const Napi::CallbackInfo& info) {
  TensorArg x = tensor_arg(info[0], "x");
  require_cpu(x);
  require_dtype(x, {DType::F32});
  require_contiguous(x);
  auto out = alloc_f32(x.numel());
  return run_job(
      info.Env(), opt_bool(info[1], false), [=] { qwen::gelu(static_cast<float*>(out->data), x.ptr<float>(), x.numel()); },
      [out](Napi::Env env) { return result(env, out); });
}

Napi::Value Embedding(const Napi::CallbackInfo& info) {
  TensorArg ids = i32c(info[0], "ids", 1, "[T]");
  TensorArg tab = weight(info[1], "table", 2, "[V, C]");
  const int64_t V = tab.shape[0];
  for (int64_t i = 0; i < ids.shape[0]; i++) {
    const int32_t id = ids.ptr<int32_t>()[i];
    if (id < 0 || id >= V)
      throw_range("Expected token ids in [0, " + s(V) + ") for ids but received " + s(id) + " at index " + s(i));
  }
  auto out = alloc_f32(ids.shape[0] * tab.shape[1]);
  return run_job(
      info.Env(), opt_bool(info[2], false),
      [=] {
        qwen::embedding(static_cast<float*>(out->data), ids.ptr<int32_t>(), tab.data(), tab.dtype, ids.shape[0],
                        tab.shape[1]);
      },
      [out](Napi::Env env) { return result(env, out); });
}

void check_cu(const TensorArg& cu, int64_t total, const char* name) {
  const int32_t* c = cu.ptr<int32_t>();
  if (cu.shape[0] < 2) bad_shape(name, "[nseq + 1] with nseq >= 1", cu);
  if (c[0] != 0) throw_range(std::string("Expected ") + name + "[0] = 0 but received " + s(c[0]));
  for (int64_t i = 1; i < cu.shape[0]; i++)
    if (c[i] < c[i - 1]) throw_range(std::string("Expected non-decreasing ") + name + " but it decreases at index " + s(i));
  if (c[cu.shape[0] - 1] != total)
    throw_range(std::string("Expected the last ") + name + " to be " + s(total) + " (the token count) but received " +
                s(c[cu.shape[0] - 1]));
}

Napi::Value Attention(const Napi::CallbackInfo& info) {
  TensorArg q = f32c(info[0], "q", 3, "[Tq, Hq, D]"), k = f32c(info[1], "k", 3, "[Tk, Hkv, D]"),
            v = f32c(info[2], "v", 3, "[Tk, Hkv, D]");
  TensorArg cq = i32c(info[3], "cuSeqlensQ", 1, "[nseq + 1]"), ck = i32c(info[4], "cuSeqlensK", 1, "[nseq + 1]");
  if (v.shape != k.shape) bad_shape("v", k.shape_str() + " (the shape of k)", v);
  if (k.shape[2] != q.shape[2]) bad_shape("k", "[Tk, Hkv, " + s(q.shape[2]) + "]", k);
  if (k.shape[1] < 1 || q.shape[1] % k.shape[1]) bad_shape("k", "[Tk, Hkv, D] with Hkv dividing Hq = " + s(q.shape[1]), k);
  if (ck.shape[0] != cq.shape[0]) bad_shape("cuSeqlensK", "[" + s(cq.shape[0]) + "] (as cuSeqlensQ)", ck);
  check_cu(cq, q.shape[0], "cuSeqlensQ");
  check_cu(ck, k.shape[0], "cuSeqlensK");
  const bool causal = opt_bool(info[5], false);
  const float scale = float(info[6].As<Napi::Number>().DoubleValue());
  auto out = alloc_f32(q.numel());
  return run_job(
      info.Env(), opt_bool(info[7], false),
      [=] {
        const int64_t Hq = q.shape[1], Hkv = k.shape[1], D = q.shape[2];
        qwen::attention(static_cast<float*>(out->data), q.ptr<float>(), Hq * D, k.ptr<float>(), Hkv * D, v.ptr<float>(),
                        Hkv * D, cq.ptr<int32_t>(), ck.ptr<int32_t>(), cq.shape[0] - 1, Hq, Hkv, D, causal, scale, nullptr);
      },
      [out](Napi::Env env) { return result(env, out); });
}

int64_t dim_of(const Napi::Object& o, const char* key) {
  Napi::Value v = o.Get(key);
  if (!v.IsNumber()) throw_type(std::string("Expected a number for dims.") + key);
  const double d = v.As<Napi::Number>().DoubleValue();
  if (d < 0 || d != std::floor(d)) throw_range(std::string("Expected a non-negative integer for dims.") + key);
  return int64_t(d);
}

Napi::Value DecoderLayers(const Napi::CallbackInfo& info) {
  TensorArg x = f32c(info[0], "hidden", 2, "[B*T, C]");
  if (!info[1].IsArray()) throw_type("Expected an array of layer weights for layers");
  if (!info[2].IsObject()) throw_type("Expected an object for dims");
  Napi::Array arr = info[1].As<Napi::Array>();
  Napi::Object dims = info[2].As<Napi::Object>();
  qwen::DecoderDims d{};
  d.B = dim_of(dims, "B"), d.T = dim_of(dims, "T"), d.past = dim_of(dims, "past"), d.max_len = dim_of(dims, "maxLen");
  d.Hq = dim_of(dims, "Hq"), d.Hkv = dim_of(dims, "Hkv"), d.D = dim_of(dims, "D"), d.F = dim_of(dims, "F");
  d.C = x.shape[1];
  d.eps = float(dims.Get("eps").As<Napi::Number>().DoubleValue());
  if (x.shape[0] != d.B * d.T) bad_shape("hidden", "[" + s(d.B * d.T) + ", C]", x);
  if (d.Hkv < 1 || d.Hq % d.Hkv || d.D % 2) throw_range("Expected Hkv dividing Hq and an even D");
  if (d.past + d.T > d.max_len) throw_range("Expected past + T <= maxLen (the KV cache is full)");
  TensorArg pos = i32c(info[3], "positions", 2, "[3, B*T]");
  if (pos.shape[0] != 3 || pos.shape[1] != d.B * d.T) bad_shape("positions", "[3, " + s(d.B * d.T) + "]", pos);
  std::optional<TensorArg> key_ok;
  if (!info[4].IsNull() && !info[4].IsUndefined()) {
    key_ok = tensor_arg(info[4], "keyMask");
    require_cpu(*key_ok);
    require_dtype(*key_ok, {DType::U8, DType::Bool});
    require_contiguous(*key_ok);
    if (key_ok->numel() != d.B * d.max_len) bad_shape("keyMask", "[" + s(d.B) + ", " + s(d.max_len) + "]", *key_ok);
  }
  TensorArg inv = f32c(info[5], "invFreq", 1, "[D/2]");
  TensorArg sec = i32c(info[6], "sections", 1, "[3]");
  if (inv.shape[0] != d.D / 2) bad_shape("invFreq", "[" + s(d.D / 2) + "]", inv);
  if (sec.shape[0] != 3) bad_shape("sections", "[3]", sec);
  int64_t tot = 0;
  for (int i = 0; i < 3; i++) tot += std::max(sec.ptr<int32_t>()[i], 0);
  if (tot != d.D / 2) throw_range("Expected mrope sections summing to " + s(d.D / 2) + " but they sum to " + s(tot));

  const int64_t C = d.C, QD = d.Hq * d.D, KD = d.Hkv * d.D, F = d.F;
  std::vector<TensorArg> keep;
  std::vector<qwen::DecoderLayerW> layers(arr.Length());
  for (uint32_t l = 0; l < arr.Length(); l++) {
    if (!arr.Get(l).IsObject()) throw_type("Expected an object of weights for layers[" + s(l) + "]");
    Napi::Object o = arr.Get(l).As<Napi::Object>();
    const std::string pre = "layers[" + s(l) + "].";
    auto wt = [&](const char* key, std::vector<int64_t> shape, const void*& p, DType& dt) {
      TensorArg t = weight(o.Get(key), pre + key, int(shape.size()), "");
      if (t.shape != shape) {
        std::string want = "[";
        for (size_t i = 0; i < shape.size(); i++) want += (i ? ", " : "") + s(shape[i]);
        bad_shape(pre + key, want + "]", t);
      }
      p = t.data();
      dt = t.dtype;
      keep.push_back(t);
    };
    qwen::DecoderLayerW& L = layers[l];
    wt("ln1", {C}, L.ln1, L.dln1);
    wt("ln2", {C}, L.ln2, L.dln2);
    wt("wq", {QD, C}, L.wq, L.dwq);
    wt("bq", {QD}, L.bq, L.dbq);
    wt("wk", {KD, C}, L.wk, L.dwk);
    wt("bk", {KD}, L.bk, L.dbk);
    wt("wv", {KD, C}, L.wv, L.dwv);
    wt("bv", {KD}, L.bv, L.dbv);
    wt("wo", {C, QD}, L.wo, L.dwo);
    wt("wg", {F, C}, L.wg, L.dwg);
    wt("wu", {F, C}, L.wu, L.dwu);
    wt("wd", {C, F}, L.wd, L.dwd);
    for (const char* key : {"kcache", "vcache"}) {
      TensorArg t = f32c(o.Get(key), (pre + key).c_str(), 4, "[B, maxLen, Hkv, D]");
      if (t.shape != std::vector<int64_t>{d.B, d.max_len, d.Hkv, d.D})
        bad_shape(pre + key, "[" + s(d.B) + ", " + s(d.max_len) + ", " + s(d.Hkv) + ", " + s(d.D) + "]", t);
      (key[0] == 'k' ? L.kcache : L.vcache) = t.ptr<float>();
      keep.push_back(t);
    }
  }
  return run_job(
      info.Env(), opt_bool(info[7], false),
      [=] {
        (void)keep;
        qwen::decoder_layers(x.ptr<float>(), layers.data(), int64_t(layers.size()), d, pos.ptr<int32_t>(),
                             key_ok ? key_ok->ptr<uint8_t>() : nullptr, inv.ptr<float>(), sec.ptr<int32_t>());
      },
      [](Napi::Env env) { return env.Undefined(); });
}

void Init(Napi::Env env, Napi::Object exports) {
  exports.Set("qwenLinear", fn(env, "qwenLinear", Linear));
  exports.Set("qwenRmsNorm", fn(env, "qwenRmsNorm", RmsNorm));
  exports.Set("qwenRope", fn(env, "qwenRope", Rope));
  exports.Set("qwenSwiglu", fn(env, "qwenSwiglu", Swiglu));
  exports.Set("qwenGelu", fn(env, "qwenGelu", Gelu));
  exports.Set("qwenEmbedding", fn(env, "qwenEmbedding", Embedding));
  exports.Set("qwenAttention", fn(env, "qwenAttention", Attention));
  exports.Set("qwenDecoderLayers", fn(env, "qwenDecoderLayers", DecoderLayers));
}

Register reg(&Init);

}  // namespace
}  // namespace addon
}  // namespace vt
