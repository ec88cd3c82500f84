#include "simd.h"
#include <atomic>
#include <cstdlib>
#include <cstring>

namespace vt {
namespace {

CpuFeatures detect() {
  CpuFeatures f;
#if VT_X86 && (defined(__GNUC__) || defined(__clang__))
  __builtin_cpu_init();
  f.sse42 = __builtin_cpu_supports("sse4.2");
  f.avx = __builtin_cpu_supports("avx");
  f.avx2 = __builtin_cpu_supports("avx2");
  f.fma = __builtin_cpu_supports("fma");
  f.avx512f = __builtin_cpu_supports("avx512f");
  // __builtin_cpu_supports has no "f16c" on older compilers: every CPU with AVX2 and FMA has it
  // (Haswell, Zen), and no shipping CPU has AVX2 without F16C.
  f.f16c = f.avx2 && f.fma;
#endif
  const char* env = std::getenv("VT_SIMD");
  bool scalar = env && std::strcmp(env, "scalar") == 0;
  f.use_avx2 = f.avx2 && f.fma && f.f16c && !scalar;
  return f;
}

CpuFeatures& features() {
  static CpuFeatures f = detect();
  return f;
}

}  // namespace

const CpuFeatures& cpu() { return features(); }

bool set_force_scalar(bool on) {
  CpuFeatures& f = features();
  bool was = !f.use_avx2;
  f.use_avx2 = !on && f.avx2 && f.fma && f.f16c;
  return was;
}

}  // namespace vt
