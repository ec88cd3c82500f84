#include "simd.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#if VT_X86 && (defined(__GNUC__) || defined(__clang__))
#include <cpuid.h>
#endif

namespace vt {
namespace {

void apply(CpuFeatures& f, SimdLevel want) {
  f.level = SimdLevel(std::min(int(want), int(f.best)));
  f.use_avx2 = f.level >= SimdLevel::Avx2;
  f.use_avx512 = f.level >= SimdLevel::Avx512;
}

CpuFeatures detect() {
  CpuFeatures f;
#if VT_X86 && (defined(__GNUC__) || defined(__clang__))
  __builtin_cpu_init();
  f.sse42 = __builtin_cpu_supports("sse4.2");
  f.avx = __builtin_cpu_supports("avx");
  f.avx2 = __builtin_cpu_supports("avx2");
  f.fma = __builtin_cpu_supports("fma");
  f.avx512f = __builtin_cpu_supports("avx512f");
  f.avx512bw = __builtin_cpu_supports("avx512bw");
  f.avx512vl = __builtin_cpu_supports("avx512vl");
  f.avx512dq = __builtin_cpu_supports("avx512dq");
  // __builtin_cpu_supports has no "f16c" on older compilers: every CPU with AVX2 and FMA has it
  // (Haswell, Zen), and no shipping CPU has AVX2 without F16C.
  f.f16c = f.avx2 && f.fma;
  // AVX512_BF16 is CPUID leaf 7, sub-leaf 1, EAX bit 5 (__builtin_cpu_supports knows it only
  // from GCC 10 / Clang 12); the OS's zmm state is already implied by avx512f above.
  unsigned a = 0, b = 0, c = 0, d = 0;
  if (f.avx512f && __get_cpuid_count(7, 1, &a, &b, &c, &d)) f.avx512bf16 = (a >> 5) & 1u;
#endif
  if (f.avx2 && f.fma && f.f16c) f.best = SimdLevel::Avx2;
  if (f.best == SimdLevel::Avx2 && f.avx512f && f.avx512bw && f.avx512vl && f.avx512dq) f.best = SimdLevel::Avx512;
  SimdLevel want = SimdLevel::Avx512;
  if (const char* env = std::getenv("VT_SIMD")) {
    if (std::strcmp(env, "scalar") == 0) want = SimdLevel::Scalar;
    else if (std::strcmp(env, "avx2") == 0) want = SimdLevel::Avx2;
  }
  apply(f, want);
  return f;
}

CpuFeatures& features() {
  static CpuFeatures f = detect();
  return f;
}

}  // namespace

const CpuFeatures& cpu() { return features(); }

SimdLevel set_simd_level(SimdLevel want) {
  CpuFeatures& f = features();
  SimdLevel was = f.level;
  apply(f, want);
  return was;
}

const char* simd_level_name(SimdLevel l) {
  switch (l) {
    case SimdLevel::Scalar: return "scalar";
    case SimdLevel::Avx2: return "avx2";
    case SimdLevel::Avx512: return "avx512";
  }
  return "?";
}

bool set_force_scalar(bool on) {
  bool was = cpu().level == SimdLevel::Scalar;
  set_simd_level(on ? SimdLevel::Scalar : SimdLevel::Avx512);
  return was;
}

}  // namespace vt
