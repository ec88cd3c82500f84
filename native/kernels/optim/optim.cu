// The optimizer family on CUDA (optim.h): grid-stride loops over each segment with optim_math.h's
// element math; the squared norm reduces per block in a fixed order, then on the host.
#include <cuda_runtime.h>

#include <cmath>
#include <stdexcept>
#include <string>
#include <vector>

#include "optim.h"

namespace vt {
namespace {
void check(cudaError_t e, const char* what) {
  if (e != cudaSuccess) throw std::runtime_error(std::string(what) + " on CUDA: " + cudaGetErrorString(e));
}
unsigned blocks(long long n) { long long b = (n + 255) / 256; return unsigned(b < 4096 ? (b > 0 ? b : 1) : 4096); }

__global__ void adamw_kernel(float* p, float* m, float* v, const float* g, long long b, long long n, AdamWScalars s,
                             float decay, float step_size, float inv_sqrt_bc2) {
  for (long long i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (long long)gridDim.x * blockDim.x)
    adamw_elem(p[b + i], m[b + i], v[b + i], g[b + i], s, decay, step_size, inv_sqrt_bc2);
}
__global__ void sumsq_kernel(const float* g, long long n, double* out) {
  __shared__ double sm[256];
  double acc = 0.0;
  for (long long i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (long long)gridDim.x * blockDim.x)
    acc += double(g[i]) * g[i];
  sm[threadIdx.x] = acc;
  __syncthreads();
  for (int w = 128; w > 0; w >>= 1) {
    if (threadIdx.x < w) sm[threadIdx.x] += sm[threadIdx.x + w];
    __syncthreads();
  }
  if (threadIdx.x == 0) out[blockIdx.x] = sm[0];
}
__global__ void scale_kernel(float* g, long long n, float s) {
  for (long long i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (long long)gridDim.x * blockDim.x) g[i] *= s;
}
}  // namespace

void adamw_step_cuda(float* p, float* m, float* v, const float* g, const OptimSegment* segs, int64_t nseg,
                     const AdamWScalars& s, int device) {
  check(cudaSetDevice(device), "adamw");
  const float step_size = float(double(s.lr) / s.bc1), inv_sqrt_bc2 = float(1.0 / std::sqrt(s.bc2));
  for (int64_t i = 0; i < nseg; i++)
    if (segs[i].numel > 0)
      adamw_kernel<<<blocks(segs[i].numel), 256>>>(p, m, v, g, segs[i].offset, segs[i].numel, s,
                                                   1.0f - s.lr * segs[i].weight_decay, step_size, inv_sqrt_bc2);
  check(cudaGetLastError(), "adamw");
  check(cudaDeviceSynchronize(), "adamw");
}

double grad_sumsq_cuda(const float* g, const OptimSegment* segs, int64_t nseg, int device) {
  check(cudaSetDevice(device), "grad norm");
  double total = 0.0;
  double* part = nullptr;
  check(cudaMalloc(&part, 4096 * sizeof(double)), "grad norm");
  std::vector<double> host(4096);
  try {
    for (int64_t i = 0; i < nseg; i++) {
      if (segs[i].numel <= 0) continue;
      const unsigned nb = blocks(segs[i].numel);
      sumsq_kernel<<<nb, 256>>>(g + segs[i].offset, segs[i].numel, part);
      check(cudaGetLastError(), "grad norm");
      check(cudaMemcpy(host.data(), part, nb * sizeof(double), cudaMemcpyDeviceToHost), "grad norm");
      for (unsigned k = 0; k < nb; k++) total += host[k];
    }
  } catch (...) {
    cudaFree(part);
    throw;
  }
  cudaFree(part);
  return total;
}

void grad_scale_cuda(float* g, const OptimSegment* segs, int64_t nseg, float scale, int device) {
  check(cudaSetDevice(device), "grad scale");
  for (int64_t i = 0; i < nseg; i++)
    if (segs[i].numel > 0) scale_kernel<<<blocks(segs[i].numel), 256>>>(g + segs[i].offset, segs[i].numel, scale);
  check(cudaGetLastError(), "grad scale");
  check(cudaDeviceSynchronize(), "grad scale");
}

}  // namespace vt
