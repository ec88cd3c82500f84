// N-API boundary of token sampling (native/kernels/sampling).
//   sampleRows(logits [R, V] f32, streamsHi, streamsLo, counters (Float64Array), { temperature, topP, topK }, async)
//     -> { tokens: Int32Array, logprobs: Float32Array }
// Streams come as two Uint32Arrays (the high and low halves of each row's 64-bit seed); counters
// as a Float64Array of integers below 2^53. All copied at the call.
#include <cmath>
#include <memory>
#include <string>
#include <vector>

#include "../kernels/sampling/sampling.h"
#include "napi_util.h"

namespace vt {
namespace addon {
namespace {

std::vector<uint32_t> u32s(const Napi::Value& v, const char* name, size_t n) {
  if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != napi_uint32_array) throw_type(std::string("Expected a Uint32Array for ") + name);
  Napi::Uint32Array a = v.As<Napi::Uint32Array>();
  if (a.ElementLength() != n) throw_range(std::string("Expected ") + std::to_string(n) + " elements for " + name);
  return std::vector<uint32_t>(a.Data(), a.Data() + n);
}

Napi::Value SampleRows(const Napi::CallbackInfo& info) {
  TensorArg x = contiguous_arg(info[0], "logits", {DType::F32}, 2, "[R, V]");
  require_cpu(x);
  const int64_t R = x.shape[0], V = x.shape[1];
  if (V < 1) throw_range("Expected a vocabulary of at least one token");
  const auto hi = u32s(info[1], "streams (high)", size_t(R)), lo = u32s(info[2], "streams (low)", size_t(R));
  if (!info[3].IsTypedArray() || info[3].As<Napi::TypedArray>().TypedArrayType() != napi_float64_array) throw_type("Expected a Float64Array for counters");
  Napi::Float64Array ca = info[3].As<Napi::Float64Array>();
  if (ca.ElementLength() != size_t(R)) throw_range("Expected one counter per row");
  std::vector<uint64_t> streams(static_cast<size_t>(R)), counters(static_cast<size_t>(R));
  for (int64_t r = 0; r < R; r++) {
    streams[size_t(r)] = (uint64_t(hi[size_t(r)]) << 32) | lo[size_t(r)];
    const double c = ca[size_t(r)];
    if (!(c >= 0 && c < 9007199254740992.0) || c != std::floor(c)) throw_range("Expected integer counters in [0, 2^53)");
    counters[size_t(r)] = uint64_t(c);
  }
  if (!info[4].IsObject()) throw_type("Expected an object of sampling options");
  Napi::Object o = info[4].As<Napi::Object>();
  SampleArgs a;
  const double temp = o.Get("temperature").ToNumber().DoubleValue();
  a.temperature = float(temp);
  a.top_p = float(o.Get("topP").ToNumber().DoubleValue());
  a.top_k = int64_t(o.Get("topK").ToNumber().DoubleValue());
  // A temperature so small that 1 / T overflows (or T rounds to 0 in f32) would give inf / NaN.
  if (!(temp >= 0) || !std::isfinite(a.temperature) || (temp > 0 && (a.temperature == 0.0f || !std::isfinite(1.0f / a.temperature))))
    throw_range("Expected a temperature of 0 or a number whose inverse is finite");
  if (!(a.top_p > 0 && a.top_p <= 1)) throw_range("Expected topP in (0, 1]");
  if (a.top_k < 0) throw_range("Expected topK >= 0");
  std::vector<int32_t> banned;
  if (o.Get("banned").IsTypedArray()) {
    Napi::Int32Array b = o.Get("banned").As<Napi::Int32Array>();
    for (size_t i = 0; i < b.ElementLength(); i++) {
      if (b[i] < 0 || b[i] >= V) throw_range("Expected banned token ids in [0, " + std::to_string(V) + ")");
      banned.push_back(b[i]);
    }
  }
  auto tokens = std::make_shared<std::vector<int32_t>>(size_t(R));
  auto lps = std::make_shared<std::vector<float>>(size_t(R));
  return run_job(
      info.Env(), opt_bool(info[5], false),
      [=]() mutable {
        a.banned = banned.data();
        a.nbanned = int64_t(banned.size());
        sample_rows_cpu(x.ptr<float>(), R, V, V, a, streams.data(), counters.data(), tokens->data(), lps->data());
      },
      [=](Napi::Env env) -> Napi::Value {
        Napi::Object r = Napi::Object::New(env);
        Napi::Int32Array t = Napi::Int32Array::New(env, size_t(R));
        Napi::Float32Array l = Napi::Float32Array::New(env, size_t(R));
        for (int64_t i = 0; i < R; i++) { t[size_t(i)] = (*tokens)[size_t(i)]; l[size_t(i)] = (*lps)[size_t(i)]; }
        r.Set("tokens", t);
        r.Set("logprobs", l);
        return r;
      });
}

void Init(Napi::Env env, Napi::Object exports) { exports.Set("sampleRows", fn(env, "sampleRows", SampleRows)); }
Register reg(&Init);

}  // namespace
}  // namespace addon
}  // namespace vt
