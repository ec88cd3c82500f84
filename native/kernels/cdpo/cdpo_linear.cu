// linearCdpo on a CUDA device. The GPU has the memory to cache the logits of many tokens (1 GiB by
// default: all 256 tokens of a Qwen2.5 head at once), so the pass is: logits by the foundation's
// SGEMM, a row kernel for log-sum-exp and the gathered log-probs, the loss and its gradient by
// cdpo_loss_cuda (the same per-token math as the CPU, cdpo_math.h), dLogits in place, then
// dHidden and dWeight by SGEMM. When the tokens need several blocks, a forward-only first pass
// gathers every log-prob and each block's logits are recomputed.
#include <cuda_runtime.h>

#include <algorithm>
#include <stdexcept>
#include <string>
#include <vector>

#include "../../core/cuda_api.h"
#include "cdpo_linear.h"

namespace vt {
namespace {

constexpr int kThreads = 256;

void check(cudaError_t e, const char* what) {
  if (e != cudaSuccess) throw std::runtime_error(std::string("linearCdpo (CUDA): ") + what + ": " + cudaGetErrorString(e));
}

// One block per row r of Z (nb, V): Z <- exp(Z - max), logp = (z_target - max) - log(sum), inv = 1/sum.
__global__ void row_softmax_kernel(float* Z, int64_t V, const int32_t* targets, float* logp, float* inv) {
  __shared__ double sh[kThreads];
  __shared__ float shm[kThreads];
  float* z = Z + int64_t(blockIdx.x) * V;
  const float zt = z[targets[blockIdx.x]];
  float m = -INFINITY;
  for (int64_t v = threadIdx.x; v < V; v += kThreads) m = fmaxf(m, z[v]);
  shm[threadIdx.x] = m;
  __syncthreads();
  for (int s = kThreads / 2; s > 0; s >>= 1) {
    if (int(threadIdx.x) < s) shm[threadIdx.x] = fmaxf(shm[threadIdx.x], shm[threadIdx.x + s]);
    __syncthreads();
  }
  m = shm[0];
  double sum = 0;
  for (int64_t v = threadIdx.x; v < V; v += kThreads) {
    const float e = expf(z[v] - m);
    z[v] = e;
    sum += e;
  }
  sh[threadIdx.x] = sum;
  __syncthreads();
  for (int s = kThreads / 2; s > 0; s >>= 1) {
    if (int(threadIdx.x) < s) sh[threadIdx.x] += sh[threadIdx.x + s];
    __syncthreads();
  }
  if (threadIdx.x == 0) {
    if (logp) logp[blockIdx.x] = float(double(zt - m) - log(sh[0]));
    inv[blockIdx.x] = float(1.0 / sh[0]);
  }
}

// dZ = dlogp / T * (onehot - softmax) over the cached exp(Z - max); grid (chunks, rows).
__global__ void dlogits_kernel(float* Z, int64_t V, const float* dlogp, const float* inv, const int32_t* targets, float invT) {
  const int64_t r = blockIdx.y;
  float* z = Z + r * V;
  const float g = dlogp[r] * invT, a = -g * inv[r];
  const int64_t t = targets[r];
  for (int64_t v = blockIdx.x * int64_t(kThreads) + threadIdx.x; v < V; v += int64_t(gridDim.x) * kThreads)
    z[v] = z[v] * a + (v == t ? g : 0.0f);
}

}  // namespace

CdpoResult linear_cdpo_cuda(float* d_hidden, float* d_weight, float* logp, const LinearCdpoParams& p, int device) {
  check(cudaSetDevice(device), "cudaSetDevice");
  const CdpoParams& lp = p.loss;
  const int64_t N = lp.N, H = p.H, V = p.V;
  const float invT = 1.0f / p.temperature;
  const int64_t cap = std::max<int64_t>(1, std::min<int64_t>(std::max<int64_t>(N, 1), p.cache_bytes / (V * int64_t(sizeof(float)))));
  // workspace: Z (cap, V), inv (cap), dlogp (N), targets (N)
  const size_t zb = size_t(cap * V) * sizeof(float), ib = size_t(cap) * sizeof(float), db = size_t(std::max<int64_t>(N, 1)) * sizeof(float);
  char* ws = static_cast<char*>(cuda_malloc(zb + ib + 2 * db, device));
  if (!ws) throw std::runtime_error("linearCdpo (CUDA): out of device memory for the logit cache");
  struct Free { char* p; int d; ~Free() { cuda_free(p, d); } } guard{ws, device};
  float* Z = reinterpret_cast<float*>(ws);
  float* inv = reinterpret_cast<float*>(ws + zb);
  float* dlogp = reinterpret_cast<float*>(ws + zb + ib);
  int32_t* tg = reinterpret_cast<int32_t*>(ws + zb + ib + db);
  if (N > 0) check(cudaMemcpy(tg, p.targets, size_t(N) * sizeof(int32_t), cudaMemcpyHostToDevice), "copy targets");
  if (N == 0) {
    if (!p.accumulate) check(cudaMemset(d_weight, 0, size_t(V * H) * sizeof(float)), "zero dWeight");
    CdpoParams q = lp;
    q.logp = logp;
    return cdpo_loss_cuda(dlogp, q, device);
  }
  auto forward = [&](int64_t b, int64_t nb, bool gather) {
    cuda_sgemm(false, true, nb, V, H, invT, p.hidden + b * H, H, p.weight, H, 0.0f, Z, V, device);
    row_softmax_kernel<<<unsigned(nb), kThreads>>>(Z, V, tg + b, gather ? logp + b : nullptr, inv);
    check(cudaGetLastError(), "row kernel");
  };
  const int64_t nblocks = (N + cap - 1) / cap;
  if (nblocks > 1)
    for (int64_t b = 0; b < N; b += cap) forward(b, std::min(cap, N - b), true);
  else
    forward(0, N, true);
  CdpoParams q = lp;
  q.logp = logp;
  const CdpoResult res = cdpo_loss_cuda(dlogp, q, device);
  for (int64_t k = 0, b = 0; b < N; ++k, b += cap) {
    const int64_t nb = std::min(cap, N - b);
    if (nblocks > 1) forward(b, nb, false);
    const unsigned chunks = unsigned(std::min<int64_t>(64, (V + kThreads - 1) / kThreads));
    dlogits_kernel<<<dim3(chunks, unsigned(nb)), kThreads>>>(Z, V, dlogp + b, inv, tg + b, invT);
    check(cudaGetLastError(), "dlogits kernel");
    cuda_sgemm(false, false, nb, H, V, 1.0f, Z, V, p.weight, H, 0.0f, d_hidden + b * H, H, device);
    cuda_sgemm(true, false, V, H, nb, 1.0f, Z, V, p.hidden + b * H, H, (k == 0 && !p.accumulate) ? 0.0f : 1.0f, d_weight, H, device);
  }
  check(cudaDeviceSynchronize(), "synchronize");
  return res;
}

}  // namespace vt
