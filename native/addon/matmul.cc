// matmul(a, b, out|null, transA, transB, impl, async, alpha, beta, precision): 2-D f32 (a and b
// also bf16 with precision 'bf16'), C = alpha op(A) op(B) + beta C (beta != 0 only with out; the
// TS layer checks both numbers).
#include <cmath>

#include "../core/cuda_api.h"
#include "../core/gemm.h"
#include "../core/gemm_bf16.h"
#include "napi_util.h"

namespace vt {
namespace addon {
namespace {

Napi::Value Matmul(const Napi::CallbackInfo& info) {
  TensorArg a = tensor_arg(info[0], "a"), b = tensor_arg(info[1], "b");
  bool ta = opt_bool(info[3], false), tb = opt_bool(info[4], false);
  std::string impl = info[5].IsString() ? info[5].As<Napi::String>().Utf8Value() : "auto";
  bool async = opt_bool(info[6], false);
  const float alpha = info[7].IsNumber() ? info[7].As<Napi::Number>().FloatValue() : 1.0f;
  const float beta = info[8].IsNumber() ? info[8].As<Napi::Number>().FloatValue() : 0.0f;
  if (!std::isfinite(alpha) || !std::isfinite(beta)) throw_range("Expected finite alpha and beta");
  if (beta != 0.0f && (info[2].IsNull() || info[2].IsUndefined())) throw_type("Expected out with beta != 0 (beta scales out's values)");
  require_ndim(a, 2, "[M, K]");
  require_ndim(b, 2, "[K, N]");
  const bool bf16 = precision_arg(info[9], a.storage->device);
  if (bf16 && impl != "auto" && impl != "builtin") throw_type("Expected impl 'auto' or 'builtin' with precision 'bf16' but received '" + impl + "'");
  require_dtype(a, bf16 ? std::initializer_list<DType>{DType::F32, DType::BF16} : std::initializer_list<DType>{DType::F32});
  require_dtype(b, bf16 ? std::initializer_list<DType>{DType::F32, DType::BF16} : std::initializer_list<DType>{DType::F32});
  // A transposed view with unit column stride is passed to the GEMM as the untransposed storage.
  auto lead = [](const TensorArg& t, bool& trans) -> int64_t {
    const int64_t rows = t.shape[0], cols = t.shape[1];
    if ((t.strides[1] == 1 || cols <= 1) && (rows <= 1 || t.strides[0] >= cols))
      return std::max<int64_t>(rows <= 1 ? cols : t.strides[0], 1);
    if ((t.strides[0] == 1 || rows <= 1) && (cols <= 1 || t.strides[1] >= rows)) {
      trans = !trans;
      return std::max<int64_t>(cols <= 1 ? rows : t.strides[1], 1);
    }
    throw_type("Expected " + t.name + " with unit stride in one dimension but received a strided view; call .contiguous() first");
  };
  bool gta = ta, gtb = tb;
  const int64_t lda = lead(a, gta), ldb = lead(b, gtb);
  const int64_t M = ta ? a.shape[1] : a.shape[0], K = ta ? a.shape[0] : a.shape[1];
  const int64_t Kb = tb ? b.shape[1] : b.shape[0], N = tb ? b.shape[0] : b.shape[1];
  if (K != Kb)
    throw_range("Expected the inner dimensions to agree, but a gives K = " + std::to_string(K) + " (shape " + a.shape_str() +
                (ta ? ", transposed" : "") + ") and b gives K = " + std::to_string(Kb) + " (shape " + b.shape_str() +
                (tb ? ", transposed" : "") + ")");
  if (a.storage->device != b.storage->device) throw_type("Expected a and b on the same device");
  GemmImpl gi = impl == "blas" ? GemmImpl::Blas : impl == "builtin" ? GemmImpl::Builtin : impl == "naive" ? GemmImpl::Naive : GemmImpl::Auto;
  StoragePtr out;
  bool given_out = false;
  int64_t ldc = N;
  float* c = nullptr;
  if (!info[2].IsNull() && !info[2].IsUndefined()) {
    TensorArg o = tensor_arg(info[2], "out");
    require_dtype(o, {DType::F32});
    require_contiguous(o);
    if (o.ndim() != 2 || o.shape[0] != M || o.shape[1] != N)
      throw_range("Expected out of shape [" + std::to_string(M) + ", " + std::to_string(N) + "] but received " + o.shape_str());
    if (o.storage->device != a.storage->device) throw_type("Expected out on the device of a and b");
    out = o.storage;
    given_out = true;
    c = o.ptr<float>();
  } else {
    out = storage_alloc(size_t(M) * size_t(N) * sizeof(float), a.storage->device);
    c = static_cast<float*>(out->data);
  }
  const void* pa = a.data();
  const void* pb = b.data();
  const DType adt = a.dtype, bdt = b.dtype;
  const int device = a.storage->device;
  auto keep_a = a.storage, keep_b = b.storage;
  return run_job(
      info.Env(), async,
      [=] {
        (void)keep_a;
        (void)keep_b;
        if (device >= 0)
          cuda_sgemm(gta, gtb, M, N, K, alpha, static_cast<const float*>(pa), lda, static_cast<const float*>(pb), ldb, beta, c, ldc, device);
        else if (bf16)
          gemm_bf16(gta, gtb, M, N, K, alpha, pa, adt, lda, pb, bdt, ldb, beta, c, ldc);
        else
          sgemm(gta, gtb, M, N, K, alpha, static_cast<const float*>(pa), lda, static_cast<const float*>(pb), ldb, beta, c, ldc, gi);
      },
      // A caller-given out already has its handle: resolve undefined rather than wrap it twice.
      [out, given_out](Napi::Env env) -> Napi::Value { return given_out ? env.Undefined() : Napi::Value(wrap_storage(env, out)); });
}

void Init(Napi::Env env, Napi::Object exports) { exports.Set("matmul", fn(env, "matmul", Matmul)); }

Register reg(&Init);

}  // namespace
}  // namespace addon
}  // namespace vt
