// Module entry: the Storage class, backend information, threads, then every registered family.
#include "../core/blas.h"
#include "../core/gemm.h"
#include "../core/gemm_bf16.h"
#include "../core/parallel.h"
#include "../core/peak.h"
#include "../core/simd.h"
#include "../core/storage.h"
#include "../core/cuda_api.h"
#include "napi_util.h"

// Build systems pass bare tokens (quotes do not survive every generator): stringify here.
#define VT_STR2(...) #__VA_ARGS__
#define VT_STR(...) VT_STR2(__VA_ARGS__)
#ifdef VT_VERSION
#define VT_VERSION_STRING VT_STR(VT_VERSION)
#else
#define VT_VERSION_STRING "0.0.0"
#endif

namespace vt {
namespace addon {

void init_storage_class(Napi::Env env, Napi::Object exports);

static Napi::Value Backend(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object o = Napi::Object::New(env);
  o.Set("version", VT_VERSION_STRING);
  const CpuFeatures& f = cpu();
  Napi::Object simd = Napi::Object::New(env);
  simd.Set("sse42", f.sse42);
  simd.Set("avx", f.avx);
  simd.Set("avx2", f.avx2);
  simd.Set("fma", f.fma);
  simd.Set("f16c", f.f16c);
  simd.Set("avx512f", f.avx512f);
  simd.Set("avx512bw", f.avx512bw);
  simd.Set("avx512vl", f.avx512vl);
  simd.Set("avx512dq", f.avx512dq);
  simd.Set("avx512bf16", f.avx512bf16);
  o.Set("simd", simd);
  o.Set("kernels", simd_level_name(f.level));
  o.Set("bestKernels", simd_level_name(f.best));
  o.Set("threads", num_threads());
  o.Set("blas", blas_available() ? blas_name() : "none");
  // What matmul({ impl: 'auto' }) and every internal GEMM run, and why (gemm.cc, gemm_auto()).
  Napi::Object gemm = Napi::Object::New(env);
  const GemmChoice choice = gemm_auto();
  gemm.Set("auto", choice.impl == GemmImpl::Blas ? "blas" : "builtin");
  gemm.Set("reason", choice.reason);
  gemm.Set("blasKernels", blas_available() ? blas_kernels_name(blas_kernels()) : "none");
  gemm.Set("blasCore", blas_core());
  const char* pin = blas_coretype_env();
  gemm.Set("openblasCoretype", pin ? Napi::Value(Napi::String::New(env, pin)) : env.Null());
  // precision 'bf16' (gemm_bf16.h): VDPBF16PS kernels or the f32 GEMM on rounded operands.
  Napi::Object bf = Napi::Object::New(env);
  const bool native_bf16 = gemm_bf16_native();
  bf.Set("native", native_bf16);
  bf.Set("reason", native_bf16 ? "AVX512_BF16: VDPBF16PS kernels, up to twice the f32 rate"
                   : !f.avx512bf16 ? "this CPU has no AVX512_BF16: the f32 GEMM on operands rounded to bf16 (same products, no faster)"
                                   : "the SIMD level is below avx512 (VT_SIMD or setSimdLevel): the f32 GEMM on operands rounded to bf16");
  gemm.Set("bf16", bf);
  gemm.Set("precision", matmul_bf16() ? "bf16" : "f32");
  o.Set("gemm", gemm);
  Napi::Object cuda = Napi::Object::New(env);
  cuda.Set("compiled", cuda_compiled());
  cuda.Set("runtime", cuda_runtime_version());
  Napi::Array archs = Napi::Array::New(env);
  auto av = cuda_architectures();
  for (size_t i = 0; i < av.size(); ++i) archs.Set(uint32_t(i), av[i]);
  cuda.Set("architectures", archs);
  Napi::Array devs = Napi::Array::New(env);
  auto dv = cuda_devices();
  for (size_t i = 0; i < dv.size(); ++i) {
    Napi::Object d = Napi::Object::New(env);
    d.Set("index", dv[i].index);
    d.Set("name", dv[i].name);
    d.Set("computeCapability", std::to_string(dv[i].major) + "." + std::to_string(dv[i].minor));
    d.Set("totalMemory", double(dv[i].total_memory));
    d.Set("multiprocessors", dv[i].multiprocessors);
    devs.Set(uint32_t(i), d);
  }
  cuda.Set("devices", devs);
  o.Set("cuda", cuda);
  return o;
}

static Napi::Object Init(Napi::Env env, Napi::Object exports) {
  init_storage_class(env, exports);
  exports.Set("backend", Napi::Function::New(env, Backend, "backend"));
  exports.Set("setNumThreads", fn(env, "setNumThreads", [](const Napi::CallbackInfo& info) -> Napi::Value {
                double n = info[0].ToNumber().DoubleValue();
                return Napi::Number::New(info.Env(), set_num_threads(int(n)));
              }));
  exports.Set("setSimdLevel", fn(env, "setSimdLevel", [](const Napi::CallbackInfo& info) -> Napi::Value {
                std::string s = info[0].ToString().Utf8Value();
                SimdLevel want = s == "scalar" ? SimdLevel::Scalar : s == "avx2" ? SimdLevel::Avx2 : SimdLevel::Avx512;
                SimdLevel was = set_simd_level(want);
                return Napi::String::New(info.Env(), simd_level_name(was));
              }));
  // setMatmulPrecision('f32' | 'bf16') -> the previous one (gemm_bf16.h; the TS layer checks the name).
  exports.Set("setMatmulPrecision", fn(env, "setMatmulPrecision", [](const Napi::CallbackInfo& info) -> Napi::Value {
                const bool was = matmul_bf16();
                set_matmul_bf16(info[0].ToString().Utf8Value() == "bf16");
                return Napi::String::New(info.Env(), was ? "bf16" : "f32");
              }));
  exports.Set("matmulPrecision", fn(env, "matmulPrecision", [](const Napi::CallbackInfo& info) -> Napi::Value {
                return Napi::String::New(info.Env(), matmul_bf16() ? "bf16" : "f32");
              }));
  // measureCeilings(threads, seconds) -> { fmaGflops, readGBs }: for the benchmarks' "% of peak".
  exports.Set("measureCeilings", fn(env, "measureCeilings", [](const Napi::CallbackInfo& info) -> Napi::Value {
                int threads = info[0].IsNumber() ? info[0].As<Napi::Number>().Int32Value() : num_threads();
                double seconds = info[1].IsNumber() ? info[1].As<Napi::Number>().DoubleValue() : 0.3;
                Napi::Object o = Napi::Object::New(info.Env());
                o.Set("fmaGflops", measure_fma_peak(threads, seconds));
                o.Set("readGBs", measure_read_bandwidth(threads, int64_t(1) << 29, 3));
                return o;
              }));
  // memoryStats() -> { liveBytes, peakBytes, allocations, cachedBytes }: native host memory of tensors and
  // kernel workspaces. resetPeakMemory() starts a new peak window (benchmarks' peak extra memory).
  exports.Set("memoryStats", fn(env, "memoryStats", [](const Napi::CallbackInfo& info) -> Napi::Value {
                HostMemoryStats m = host_memory_stats();
                Napi::Object o = Napi::Object::New(info.Env());
                o.Set("liveBytes", double(m.live_bytes));
                o.Set("peakBytes", double(m.peak_bytes));
                o.Set("allocations", double(m.allocations));
                o.Set("cachedBytes", double(host_cached_bytes()));
                return o;
              }));
  exports.Set("resetPeakMemory", fn(env, "resetPeakMemory", [](const Napi::CallbackInfo& info) -> Napi::Value {
                reset_host_memory_peak();
                return info.Env().Undefined();
              }));
  for (InitFn f : registry()) f(env, exports);
  return exports;
}

}  // namespace addon
}  // namespace vt

static Napi::Object InitVideothinker(Napi::Env env, Napi::Object exports) { return vt::addon::Init(env, exports); }
NODE_API_MODULE(videothinker, InitVideothinker)
