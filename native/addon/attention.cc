// N-API boundary of the fused attention (flash.h). The TS layer (src/kernels/attention.ts)
// validates with the public names first; these checks guard memory.
//   attention(q, k, v, cuQ, cuK, causal, scale, async) -> { out, lse }
//   attentionBackward(q, k, v, out, lse, dOut, cuQ, cuK, causal, scale, async) -> { dq, dk, dv }
#include <cmath>
#include <string>

#include "napi_util.h"
#include "owned_copy.h"
#include "../kernels/attention/attention.h"

namespace vt {
namespace addon {
namespace {

TensorArg t3(const Napi::Value& v, const char* name) { return contiguous_arg(v, name, {DType::F32}, 3, "[tokens, heads, D]"); }

// The offsets are copied first and validated on the copy the worker reads (owned_copy.h).
TensorArg cu_arg(const Napi::Value& v, const char* name, int64_t total) {
  TensorArg t = contiguous_arg(v, name, {DType::I32}, 1, "[batch + 1]");
  require_cpu(t);
  t = owned_copy(t);
  if (t.shape[0] < 1) throw_range(std::string("Expected at least one element for ") + name + " but received shape " + t.shape_str());
  const int32_t* p = t.ptr<int32_t>();
  if (p[0] != 0) throw_range(std::string("Expected ") + name + "[0] = 0 but received " + std::to_string(p[0]));
  for (int64_t i = 1; i < t.shape[0]; ++i)
    if (p[i] < p[i - 1])
      throw_range(std::string("Expected non-decreasing ") + name + " but " + name + "[" + std::to_string(i) + "] = " +
                  std::to_string(p[i]) + " < " + name + "[" + std::to_string(i - 1) + "] = " + std::to_string(p[i - 1]));
  if (p[t.shape[0] - 1] != total)
    throw_range(std::string("Expected ") + name + "[" + std::to_string(t.shape[0] - 1) + "] = " + std::to_string(total) +
                " (the token count) but received " + std::to_string(p[t.shape[0] - 1]));
  return t;
}

struct Inputs {
  TensorArg q, k, v, cq, ck;
  AttnArgs args;
  int device = -1;
};

Inputs inputs(const Napi::CallbackInfo& info, int cu_at) {
  Inputs in;
  in.q = t3(info[0], "q");
  in.k = t3(info[1], "k");
  in.v = t3(info[2], "v");
  const int64_t Hq = in.q.shape[1], Hkv = in.k.shape[1], D = in.q.shape[2];
  if (in.k.shape[2] != D || in.v.shape[2] != D)
    throw_range("Expected q, k and v with one head size D = " + std::to_string(D) + " but received k " + in.k.shape_str() +
                " and v " + in.v.shape_str());
  if (in.v.shape != in.k.shape) throw_range("Expected v of the shape of k " + in.k.shape_str() + " but received " + in.v.shape_str());
  if (Hkv < 1 || Hq % Hkv != 0)
    throw_range("Expected the query heads (" + std::to_string(Hq) + ") to be a multiple of the key/value heads (" +
                std::to_string(Hkv) + ")");
  in.device = in.q.storage->device;
  if (in.k.storage->device != in.device || in.v.storage->device != in.device) throw_type("Expected q, k and v on one device");
  in.cq = cu_arg(info[cu_at], "cuSeqlensQ", in.q.shape[0]);
  in.ck = cu_arg(info[cu_at + 1], "cuSeqlensK", in.k.shape[0]);
  if (in.cq.shape[0] != in.ck.shape[0])
    throw_range("Expected cuSeqlensQ and cuSeqlensK of one length (batch + 1) but received " + in.cq.shape_str() + " and " +
                in.ck.shape_str());
  AttnArgs& a = in.args;
  a.q = in.q.ptr<float>();
  a.k = in.k.ptr<float>();
  a.v = in.v.ptr<float>();
  a.cu_q = in.cq.ptr<int32_t>();
  a.cu_k = in.ck.ptr<int32_t>();
  a.B = in.cq.shape[0] - 1;
  a.Tq = in.q.shape[0];
  a.Tk = in.k.shape[0];
  a.Hq = Hq;
  a.Hkv = Hkv;
  a.D = D;
  a.causal = opt_bool(info[cu_at + 2], false);
  const double scale = info[cu_at + 3].IsNumber() ? info[cu_at + 3].As<Napi::Number>().DoubleValue() : 1.0 / std::sqrt(double(D));
  if (!std::isfinite(scale)) throw_range("Expected a finite scale");
  a.scale = float(scale);
  return in;
}

Napi::Value Attention(const Napi::CallbackInfo& info) {
  Inputs in = inputs(info, 3);
  const bool async = opt_bool(info[7], false);
  const AttnArgs& a = in.args;
  StoragePtr out = storage_alloc(size_t(a.Tq * a.Hq * a.D) * 4, in.device);
  StoragePtr lse = storage_alloc(size_t(a.Tq * a.Hq) * 4, in.device);
  auto keep = std::make_shared<Inputs>(in);
  return run_job(
      info.Env(), async,
      [=] {
        if (keep->device >= 0)
          attention_forward_cuda(keep->args, static_cast<float*>(out->data), static_cast<float*>(lse->data), keep->device);
        else
          attention_forward_cpu(keep->args, static_cast<float*>(out->data), static_cast<float*>(lse->data));
      },
      [=](Napi::Env env) -> Napi::Value {
        Napi::Object o = Napi::Object::New(env);
        o.Set("out", wrap_storage(env, out));
        o.Set("lse", wrap_storage(env, lse));
        return o;
      });
}

Napi::Value AttentionBackward(const Napi::CallbackInfo& info) {
  Inputs in = inputs(info, 6);
  const bool async = opt_bool(info[10], false);
  const AttnArgs& a = in.args;
  TensorArg o = t3(info[3], "out"), dO = t3(info[5], "dOut");
  if (o.shape != in.q.shape) throw_range("Expected out of the shape of q " + in.q.shape_str() + " but received " + o.shape_str());
  if (dO.shape != in.q.shape) throw_range("Expected dOut of the shape of q " + in.q.shape_str() + " but received " + dO.shape_str());
  TensorArg l = tensor_arg(info[4], "lse");
  require_dtype(l, {DType::F32});
  require_contiguous(l);
  if (l.ndim() != 2 || l.shape[0] != a.Tq || l.shape[1] != a.Hq)
    throw_range("Expected lse of shape [" + std::to_string(a.Tq) + ", " + std::to_string(a.Hq) + "] but received " + l.shape_str());
  if (o.storage->device != in.device || dO.storage->device != in.device || l.storage->device != in.device)
    throw_type("Expected out, lse and dOut on the device of q");
  StoragePtr dq = storage_alloc(size_t(a.Tq * a.Hq * a.D) * 4, in.device);
  StoragePtr dk = storage_alloc(size_t(a.Tk * a.Hkv * a.D) * 4, in.device);
  StoragePtr dv = storage_alloc(size_t(a.Tk * a.Hkv * a.D) * 4, in.device);
  auto keep = std::make_shared<Inputs>(in);
  StoragePtr ko = o.storage, kl = l.storage, kd = dO.storage;
  const float *po = o.ptr<float>(), *pl = l.ptr<float>(), *pd = dO.ptr<float>();
  return run_job(
      info.Env(), async,
      [=] {
        (void)ko, (void)kl, (void)kd;
        float *q = static_cast<float*>(dq->data), *k = static_cast<float*>(dk->data), *v = static_cast<float*>(dv->data);
        if (keep->device >= 0)
          attention_backward_cuda(keep->args, po, pl, pd, q, k, v, keep->device);
        else
          attention_backward_cpu(keep->args, po, pl, pd, q, k, v);
      },
      [=](Napi::Env env) -> Napi::Value {
        Napi::Object r = Napi::Object::New(env);
        r.Set("dq", wrap_storage(env, dq));
        r.Set("dk", wrap_storage(env, dk));
        r.Set("dv", wrap_storage(env, dv));
        return r;
      });
}

void Init(Napi::Env env, Napi::Object exports) {
  exports.Set("attention", fn(env, "attention", Attention));
  exports.Set("attentionBackward", fn(env, "attentionBackward", AttentionBackward));
}

Register reg(&Init);

}  // namespace
}  // namespace addon
}  // namespace vt
