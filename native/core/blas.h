// The optional external BLAS (OpenBLAS when the build found it, VT_HAVE_OPENBLAS).
#pragma once
#include <cstdint>

namespace vt {

bool blas_available();
const char* blas_name();  // "OpenBLAS 0.3.21 ... (core Haswell)" or "none"
void blas_set_threads(int n);
// Row-major C = alpha * op(A) op(B) + beta * C through the BLAS. Only call when available.
void blas_sgemm(bool transA, bool transB, int64_t M, int64_t N, int64_t K, float alpha, const float* A, int64_t lda,
                const float* B, int64_t ldb, float beta, float* C, int64_t ldc);

// The instruction set of the kernels OpenBLAS chose at load (from its core name: its own CPU
// detection, or OPENBLAS_CORETYPE when the environment pins one). Unknown: no BLAS, or a core
// name this table does not list.
enum class BlasKernels { Unknown, Sse, Avx, Avx2, Avx512 };
BlasKernels blas_kernels();
const char* blas_core();            // OpenBLAS's core name ("SkylakeX", "Haswell", ...) or "none"
const char* blas_kernels_name(BlasKernels k);
// OPENBLAS_CORETYPE as the process environment had it (nullptr when unset). OpenBLAS reads it
// once, when it loads; the package never sets or changes it.
const char* blas_coretype_env();

}  // namespace vt
