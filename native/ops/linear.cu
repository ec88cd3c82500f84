// Linear layer on CUDA (linear.h): the products through the package's tiled SGEMM
// (core/cuda_api.h), the bias add and the bias gradient's column sums as small kernels.
#include "../core/cuda_api.h"
#include "linear.h"
#include "ops_cuda.h"

namespace vt {
namespace {
__global__ void add_bias_kernel(float* y, const float* b, long long T, long long N) {
  for (long long i = blockIdx.x * blockDim.x + threadIdx.x; i < T * N; i += (long long)gridDim.x * blockDim.x)
    y[i] += b[i % N];
}
// One thread per column, rows in order: the same sum in every run.
__global__ void colsum_add_kernel(float* db, const float* dy, long long T, long long N) {
  const long long n = blockIdx.x * blockDim.x + threadIdx.x;
  if (n >= N) return;
  double s = 0.0;
  for (long long t = 0; t < T; t++) s += dy[t * N + n];
  db[n] += float(s);
}
}  // namespace

void linear_forward_cuda(float* y, const float* x, const float* w, const float* b, int64_t T, int64_t K, int64_t N,
                         int device) {
  if (T <= 0 || N <= 0) return;
  cuda_sgemm(false, true, T, N, K, 1.0f, x, K, w, K, 0.0f, y, N, device);
  if (b) {
    opscuda::check(cudaSetDevice(device), "linear");
    add_bias_kernel<<<opscuda::blocks(T * N, 256), 256>>>(y, b, T, N);
    opscuda::finish("linear");
  }
}

void linear_backward_cuda(float* dx, float* dw, float* db, const float* dy, const float* x, const float* w, int64_t T,
                          int64_t K, int64_t N, bool accumulate_dx, int device) {
  if (T <= 0 || N <= 0 || K <= 0) return;
  if (dx) cuda_sgemm(false, false, T, K, N, 1.0f, dy, N, w, K, accumulate_dx ? 1.0f : 0.0f, dx, K, device);
  if (dw) cuda_sgemm(true, false, N, K, T, 1.0f, dy, N, x, K, 1.0f, dw, K, device);
  if (db) {
    opscuda::check(cudaSetDevice(device), "linear backward");
    colsum_add_kernel<<<opscuda::blocks(N, 128), 128>>>(db, dy, T, N);
    opscuda::finish("linear backward");
  }
}

}  // namespace vt
