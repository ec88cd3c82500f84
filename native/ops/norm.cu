// RMSNorm on CUDA (norm.h): one block per row; the row sums reduce in a fixed tree order, the
// element math is norm_math.h's, as on the CPU.
#include "norm.h"
#include "norm_math.h"
#include "ops_cuda.h"

namespace vt {
namespace {
constexpr int kThreads = 256;

__device__ double block_sum(double v) {
  __shared__ double sm[kThreads];
  sm[threadIdx.x] = v;
  __syncthreads();
  for (int w = kThreads / 2; w > 0; w >>= 1) {
    if (threadIdx.x < w) sm[threadIdx.x] += sm[threadIdx.x + w];
    __syncthreads();
  }
  const double r = sm[0];
  __syncthreads();
  return r;
}

__global__ void forward_kernel(float* y, float* rstd, const float* x, const float* w, float eps, long long C) {
  const float* xr = x + blockIdx.x * C;
  double s = 0.0;
  for (long long c = threadIdx.x; c < C; c += kThreads) s += double(xr[c]) * xr[c];
  const float r = rms_rstd(block_sum(s), C, eps);
  if (rstd && threadIdx.x == 0) rstd[blockIdx.x] = r;
  for (long long c = threadIdx.x; c < C; c += kThreads) y[blockIdx.x * C + c] = rms_forward_elem(xr[c], r, w ? w[c] : 1.0f);
}

__global__ void backward_dx_kernel(float* dx, const float* dy, const float* x, const float* rstd, const float* w,
                                   long long C, bool acc) {
  const float* xr = x + blockIdx.x * C;
  const float* gr = dy + blockIdx.x * C;
  double m = 0.0;
  for (long long c = threadIdx.x; c < C; c += kThreads) m += double(gr[c]) * (w ? w[c] : 1.0f) * xr[c];
  m = block_sum(m) / double(C);
  const float r = rstd[blockIdx.x];
  for (long long c = threadIdx.x; c < C; c += kThreads) {
    const float v = rms_backward_elem(gr[c], w ? w[c] : 1.0f, xr[c], r, m);
    dx[blockIdx.x * C + c] = acc ? dx[blockIdx.x * C + c] + v : v;
  }
}

// One thread per channel, rows in order (deterministic).
__global__ void backward_dw_kernel(float* dw, const float* dy, const float* x, const float* rstd, long long T, long long C) {
  const long long c = blockIdx.x * blockDim.x + threadIdx.x;
  if (c >= C) return;
  double s = 0.0;
  for (long long t = 0; t < T; t++) s += double(dy[t * C + c]) * x[t * C + c] * rstd[t];
  dw[c] += float(s);
}
}  // namespace

void rmsnorm_forward_cuda(float* y, float* rstd, const float* x, const float* w, float eps, int64_t T, int64_t C,
                          int device) {
  if (T <= 0) return;
  opscuda::check(cudaSetDevice(device), "rmsnorm");
  forward_kernel<<<unsigned(T), kThreads>>>(y, rstd, x, w, eps, C);
  opscuda::finish("rmsnorm");
}

void rmsnorm_backward_cuda(float* dx, float* dw, const float* dy, const float* x, const float* rstd, const float* w,
                           int64_t T, int64_t C, bool accumulate_dx, int device) {
  if (T <= 0) return;
  opscuda::check(cudaSetDevice(device), "rmsnorm backward");
  if (dx) backward_dx_kernel<<<unsigned(T), kThreads>>>(dx, dy, x, rstd, w, C, accumulate_dx);
  if (dw) backward_dw_kernel<<<opscuda::blocks(C, 128), 128>>>(dw, dy, x, rstd, T, C);
  opscuda::finish("rmsnorm backward");
}

}  // namespace vt
