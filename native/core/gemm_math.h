// Per-tile GEMM math shared by the scalar CPU microkernel (gemm.cc, tested with VT_SIMD=scalar)
// and the CUDA SGEMM kernel (cuda_api.cu), so both paths compute each tile the same way.
#pragma once
#include <cstdint>

#include "hostdevice.h"

namespace vt {

// acc[i][j] += sum_k a[k*as + i] * b[k*bs + j]: a register tile of TM x TN over kc steps of k-major
// panels (as, bs: the k strides of the panels, in elements).
template <int TM, int TN>
VT_HD void tile_fma(int64_t kc, const float* a, int64_t as, const float* b, int64_t bs, float (&acc)[TM][TN]) {
  for (int64_t k = 0; k < kc; ++k) {
    float bv[TN];
    for (int j = 0; j < TN; ++j) bv[j] = b[k * bs + j];
    for (int i = 0; i < TM; ++i) {
      const float av = a[k * as + i];
      for (int j = 0; j < TN; ++j) acc[i][j] += av * bv[j];
    }
  }
}

// c = alpha * acc + beta * c for the valid m x n corner of the tile; c is not read when beta == 0.
template <int TM, int TN>
VT_HD void tile_store(const float (&acc)[TM][TN], float* c, int64_t ldc, int m, int n, float alpha, float beta) {
  for (int i = 0; i < TM && i < m; ++i)
    for (int j = 0; j < TN && j < n; ++j) {
      float v = alpha * acc[i][j];
      c[i * ldc + j] = beta == 0.0f ? v : v + beta * c[i * ldc + j];
    }
}

}  // namespace vt
