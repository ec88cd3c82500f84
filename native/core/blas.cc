#include "blas.h"

#ifdef VT_HAVE_OPENBLAS
#include <cblas.h>

#include <cstdlib>
#include <cstring>
#include <mutex>
#include <string>

#include "simd.h"

// DYNAMIC_ARCH builds of OpenBLAS pick their kernels once, at load. Weak, so a build without
// DYNAMIC_ARCH still links (the pointers are then null and nothing is re-initialised).
extern "C" __attribute__((weak)) void gotoblas_dynamic_init(void);
extern "C" __attribute__((weak)) void gotoblas_dynamic_quit(void);
#endif

namespace vt {

#ifdef VT_HAVE_OPENBLAS
namespace {

// OpenBLAS 0.3.21 (Debian 12) does not know newer CPUs and falls back to its SSE3 "Prescott"
// kernels on them: measured on a virtualised AVX-512 Xeon, 62 GFLOP/s at 1024^3 instead of 320
// with the SkylakeX kernels. When it chose a pre-AVX2 kernel set on a CPU that has AVX2, and the
// user did not choose one (OPENBLAS_CORETYPE), re-initialise it with the matching set.
bool fix_coretype() {
  const char* core = openblas_get_corename();
  static const char* old_cores[] = {"Prescott", "Core2", "Penryn", "Dunnington", "Nehalem", "Sandybridge",
                                    "Atom", "Barcelona", "Opteron", "Opteron(SSE3)", "Bobcat", "Katmai"};
  bool old = false;
  for (const char* c : old_cores) old = old || (core && std::strcmp(core, c) == 0);
  const CpuFeatures& f = cpu();
  if (!old || !(f.avx2 && f.fma) || std::getenv("OPENBLAS_CORETYPE") || !gotoblas_dynamic_init || !gotoblas_dynamic_quit)
    return false;
  setenv("OPENBLAS_CORETYPE", f.avx512f ? "SkylakeX" : "Haswell", 0);
  gotoblas_dynamic_quit();
  gotoblas_dynamic_init();
  unsetenv("OPENBLAS_CORETYPE");
  return true;
}

const std::string& name_string() {
  static const std::string name = [] {
    bool fixed = fix_coretype();
    std::string n = std::string(openblas_get_config());
    const char* core = openblas_get_corename();
    return n + " (core " + (core ? core : "?") + (fixed ? ", chosen by videothinker: OpenBLAS did not know this CPU" : "") + ")";
  }();
  return name;
}

}  // namespace

bool blas_available() { return true; }
const char* blas_name() { return name_string().c_str(); }
void blas_set_threads(int n) {
  name_string();
  openblas_set_num_threads(n);
}
void blas_sgemm(bool transA, bool transB, int64_t M, int64_t N, int64_t K, float alpha, const float* A, int64_t lda,
                const float* B, int64_t ldb, float beta, float* C, int64_t ldc) {
  name_string();  // first use: make sure the kernel set is the right one
  // Async calls run on several libuv threads; OpenBLAS's pthread server is shared by all of them,
  // and it uses every core already, so calls take turns rather than trusting its build's locking.
  static std::mutex m;
  std::lock_guard<std::mutex> lock(m);
  cblas_sgemm(CblasRowMajor, transA ? CblasTrans : CblasNoTrans, transB ? CblasTrans : CblasNoTrans, blasint(M),
              blasint(N), blasint(K), alpha, A, blasint(lda), B, blasint(ldb), beta, C, blasint(ldc));
}
#else
bool blas_available() { return false; }
const char* blas_name() { return "none"; }
void blas_set_threads(int) {}
void blas_sgemm(bool, bool, int64_t, int64_t, int64_t, float, const float*, int64_t, const float*, int64_t, float,
                float*, int64_t) {}
#endif

}  // namespace vt
