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
#elif defined(__GNUC__)
#define VT_AVX2_BEGIN _Pragma("GCC push_options") _Pragma("GCC target(\"avx2,fma,f16c\")")
#define VT_AVX2_END _Pragma("GCC pop_options")
#endif
#else
#define VT_X86 0
#define VT_AVX2_BEGIN
#define VT_AVX2_END
#endif

namespace vt {

struct CpuFeatures {
  bool sse42 = false, avx = false, avx2 = false, fma = false, f16c = false, avx512f = false;
  // True when AVX2, FMA and F16C are all present and not disabled by VT_SIMD=scalar.
  bool use_avx2 = false;
};

const CpuFeatures& cpu();
// Force the scalar paths (tests run both). Returns the previous setting.
bool set_force_scalar(bool on);

}  // namespace vt
