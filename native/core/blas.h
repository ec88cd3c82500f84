// The optional external BLAS (OpenBLAS when the build found it, VT_HAVE_OPENBLAS).
#pragma once
#include <cstdint>

namespace vt {

bool blas_available();
const char* blas_name();  // "openblas 0.3.21 ..." or "none"
void blas_set_threads(int n);
// Row-major C = alpha * op(A) op(B) + beta * C through the BLAS. Only call when available.
void blas_sgemm(bool transA, bool transB, int64_t M, int64_t N, int64_t K, float alpha, const float* A, int64_t lda,
                const float* B, int64_t ldb, float beta, float* C, int64_t ldc);

}  // namespace vt
