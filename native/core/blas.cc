#include "blas.h"

#include <cstdlib>
#include <cstring>
#include <mutex>
#include <string>

#ifdef VT_HAVE_OPENBLAS
#include <cblas.h>
#endif

namespace vt {

#ifdef VT_HAVE_OPENBLAS
namespace {

// OpenBLAS core names (0.3.21 and later) by the instruction set of their SGEMM kernels.
// Anything not listed is Unknown and ranks below every builtin level but scalar.
BlasKernels kernels_of(const char* core) {
  if (!core) return BlasKernels::Unknown;
  static const char* const avx512[] = {"SkylakeX", "Cooperlake", "SapphireRapids"};
  static const char* const avx2[] = {"Haswell", "Zen", "Excavator", "Skylake"};
  static const char* const avx[] = {"Sandybridge", "Bulldozer", "Piledriver", "Steamroller"};
  static const char* const sse[] = {"Prescott", "Core2", "Penryn", "Dunnington", "Nehalem", "Atom", "Barcelona",
                                    "Opteron", "Opteron(SSE3)", "Bobcat", "Katmai", "Coppermine", "Northwood",
                                    "Banias", "Athlon", "Nano"};
  for (const char* c : avx512) if (std::strcmp(core, c) == 0) return BlasKernels::Avx512;
  for (const char* c : avx2) if (std::strcmp(core, c) == 0) return BlasKernels::Avx2;
  for (const char* c : avx) if (std::strcmp(core, c) == 0) return BlasKernels::Avx;
  for (const char* c : sse) if (std::strcmp(core, c) == 0) return BlasKernels::Sse;
  return BlasKernels::Unknown;
}

}  // namespace
#endif

const char* blas_kernels_name(BlasKernels k) {
  switch (k) {
    case BlasKernels::Avx512: return "AVX-512";
    case BlasKernels::Avx2: return "AVX2";
    case BlasKernels::Avx: return "AVX";
    case BlasKernels::Sse: return "SSE";
    case BlasKernels::Unknown: return "unknown";
  }
  return "unknown";
}

const char* blas_coretype_env() {
  static const char* env = [] {
    const char* e = std::getenv("OPENBLAS_CORETYPE");
    return e && *e ? e : nullptr;
  }();
  return env;
}

#ifdef VT_HAVE_OPENBLAS
// OpenBLAS is used exactly as it loaded. An earlier version re-initialised it with the SkylakeX
// or Haswell kernel set when it had fallen back to its SSE3 kernels on a CPU it did not know;
// but that fallback is how old OpenBLAS builds protect themselves on processors whose kernels
// they never ran on (the reason environments pin OPENBLAS_CORETYPE at all), so forcing a set it
// had not matched to the CPU risked wrong results. The GEMM choice (gemm.cc) routes around a slow
// kernel set instead: the builtin GEMM runs at the CPU's own SIMD level.
bool blas_available() { return true; }
const char* blas_core() {
  const char* c = openblas_get_corename();
  return c ? c : "?";
}
BlasKernels blas_kernels() {
  static const BlasKernels k = kernels_of(openblas_get_corename());
  return k;
}
const char* blas_name() {
  static const std::string name = std::string(openblas_get_config()) + " (core " + blas_core() + ")";
  return name.c_str();
}
void blas_set_threads(int n) { openblas_set_num_threads(n); }
void blas_sgemm(bool transA, bool transB, int64_t M, int64_t N, int64_t K, float alpha, const float* A, int64_t lda,
                const float* B, int64_t ldb, float beta, float* C, int64_t ldc) {
  // Async calls run on several libuv threads; OpenBLAS's pthread server is shared by all of them,
  // and it uses every core already, so calls take turns rather than trusting its build's locking.
  static std::mutex m;
  std::lock_guard<std::mutex> lock(m);
  cblas_sgemm(CblasRowMajor, transA ? CblasTrans : CblasNoTrans, transB ? CblasTrans : CblasNoTrans, blasint(M),
              blasint(N), blasint(K), alpha, A, blasint(lda), B, blasint(ldb), beta, C, blasint(ldc));
}
#else
bool blas_available() { return false; }
const char* blas_core() { return "none"; }
BlasKernels blas_kernels() { return BlasKernels::Unknown; }
const char* blas_name() { return "none"; }
void blas_set_threads(int) {}
void blas_sgemm(bool, bool, int64_t, int64_t, int64_t, float, const float*, int64_t, const float*, int64_t, float,
                float*, int64_t) {}
#endif

}  // namespace vt
