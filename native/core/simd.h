// Run-time SIMD dispatch. Shipped binaries are compiled for baseline x86-64; functions that use
// AVX2/FMA/F16C live in files that wrap them in VT_AVX2_BEGIN / VT_AVX2_END, and callers pick
// them only when cpu().avx2 is true. Include every standard header *before* VT_AVX2_BEGIN so
// that no inline library function is compiled with AVX2 (the linker could otherwise keep that
// copy for baseline callers and crash on an older CPU).
#pragma once

#if defined(__x86_64__) || defined(_M_X64)
#define VT_X86 1
#if defined(__clang__)
#define VT_AVX2_BEGIN _Pragma("clang attribute push(__attribute__((target(\"avx2,fma,f16c\"))), apply_to = function)")
#define VT_AVX2_END _Pragma("clang attribute pop")
#define VT_AVX512_BEGIN _Pragma("clang attribute push(__attribute__((target(\"avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c\"))), apply_to = function)")
#define VT_AVX512_END _Pragma("clang attribute pop")
#elif defined(__GNUC__)
#define VT_AVX2_BEGIN _Pragma("GCC push_options") _Pragma("GCC target(\"avx2,fma,f16c\")")
#define VT_AVX2_END _Pragma("GCC pop_options")
#define VT_AVX512_BEGIN _Pragma("GCC push_options") _Pragma("GCC target(\"avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c\")")
#define VT_AVX512_END _Pragma("GCC pop_options")
#endif
#else
#define VT_X86 0
#define VT_AVX2_BEGIN
#define VT_AVX2_END
#define VT_AVX512_BEGIN
#define VT_AVX512_END
#endif

namespace vt {

// Kernel levels, each a superset of the one before. The level in use is the best the CPU has,
// capped by VT_SIMD=scalar|avx2|avx512 at start or set_simd_level() at run time (tests cover
// every level this way).
enum class SimdLevel : int { Scalar = 0, Avx2 = 1, Avx512 = 2 };

struct CpuFeatures {
  bool sse42 = false, avx = false, avx2 = false, fma = false, f16c = false;
  bool avx512f = false, avx512bw = false, avx512vl = false, avx512dq = false;
  // VDPBF16PS and the bf16 conversions (Cooper Lake, Sapphire Rapids, Zen 4): the bf16 GEMM's
  // kernels (gemm_bf16.h) run at the Avx512 level when it is set.
  bool avx512bf16 = false;
  SimdLevel best = SimdLevel::Scalar;   // what the CPU supports
  SimdLevel level = SimdLevel::Scalar;  // what kernels use now
  // Shorthands for the dispatchers: use_avx2 holds at level >= Avx2, use_avx512 at Avx512.
  bool use_avx2 = false, use_avx512 = false;
};

const CpuFeatures& cpu();
// Caps the kernel level (at most the CPU's best); returns the previous level.
SimdLevel set_simd_level(SimdLevel want);
const char* simd_level_name(SimdLevel l);
// Force the scalar paths (true) or the best level (false). Returns whether scalar was forced.
bool set_force_scalar(bool on);

}  // namespace vt
