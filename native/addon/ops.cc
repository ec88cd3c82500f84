// N-API boundary of the network's ops (native/ops), one call per forward or backward, for tests
// and experiments (the model calls the ops natively). Synchronous: each is one parallel op.
//   opLinear(x, w, b|null) -> y                  opLinearBackward(dy, x, w, wantDx) -> { dx?, dw, db }
//   opLora(x, A, B, scale) -> { y, t }           opLoraBackward(dy, x, t, A, B, scale) -> { dx, dA, dB }
//   opRmsNorm(x, w|null, eps) -> { y, rstd }     opRmsNormBackward(dy, x, rstd, w|null) -> { dx, dw }
//   opRope(x, pos, invFreq, sections, inverse) -> y (a rotated copy of x)
//   opSwiglu(g, u) -> y                          opSwigluBackward(dy, g, u) -> { dg, du }
//   opGelu(x) -> y                               opGeluBackward(dy, x) -> dx
//   opEmbedding(ids, table) -> y                 opEmbeddingBackward(dy, ids, V) -> dtable
#include <algorithm>
#include <cstring>
#include <string>

#include "../ops/act.h"
#include "../ops/embedding.h"
#include "../ops/linear.h"
#include "../ops/norm.h"
#include "../ops/rope.h"
#include "napi_util.h"

namespace vt {
namespace addon {
namespace {

std::string s(int64_t v) { return std::to_string(v); }
TensorArg f32(const Napi::Value& v, const char* name, int ndim, const char* layout) {
  TensorArg t = contiguous_arg(v, name, {DType::F32}, ndim, layout);
  require_cpu(t);
  return t;
}
TensorArg weight(const Napi::Value& v, const char* name, int ndim, const char* layout) {
  TensorArg t = contiguous_arg(v, name, {DType::F32, DType::BF16, DType::F16}, ndim, layout);
  require_cpu(t);
  return t;
}
StoragePtr zeros(int64_t n) {
  StoragePtr p = storage_alloc(size_t(std::max<int64_t>(n, 1)) * sizeof(float));
  std::memset(p->data, 0, size_t(std::max<int64_t>(n, 1)) * sizeof(float));
  return p;
}
float* F(const StoragePtr& p) { return static_cast<float*>(p->data); }
void same(const TensorArg& a, const TensorArg& b) {
  if (a.shape != b.shape) throw_range("Expected " + b.name + " of shape " + a.shape_str() + " (as " + a.name + ") but received " + b.shape_str());
}
bool given(const Napi::Value& v) { return !v.IsNull() && !v.IsUndefined(); }

Napi::Value Linear(const Napi::CallbackInfo& info) {
  TensorArg x = f32(info[0], "x", 2, "[T, K]"), w = weight(info[1], "weight", 2, "[N, K]");
  const int64_t T = x.shape[0], K = x.shape[1], N = w.shape[0];
  if (w.shape[1] != K) throw_range("Expected weight of shape [N, " + s(K) + "] but received " + w.shape_str());
  WeightRef b;
  TensorArg bb;
  if (given(info[2])) {
    bb = weight(info[2], "bias", 1, "[N]");
    if (bb.shape[0] != N) throw_range("Expected bias of shape [" + s(N) + "] but received " + bb.shape_str());
    b = {bb.data(), bb.dtype};
  }
  StoragePtr y = zeros(T * N);
  linear_forward_cpu(F(y), x.ptr<float>(), {w.data(), w.dtype}, b, T, K, N);
  return wrap_storage(info.Env(), y);
}

Napi::Value LinearBackward(const Napi::CallbackInfo& info) {
  TensorArg dy = f32(info[0], "dy", 2, "[T, N]"), x = f32(info[1], "x", 2, "[T, K]"), w = weight(info[2], "weight", 2, "[N, K]");
  const int64_t T = x.shape[0], K = x.shape[1], N = w.shape[0];
  if (w.shape[1] != K || dy.shape[0] != T || dy.shape[1] != N) throw_range("Expected dy [T, N], x [T, K] and weight [N, K] to agree");
  StoragePtr dx = zeros(T * K), dw = zeros(N * K), db = zeros(N);
  linear_backward_cpu(F(dx), F(dw), F(db), dy.ptr<float>(), x.ptr<float>(), {w.data(), w.dtype}, T, K, N, false);
  Napi::Object o = Napi::Object::New(info.Env());
  o.Set("dx", wrap_storage(info.Env(), dx));
  o.Set("dw", wrap_storage(info.Env(), dw));
  o.Set("db", wrap_storage(info.Env(), db));
  return o;
}

Napi::Value Lora(const Napi::CallbackInfo& info) {
  TensorArg x = f32(info[0], "x", 2, "[T, K]"), A = f32(info[1], "A", 2, "[r, K]"), B = f32(info[2], "B", 2, "[N, r]");
  const int64_t T = x.shape[0], K = x.shape[1], r = A.shape[0], N = B.shape[0];
  if (A.shape[1] != K || B.shape[1] != r) throw_range("Expected A [r, K] and B [N, r] to agree with x [T, K]");
  const float scale = float(info[3].ToNumber().DoubleValue());
  StoragePtr y = zeros(T * N), t = zeros(T * r);
  lora_forward_cpu(F(y), F(t), x.ptr<float>(), A.ptr<float>(), B.ptr<float>(), scale, T, K, N, r);
  Napi::Object o = Napi::Object::New(info.Env());
  o.Set("y", wrap_storage(info.Env(), y));
  o.Set("t", wrap_storage(info.Env(), t));
  return o;
}

Napi::Value LoraBackward(const Napi::CallbackInfo& info) {
  TensorArg dy = f32(info[0], "dy", 2, "[T, N]"), x = f32(info[1], "x", 2, "[T, K]"), t = f32(info[2], "t", 2, "[T, r]"),
            A = f32(info[3], "A", 2, "[r, K]"), B = f32(info[4], "B", 2, "[N, r]");
  const int64_t T = x.shape[0], K = x.shape[1], r = A.shape[0], N = B.shape[0];
  if (A.shape[1] != K || B.shape[1] != r || dy.shape != std::vector<int64_t>{T, N} || t.shape != std::vector<int64_t>{T, r})
    throw_range("Expected dy [T, N], x [T, K], t [T, r], A [r, K], B [N, r] to agree");
  const float scale = float(info[5].ToNumber().DoubleValue());
  StoragePtr dx = zeros(T * K), dA = zeros(r * K), dB = zeros(N * r), ws = zeros(T * r);
  lora_backward_cpu(F(dx), F(dA), F(dB), dy.ptr<float>(), x.ptr<float>(), t.ptr<float>(), A.ptr<float>(), B.ptr<float>(),
                    scale, T, K, N, r, F(ws));
  Napi::Object o = Napi::Object::New(info.Env());
  o.Set("dx", wrap_storage(info.Env(), dx));
  o.Set("dA", wrap_storage(info.Env(), dA));
  o.Set("dB", wrap_storage(info.Env(), dB));
  return o;
}

Napi::Value RmsNorm(const Napi::CallbackInfo& info) {
  TensorArg x = f32(info[0], "x", 2, "[T, C]");
  const int64_t T = x.shape[0], C = x.shape[1];
  WeightRef w;
  TensorArg wt;
  if (given(info[1])) {
    wt = weight(info[1], "weight", 1, "[C]");
    if (wt.shape[0] != C) throw_range("Expected weight of shape [" + s(C) + "] but received " + wt.shape_str());
    w = {wt.data(), wt.dtype};
  }
  const float eps = float(info[2].ToNumber().DoubleValue());
  StoragePtr y = zeros(T * C), r = zeros(T);
  rmsnorm_forward_cpu(F(y), F(r), x.ptr<float>(), w, eps, T, C);
  Napi::Object o = Napi::Object::New(info.Env());
  o.Set("y", wrap_storage(info.Env(), y));
  o.Set("rstd", wrap_storage(info.Env(), r));
  return o;
}

Napi::Value RmsNormBackward(const Napi::CallbackInfo& info) {
  TensorArg dy = f32(info[0], "dy", 2, "[T, C]"), x = f32(info[1], "x", 2, "[T, C]"), r = f32(info[2], "rstd", 1, "[T]");
  same(x, dy);
  const int64_t T = x.shape[0], C = x.shape[1];
  if (r.shape[0] != T) throw_range("Expected rstd of shape [" + s(T) + "] but received " + r.shape_str());
  WeightRef w;
  TensorArg wt;
  if (given(info[3])) {
    wt = weight(info[3], "weight", 1, "[C]");
    if (wt.shape[0] != C) throw_range("Expected weight of shape [" + s(C) + "] but received " + wt.shape_str());
    w = {wt.data(), wt.dtype};
  }
  StoragePtr dx = zeros(T * C), dw = zeros(C);
  rmsnorm_backward_cpu(F(dx), F(dw), dy.ptr<float>(), x.ptr<float>(), r.ptr<float>(), w, T, C, false);
  Napi::Object o = Napi::Object::New(info.Env());
  o.Set("dx", wrap_storage(info.Env(), dx));
  o.Set("dw", wrap_storage(info.Env(), dw));
  return o;
}

Napi::Value Rope(const Napi::CallbackInfo& info) {
  TensorArg x = f32(info[0], "x", 3, "[T, H, D]");
  TensorArg pos = contiguous_arg(info[1], "positions", {DType::I32}, 2, "[S, T]");
  TensorArg inv = f32(info[2], "invFreq", 1, "[D/2]");
  TensorArg sec = contiguous_arg(info[3], "sections", {DType::I32}, 1, "[S]");
  require_cpu(pos);
  require_cpu(sec);
  const int64_t T = x.shape[0], H = x.shape[1], D = x.shape[2], S = pos.shape[0];
  if (D % 2 || inv.shape[0] != D / 2) throw_range("Expected an even head dim and invFreq of shape [" + s(D / 2) + "]");
  if (pos.shape[1] != T || sec.shape[0] != S) throw_range("Expected positions [S, T] and sections [S] to agree with x [T, H, D]");
  int64_t tot = 0;
  for (int64_t i = 0; i < S; i++) {
    if (sec.ptr<int32_t>()[i] < 0) throw_range("Expected non-negative sections");
    tot += sec.ptr<int32_t>()[i];
  }
  if (tot != D / 2) throw_range("Expected sections summing to " + s(D / 2) + " but they sum to " + s(tot));
  const bool inverse = opt_bool(info[4], false);
  StoragePtr y = zeros(T * H * D), cs = zeros(T * D / 2), sn = zeros(T * D / 2);
  std::memcpy(F(y), x.ptr<float>(), size_t(T * H * D) * sizeof(float));
  rope_table_cpu(F(cs), F(sn), pos.ptr<int32_t>(), inv.ptr<float>(), sec.ptr<int32_t>(), int(S), T, D);
  rope_apply_cpu(F(y), F(cs), F(sn), T, H, D, inverse);
  return wrap_storage(info.Env(), y);
}

Napi::Value Swiglu(const Napi::CallbackInfo& info) {
  TensorArg g = f32(info[0], "gate", 2, "[T, F]"), u = f32(info[1], "up", 2, "[T, F]");
  same(g, u);
  StoragePtr y = zeros(g.numel());
  swiglu_forward_cpu(F(y), g.ptr<float>(), u.ptr<float>(), g.numel());
  return wrap_storage(info.Env(), y);
}

Napi::Value SwigluBackward(const Napi::CallbackInfo& info) {
  TensorArg dy = f32(info[0], "dy", 2, "[T, F]"), g = f32(info[1], "gate", 2, "[T, F]"), u = f32(info[2], "up", 2, "[T, F]");
  same(g, u);
  same(g, dy);
  StoragePtr dg = zeros(g.numel()), du = zeros(g.numel());
  swiglu_backward_cpu(F(dg), F(du), dy.ptr<float>(), g.ptr<float>(), u.ptr<float>(), g.numel());
  Napi::Object o = Napi::Object::New(info.Env());
  o.Set("dg", wrap_storage(info.Env(), dg));
  o.Set("du", wrap_storage(info.Env(), du));
  return o;
}

Napi::Value Gelu(const Napi::CallbackInfo& info) {
  TensorArg x = f32(info[0], "x", 2, "[T, F]");
  StoragePtr y = zeros(x.numel());
  gelu_forward_cpu(F(y), x.ptr<float>(), x.numel());
  return wrap_storage(info.Env(), y);
}

Napi::Value GeluBackward(const Napi::CallbackInfo& info) {
  TensorArg dy = f32(info[0], "dy", 2, "[T, F]"), x = f32(info[1], "x", 2, "[T, F]");
  same(x, dy);
  StoragePtr dx = zeros(x.numel());
  gelu_backward_cpu(F(dx), dy.ptr<float>(), x.ptr<float>(), x.numel());
  return wrap_storage(info.Env(), dx);
}

TensorArg ids_arg(const Napi::Value& v, int64_t V) {
  TensorArg ids = contiguous_arg(v, "ids", {DType::I32}, 1, "[T]");
  require_cpu(ids);
  for (int64_t i = 0; i < ids.shape[0]; i++) {
    const int32_t id = ids.ptr<int32_t>()[i];
    if (id < -1 || id >= V) throw_range("Expected ids in [-1, " + s(V) + ") but received " + s(id) + " at index " + s(i));
  }
  return ids;
}

Napi::Value Embedding(const Napi::CallbackInfo& info) {
  TensorArg tab = weight(info[1], "table", 2, "[V, C]");
  TensorArg ids = ids_arg(info[0], tab.shape[0]);
  const int64_t T = ids.shape[0], C = tab.shape[1];
  StoragePtr y = zeros(T * C);
  embedding_forward_cpu(F(y), ids.ptr<int32_t>(), {tab.data(), tab.dtype}, T, C);
  return wrap_storage(info.Env(), y);
}

Napi::Value EmbeddingBackward(const Napi::CallbackInfo& info) {
  TensorArg dy = f32(info[0], "dy", 2, "[T, C]");
  const double Vd = info[2].ToNumber().DoubleValue();
  if (!(Vd >= 1 && Vd <= double(int64_t(1) << 31))) throw_range("Expected a vocabulary size >= 1 for V");
  const int64_t V = int64_t(Vd);
  TensorArg ids = ids_arg(info[1], V);
  const int64_t T = dy.shape[0], C = dy.shape[1];
  if (ids.shape[0] != T) throw_range("Expected ids of shape [" + s(T) + "] but received " + ids.shape_str());
  StoragePtr d = zeros(V * C);
  embedding_backward_cpu(F(d), dy.ptr<float>(), ids.ptr<int32_t>(), T, C);
  return wrap_storage(info.Env(), d);
}

void Init(Napi::Env env, Napi::Object exports) {
  exports.Set("opLinear", fn(env, "opLinear", Linear));
  exports.Set("opLinearBackward", fn(env, "opLinearBackward", LinearBackward));
  exports.Set("opLora", fn(env, "opLora", Lora));
  exports.Set("opLoraBackward", fn(env, "opLoraBackward", LoraBackward));
  exports.Set("opRmsNorm", fn(env, "opRmsNorm", RmsNorm));
  exports.Set("opRmsNormBackward", fn(env, "opRmsNormBackward", RmsNormBackward));
  exports.Set("opRope", fn(env, "opRope", Rope));
  exports.Set("opSwiglu", fn(env, "opSwiglu", Swiglu));
  exports.Set("opSwigluBackward", fn(env, "opSwigluBackward", SwigluBackward));
  exports.Set("opGelu", fn(env, "opGelu", Gelu));
  exports.Set("opGeluBackward", fn(env, "opGeluBackward", GeluBackward));
  exports.Set("opEmbedding", fn(env, "opEmbedding", Embedding));
  exports.Set("opEmbeddingBackward", fn(env, "opEmbeddingBackward", EmbeddingBackward));
}

Register reg(&Init);

}  // namespace
}  // namespace addon
}  // namespace vt
