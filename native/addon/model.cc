// N-API boundary of the Qwen2.5-VL model (native/model). Arguments are parsed into plain structs
// here (index arrays copied, so what is checked is what the worker reads); the math is in
// native/model. A model handle is a JS object holding a shared_ptr to the native model; every job
// holds its own reference, so disposing the handle while work runs is safe, and jobs on one
// model run one at a time (a backward adds into shared gradients).
//   modelCreate(dims, params[], lora|null, recompute, train, async) -> handle
//   modelParams(handle) -> [{ name, shape, dtype, trainable, offset }], plus master/grads storages
//   modelForward(handle, inputs, async) -> { hidden, logits?, state? }
//   modelBackward(handle, state, dLogits|null, dHidden|null, async) -> undefined
//   modelVision(handle, inputs, async) -> Storage (M, Co)
//   modelZeroGrad(handle, async), modelStateRelease(state)
#include <cmath>
#include <memory>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "../model/qwen.h"
#include "napi_util.h"

namespace vt {
namespace addon {
namespace {

struct ModelHolder {
  std::shared_ptr<QwenModel> model;
};
struct StateHolder {
  std::shared_ptr<ForwardState> state;
};

std::string s(int64_t v) { return std::to_string(v); }

std::shared_ptr<QwenModel> model_of(const Napi::Value& v) {
  if (!v.IsObject()) throw_type("Expected a model handle");
  Napi::Value h = v.As<Napi::Object>().Get("ptr");
  if (!h.IsExternal()) throw_type("Expected a model handle");
  ModelHolder* m = h.As<Napi::External<ModelHolder>>().Data();
  if (!m->model) throw_type("Expected a live model but it has been disposed");
  return m->model;
}

double num(const Napi::Object& o, const char* key) {
  Napi::Value v = o.Get(key);
  if (!v.IsNumber()) throw_type(std::string("Expected a number for ") + key);
  return v.As<Napi::Number>().DoubleValue();
}
int64_t integer(const Napi::Object& o, const char* key, int64_t lo, int64_t hi) {
  const double d = num(o, key);
  if (!(d >= double(lo) && d <= double(hi)) || d != std::floor(d))
    throw_range(std::string("Expected an integer in [") + s(lo) + ", " + s(hi) + "] for " + key);
  return int64_t(d);
}

// A typed array argument copied into a vector (Int32Array or Uint8Array as named).
template <class T, napi_typedarray_type K>
std::vector<T> copy_array(const Napi::Value& v, const std::string& name, size_t want) {
  if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != K)
    throw_type("Expected " + std::string(K == napi_int32_array ? "an Int32Array" : "a Uint8Array") + " for " + name);
  Napi::TypedArrayOf<T> a = v.As<Napi::TypedArrayOf<T>>();
  if (want != size_t(-1) && a.ElementLength() != want)
    throw_range("Expected " + s(int64_t(want)) + " elements for " + name + " but received " + s(int64_t(a.ElementLength())));
  return std::vector<T>(a.Data(), a.Data() + a.ElementLength());
}
std::vector<int32_t> i32s(const Napi::Value& v, const std::string& name, size_t want = size_t(-1)) {
  return copy_array<int32_t, napi_int32_array>(v, name, want);
}

QwenDims parse_dims(const Napi::Object& o) {
  QwenDims d;
  const int64_t big = int64_t(1) << 31;
  d.C = integer(o, "C", 1, big);
  d.layers = integer(o, "layers", 0, 4096);
  d.Hq = integer(o, "Hq", 1, 4096);
  d.Hkv = integer(o, "Hkv", 1, 4096);
  d.D = integer(o, "D", 2, 1 << 16);
  d.F = integer(o, "F", 1, big);
  d.V = integer(o, "V", 1, big);
  d.eps = float(num(o, "eps"));
  d.rope_theta = num(o, "ropeTheta");
  Napi::Value sec = o.Get("sections");
  if (!sec.IsArray() || sec.As<Napi::Array>().Length() != 3) throw_type("Expected sections of 3 numbers");
  for (uint32_t i = 0; i < 3; i++) d.sections[i] = int32_t(sec.As<Napi::Array>().Get(i).ToNumber().Int32Value());
  d.tied = o.Get("tied").ToBoolean().Value();
  d.vision = o.Get("vision").ToBoolean().Value();
  if (d.vision) {
    d.vC = integer(o, "vC", 1, big);
    d.vdepth = integer(o, "vdepth", 0, 4096);
    d.vH = integer(o, "vH", 1, 4096);
    d.vD = d.vC / d.vH;
    d.vF = integer(o, "vF", 1, big);
    d.K = integer(o, "K", 1, big);
    d.merge = integer(o, "merge", 1, 64);
    d.Co = integer(o, "Co", 1, big);
    Napi::Value fa = o.Get("fullatt");
    if (fa.IsArray())
      for (uint32_t i = 0; i < fa.As<Napi::Array>().Length(); i++) d.fullatt.push_back(fa.As<Napi::Array>().Get(i).ToNumber().Int32Value());
  }
  return d;
}

Napi::Value Create(const Napi::CallbackInfo& info) {
  if (!info[0].IsObject()) throw_type("Expected an object of sizes for dims");
  const QwenDims dims = parse_dims(info[0].As<Napi::Object>());
  if (!info[1].IsArray()) throw_type("Expected an array of parameters for params");
  Napi::Array arr = info[1].As<Napi::Array>();
  std::vector<ParamSource> params;
  for (uint32_t i = 0; i < arr.Length(); i++) {
    Napi::Object o = arr.Get(i).As<Napi::Object>();
    ParamSource p;
    p.name = o.Get("name").ToString().Utf8Value();
    p.trainable = o.Get("trainable").ToBoolean().Value();
    Napi::Value t = o.Get("t");
    if (t.IsNull() || t.IsUndefined()) {
      p.zero = true;
      p.trainable = true;
      Napi::Array sh = o.Get("shape").As<Napi::Array>();
      for (uint32_t k = 0; k < sh.Length(); k++) p.shape.push_back(int64_t(sh.Get(k).ToNumber().DoubleValue()));
    } else {
      TensorArg a = tensor_arg(t, p.name);
      require_cpu(a);
      require_contiguous(a);
      require_dtype(a, {DType::F32, DType::BF16, DType::F16});
      p.shape = a.shape;
      p.dtype = a.dtype;
      p.storage = a.storage;
      p.offset = a.offset;
    }
    params.push_back(std::move(p));
  }
  LoraSpec lora;
  if (info[2].IsObject()) {
    Napi::Object l = info[2].As<Napi::Object>();
    lora.rank = integer(l, "rank", 1, 1 << 16);
    lora.alpha = float(num(l, "alpha"));
    Napi::Array mods = l.Get("modules").As<Napi::Array>();
    for (uint32_t i = 0; i < mods.Length(); i++) lora.modules.push_back(mods.Get(i).ToString().Utf8Value());
  }
  const std::string rec = info[3].ToString().Utf8Value();
  const Recompute recompute = rec == "layer" ? Recompute::Layer : Recompute::None;
  const bool train = info[4].ToBoolean().Value();
  auto out = std::make_shared<std::shared_ptr<QwenModel>>();
  return run_job(
      info.Env(), opt_bool(info[5], false),
      [=]() mutable {
        try {
          *out = std::make_shared<QwenModel>(dims, std::move(params), lora, recompute, train);
        } catch (const std::invalid_argument& e) {
          throw ArgError(ArgError::Range, e.what());
        }
      },
      [out](Napi::Env env) -> Napi::Value {
        Napi::Object h = Napi::Object::New(env);
        h.Set("ptr", Napi::External<ModelHolder>::New(env, new ModelHolder{*out},
                                                     [](Napi::Env, ModelHolder* m) { delete m; }));
        return h;
      });
}

Napi::Value Dispose(const Napi::CallbackInfo& info) {
  if (info[0].IsObject()) {
    Napi::Value h = info[0].As<Napi::Object>().Get("ptr");
    if (h.IsExternal()) h.As<Napi::External<ModelHolder>>().Data()->model.reset();
  }
  return info.Env().Undefined();
}

Napi::Value Params(const Napi::CallbackInfo& info) {
  auto m = model_of(info[0]);
  Napi::Env env = info.Env();
  Napi::Object o = Napi::Object::New(env);
  const ParamStore& st = m->store();
  if (st.master()) {
    o.Set("master", wrap_storage(env, st.master()));
    o.Set("grads", wrap_storage(env, st.grads()));
  }
  o.Set("flatNumel", double(st.flat_numel()));
  o.Set("trainableNumel", double(st.trainable_numel()));
  Napi::Array arr = Napi::Array::New(env);
  uint32_t i = 0;
  for (const Param& p : st.params()) {
    Napi::Object e = Napi::Object::New(env);
    e.Set("name", p.name);
    Napi::Array sh = Napi::Array::New(env);
    for (uint32_t k = 0; k < p.shape.size(); k++) sh.Set(k, double(p.shape[k]));
    e.Set("shape", sh);
    e.Set("trainable", p.trainable);
    e.Set("offset", double(p.offset));
    arr.Set(i++, e);
  }
  o.Set("params", arr);
  return o;
}

Napi::Value ZeroGrad(const Napi::CallbackInfo& info) {
  auto m = model_of(info[0]);
  return run_job(
      info.Env(), opt_bool(info[1], false),
      [m] {
        std::lock_guard<std::mutex> lock(m->mutex());
        m->store().zero_grad();
      },
      [](Napi::Env env) { return env.Undefined(); });
}

// Vision inputs (pixels and the window layout) into `in`, checked against the model.
void parse_vision(const Napi::Object& o, const QwenModel& m, ForwardInputs& in) {
  const QwenDims& d = m.dims();
  if (!d.vision) throw_type("Expected a model with a vision tower (vision_config) for pixel inputs");
  TensorArg px = contiguous_arg(o.Get("pixels"), "pixels", {DType::F32}, 2, "[N, K]");
  require_cpu(px);
  const int64_t U = d.merge * d.merge, N = px.shape[0];
  if (px.shape[1] != d.K) throw_range("Expected pixel values of shape [N, " + s(d.K) + "] but received " + px.shape_str());
  if (N % U) throw_range("Expected a pixel row count divisible by " + s(U) + " but received " + s(N));
  in.pixels = px.storage;
  in.pixels_offset = px.offset;
  in.N = N;
  const int64_t M = N / U;
  in.index = i32s(o.Get("index"), "index", size_t(M));
  std::vector<uint8_t> seen(size_t(M), 0);
  for (int32_t v : in.index) {
    if (v < 0 || v >= M || seen[size_t(v)]) throw_range("Expected the window index to be a permutation of [0, " + s(M) + ")");
    seen[size_t(v)] = 1;
  }
  for (const char* key : {"cuWindow", "cuFull"}) {
    std::vector<int32_t> cu = i32s(o.Get(key), key);
    if (cu.size() < 2 || cu[0] != 0 || cu.back() != N)
      throw_range(std::string("Expected ") + key + " to run from 0 to " + s(N) + " (the patch count)");
    for (size_t i = 1; i < cu.size(); i++)
      if (cu[i] < cu[i - 1]) throw_range(std::string("Expected non-decreasing ") + key);
    (key[2] == 'W' ? in.cu_window : in.cu_full) = std::move(cu);
  }
  in.vpos = i32s(o.Get("vpos"), "vpos", size_t(2 * N));
}

Napi::Value Forward(const Napi::CallbackInfo& info) {
  auto m = model_of(info[0]);
  const QwenDims& d = m->dims();
  if (!info[1].IsObject()) throw_type("Expected an object of inputs");
  Napi::Object o = info[1].As<Napi::Object>();
  ForwardInputs in;
  in.B = integer(o, "B", 1, int64_t(1) << 24);
  in.T = integer(o, "T", 1, int64_t(1) << 24);
  const int64_t BT = in.B * in.T;
  if (BT >= (int64_t(1) << 31)) throw_range("Expected fewer than 2^31 tokens in a batch");
  in.ids = i32s(o.Get("ids"), "inputIds", size_t(BT));
  for (int64_t i = 0; i < BT; i++)
    if (in.ids[size_t(i)] < 0 || in.ids[size_t(i)] >= d.V)
      throw_range("Expected token ids in [0, " + s(d.V) + ") for inputIds but received " + s(in.ids[size_t(i)]) + " at index " + s(i));
  in.pos = i32s(o.Get("pos"), "positions", size_t(3 * BT));
  if (!o.Get("mask").IsNull() && !o.Get("mask").IsUndefined()) {
    in.mask = copy_array<uint8_t, napi_uint8_array>(o.Get("mask"), "attentionMask", size_t(BT));
    // Each row's real tokens must be one run (left padding, right padding or both).
    for (int64_t b = 0; b < in.B; b++) {
      const uint8_t* r = in.mask.data() + b * in.T;
      int64_t t = 0;
      while (t < in.T && !r[t]) t++;
      while (t < in.T && r[t]) t++;
      while (t < in.T && !r[t]) t++;
      if (t < in.T) throw_range("Expected each row of attentionMask to be one run of 1s (padding before or after) but row " + s(b) + " has a gap");
    }
  }
  const Napi::Value vis = o.Get("vision");
  if (vis.IsObject()) {
    parse_vision(vis.As<Napi::Object>(), *m, in);
    in.vrow = i32s(o.Get("vrow"), "vrow", size_t(BT));
    const int64_t M = in.N / (d.merge * d.merge);
    for (int32_t v : in.vrow)
      if (v < -1 || v >= M) throw_range("Expected vision rows in [-1, " + s(M) + ")");
  }
  const Napi::Value cache = o.Get("cache");
  std::vector<TensorArg> keep;
  if (cache.IsObject()) {
    Napi::Object c = cache.As<Napi::Object>();
    TensorArg k = contiguous_arg(c.Get("k"), "cache.k", {DType::F32}, 5, "[layers, B, maxLen, Hkv, D]");
    TensorArg v = contiguous_arg(c.Get("v"), "cache.v", {DType::F32}, 5, "[layers, B, maxLen, Hkv, D]");
    TensorArg km = contiguous_arg(c.Get("keyMask"), "cache.keyMask", {DType::U8}, 2, "[B, maxLen]");
    require_cpu(k);
    require_cpu(v);
    require_cpu(km);
    in.past = integer(c, "past", 0, int64_t(1) << 31);
    in.max_len = k.shape[2];
    const std::vector<int64_t> want{d.layers, in.B, in.max_len, d.Hkv, d.D};
    if (k.shape != want || v.shape != want) throw_range("Expected cache tensors of shape [" + s(d.layers) + ", " + s(in.B) + ", maxLen, " + s(d.Hkv) + ", " + s(d.D) + "]");
    if (km.shape != std::vector<int64_t>{in.B, in.max_len}) throw_range("Expected cache.keyMask of shape [" + s(in.B) + ", " + s(in.max_len) + "]");
    if (in.past + in.T > in.max_len) throw_range("Expected at most " + s(in.max_len - in.past) + " new tokens (the cache's room) but received " + s(in.T));
    // Each row's cached keys: padding first, then real tokens only.
    const uint8_t* kmd = km.ptr<uint8_t>();
    for (int64_t b = 0; b < in.B; b++) {
      const uint8_t* r = kmd + b * in.max_len;
      int64_t t = 0;
      while (t < in.past + in.T && !r[t]) t++;
      while (t < in.past + in.T && r[t]) t++;
      if (t < in.past + in.T) throw_range("Expected the cache's keys of row " + s(b) + " to be padding then real tokens (right padding cannot be followed by more tokens)");
    }
    in.kcache = k.storage;
    in.vcache = v.storage;
    in.keymask = km.storage;
    if (k.offset || v.offset || km.offset) throw_range("Expected whole cache tensors (no views)");
  }
  in.logits = int(integer(o, "logits", 0, 2));
  in.save = o.Get("grad").ToBoolean().Value();
  if (in.save && !m->train()) throw_type("Expected a model loaded with { train } for grad: true (this one is for inference)");
  if (in.save && in.kcache) throw_type("Expected no cache with grad: true");
  auto res = std::make_shared<ForwardResult>();
  return run_job(
      info.Env(), opt_bool(info[2], false),
      [m, in, res]() mutable {
        std::lock_guard<std::mutex> lock(m->mutex());
        *res = m->forward(std::move(in));
      },
      [res](Napi::Env env) -> Napi::Value {
        Napi::Object r = Napi::Object::New(env);
        r.Set("hidden", wrap_storage(env, res->hidden));
        if (res->logits) r.Set("logits", wrap_storage(env, res->logits));
        if (res->state)
          r.Set("state", Napi::External<StateHolder>::New(env, new StateHolder{res->state},
                                                          [](Napi::Env, StateHolder* h) { delete h; }));
        return r;
      });
}

Napi::Value Backward(const Napi::CallbackInfo& info) {
  auto m = model_of(info[0]);
  if (!info[1].IsExternal()) throw_type("Expected the result of a forward with grad: true");
  StateHolder* h = info[1].As<Napi::External<StateHolder>>().Data();
  if (!h->state) throw_type("Expected a forward result that is not disposed");
  std::shared_ptr<ForwardState> st = h->state;
  if (st->used) throw_type("Expected a forward result not yet used by backward (backward runs once per forward)");
  const QwenDims& d = m->dims();
  const int64_t BT = st->in.B * st->in.T;
  std::optional<TensorArg> dl, dh;
  if (!info[2].IsNull() && !info[2].IsUndefined()) {
    dl = contiguous_arg(info[2], "dLogits", {DType::F32}, 3, "[B, L, V]");
    require_cpu(*dl);
    if (st->in.logits == 0) throw_type("Expected dHidden: the forward computed no logits");
    const int64_t L = st->in.logits == 2 ? st->in.T : 1;
    if (dl->shape != std::vector<int64_t>{st->in.B, L, d.V})
      throw_range("Expected dLogits of shape [" + s(st->in.B) + ", " + s(L) + ", " + s(d.V) + "] (as the logits) but received " + dl->shape_str());
  }
  if (!info[3].IsNull() && !info[3].IsUndefined()) {
    dh = contiguous_arg(info[3], "dHidden", {DType::F32}, 3, "[B, L, C]");
    require_cpu(*dh);
    if (dh->shape != std::vector<int64_t>{st->in.B, st->in.T, d.C})
      throw_range("Expected dHidden of shape [" + s(st->in.B) + ", " + s(st->in.T) + ", " + s(d.C) + "] (as the hidden states) but received " + dh->shape_str());
  }
  if (!dl && !dh) throw_type("Expected dLogits or dHidden");
  (void)BT;
  st->used = true;
  h->state.reset();  // one use: the saved activations go with this job
  return run_job(
      info.Env(), opt_bool(info[4], false),
      [m, st, dl, dh] {
        std::lock_guard<std::mutex> lock(m->mutex());
        m->backward(*st, dl ? dl->ptr<float>() : nullptr, dh ? dh->ptr<float>() : nullptr);
      },
      [](Napi::Env env) { return env.Undefined(); });
}

Napi::Value StateRelease(const Napi::CallbackInfo& info) {
  if (info[0].IsExternal()) info[0].As<Napi::External<StateHolder>>().Data()->state.reset();
  return info.Env().Undefined();
}

Napi::Value StateUsable(const Napi::CallbackInfo& info) {
  const bool ok = info[0].IsExternal() && info[0].As<Napi::External<StateHolder>>().Data()->state != nullptr;
  return Napi::Boolean::New(info.Env(), ok);
}

Napi::Value Vision(const Napi::CallbackInfo& info) {
  auto m = model_of(info[0]);
  if (!info[1].IsObject()) throw_type("Expected an object of vision inputs");
  ForwardInputs in;
  parse_vision(info[1].As<Napi::Object>(), *m, in);
  auto out = std::make_shared<StoragePtr>();
  return run_job(
      info.Env(), opt_bool(info[2], false),
      [m, in, out] {
        std::lock_guard<std::mutex> lock(m->mutex());
        *out = m->vision_forward(in);
      },
      [out](Napi::Env env) -> Napi::Value { return wrap_storage(env, *out); });
}

void Init(Napi::Env env, Napi::Object exports) {
  exports.Set("modelCreate", fn(env, "modelCreate", Create));
  exports.Set("modelDispose", fn(env, "modelDispose", Dispose));
  exports.Set("modelParams", fn(env, "modelParams", Params));
  exports.Set("modelZeroGrad", fn(env, "modelZeroGrad", ZeroGrad));
  exports.Set("modelForward", fn(env, "modelForward", Forward));
  exports.Set("modelBackward", fn(env, "modelBackward", Backward));
  exports.Set("modelVision", fn(env, "modelVision", Vision));
  exports.Set("modelStateRelease", fn(env, "modelStateRelease", StateRelease));
  exports.Set("modelStateUsable", fn(env, "modelStateUsable", StateUsable));
}

Register reg(&Init);

}  // namespace
}  // namespace addon
}  // namespace vt
