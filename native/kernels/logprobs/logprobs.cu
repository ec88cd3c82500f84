// CUDA log-prob gathering (gather.h): the same semantics as the CPU path, the per-row softmax
// state math shared through gather_math.h. One block of 256 threads per row: each thread folds
// its strided elements into a SoftmaxState, the block merges them in a fixed tree order.
// The fused LM head makes [tokens, chunk] logits tiles with cuda_sgemm and reduces them the
// same way; dWeight and dHidden come from two more cuda_sgemm calls per tile.
#include <cuda_runtime.h>

#include <algorithm>
#include <stdexcept>
#include <string>

#include "../../core/cuda_api.h"
#include "logprobs.h"
#include "logprobs_math.h"

namespace vt {
namespace {

constexpr int kThreads = 256;

void check(cudaError_t e, const char* what) {
  if (e != cudaSuccess) throw std::runtime_error(std::string("log-prob gathering on CUDA: ") + what + ": " + cudaGetErrorString(e));
}

// Block-wide merge of per-thread states (fixed order: deterministic).
__device__ SoftmaxState block_merge(SoftmaxState st) {
  __shared__ double sm[kThreads], ss[kThreads], stt[kThreads];
  sm[threadIdx.x] = st.m;
  ss[threadIdx.x] = st.s;
  stt[threadIdx.x] = st.t;
  __syncthreads();
  for (int w = kThreads / 2; w > 0; w >>= 1) {
    if (threadIdx.x < w) {
      SoftmaxState a{sm[threadIdx.x], ss[threadIdx.x], stt[threadIdx.x]};
      SoftmaxState b{sm[threadIdx.x + w], ss[threadIdx.x + w], stt[threadIdx.x + w]};
      softmax_state_merge(a, b);
      sm[threadIdx.x] = a.m;
      ss[threadIdx.x] = a.s;
      stt[threadIdx.x] = a.t;
    }
    __syncthreads();
  }
  SoftmaxState r{sm[0], ss[0], stt[0]};
  __syncthreads();
  return r;
}

// States of rows of z = x * scale (+ bias * scale): one block per row; writes the row's
// state to states[row * ld_state + col_state] (col_state = chunk index in the fused pass).
__global__ void row_state_kernel(const float* x, long long ldx, long long n, float scale, const float* bias,
                                 SoftmaxState* states, long long ld_state, long long col_state) {
  const float* row = x + blockIdx.x * ldx;
  SoftmaxState st = softmax_state_empty();
  for (long long v = threadIdx.x; v < n; v += kThreads) {
    const double z = double(row[v]) * scale + (bias ? double(bias[v]) * scale : 0.0);
    if (z == -INFINITY) continue;
    SoftmaxState one{z, 1.0, 0.0};
    softmax_state_merge(st, one);
  }
  st = block_merge(st);
  if (threadIdx.x == 0) states[blockIdx.x * ld_state + col_state] = st;
}

// Final per-row results from the merged chunk states (chunk order), z_y from the logits or the
// fused pass's record of it.
__global__ void finish_kernel(const SoftmaxState* states, long long nchunks, const float* zy, long long N, float* logp,
                              float* lse, float* ent) {
  const long long r = blockIdx.x * blockDim.x + threadIdx.x;
  if (r >= N) return;
  SoftmaxState st = softmax_state_empty();
  for (long long c = 0; c < nchunks; ++c) softmax_state_merge(st, states[r * nchunks + c]);
  lse[r] = float(softmax_state_lse(st));
  logp[r] = float(softmax_state_logprob(st, double(zy[r])));
  if (ent) ent[r] = float(softmax_state_entropy(st));
}

__global__ void pick_target_kernel(const float* x, long long ldx, const int* tgt, long long v0, long long n, float scale,
                                   const float* bias, long long N, float* zy) {
  const long long r = blockIdx.x * blockDim.x + threadIdx.x;
  if (r >= N) return;
  const long long y = tgt[r];
  if (y >= v0 && y < v0 + n) zy[r] = x[r * ldx + (y - v0)] * scale + (bias ? bias[y] * scale : 0.0f);
}

// d = g/T * (onehot - p) for rows of x (z = x * scale + bias * scale); d may alias x.
__global__ void row_grad_kernel(const float* x, long long ldx, long long n, long long v0, const int* tgt, float scale,
                                const float* bias, const float* lse, const float* dlogp, float* d, long long ldd) {
  const long long r = blockIdx.x;
  const double l = lse[r];
  const float gs = dlogp[r] * scale;
  const long long y = tgt[r];
  for (long long v = threadIdx.x; v < n; v += kThreads) {
    const float z = x[r * ldx + v] * scale + (bias ? bias[v0 + v] * scale : 0.0f);
    d[r * ldd + v] = (l == -INFINITY || gs == 0.0f) ? 0.0f : gather_grad(z, l, gs, v0 + v == y);
  }
}

__global__ void colsum_kernel(const float* d, long long ldd, long long nrows, long long n, float* out, bool add) {
  const long long j = blockIdx.x * blockDim.x + threadIdx.x;
  if (j >= n) return;
  float s = add ? out[j] : 0.0f;
  for (long long r = 0; r < nrows; ++r) s += d[r * ldd + j];
  out[j] = s;
}

struct DeviceBuf {
  void* p = nullptr;
  int device;
  DeviceBuf(size_t bytes, int dev) : device(dev) {
    p = cuda_malloc(bytes ? bytes : 1, dev);
    if (!p) throw std::runtime_error("log-prob gathering on CUDA: out of device memory");
  }
  ~DeviceBuf() { cuda_free(p, device); }
  template <class T>
  T* as() const { return static_cast<T*>(p); }
};

unsigned grid(long long n, int per) { return unsigned((n + per - 1) / per); }

}  // namespace

void gather_logprobs_cuda(const float* x, int64_t N, int64_t V, int64_t ldx, const int32_t* tgt, float temperature,
                          float* logp, float* lse, float* ent, int device) {
  if (N == 0) return;
  check(cudaSetDevice(device), "cudaSetDevice");
  const float scale = 1.0f / temperature;
  DeviceBuf st(size_t(N) * sizeof(SoftmaxState), device), zy(size_t(N) * 4, device);
  row_state_kernel<<<unsigned(N), kThreads>>>(x, ldx, V, scale, nullptr, st.as<SoftmaxState>(), 1, 0);
  pick_target_kernel<<<grid(N, 256), 256>>>(x, ldx, tgt, 0, V, scale, nullptr, N, zy.as<float>());
  finish_kernel<<<grid(N, 256), 256>>>(st.as<SoftmaxState>(), 1, zy.as<float>(), N, logp, lse, ent);
  check(cudaGetLastError(), "kernel launch");
  check(cudaDeviceSynchronize(), "gather_logprobs");
}

void gather_logprobs_backward_cuda(const float* x, int64_t N, int64_t V, int64_t ldx, const int32_t* tgt,
                                   const float* lse, const float* dlogp, float temperature, float* dx, int device) {
  if (N == 0) return;
  check(cudaSetDevice(device), "cudaSetDevice");
  row_grad_kernel<<<unsigned(N), kThreads>>>(x, ldx, V, 0, tgt, 1.0f / temperature, nullptr, lse, dlogp, dx, V);
  check(cudaGetLastError(), "kernel launch");
  check(cudaDeviceSynchronize(), "gather_logprobs_backward");
}

namespace {
// f32 weight rows [v0, v0 + n): the chunk itself or its conversion into wbuf.
const float* weight_rows(const LinearLogprobsArgs& a, int64_t v0, int64_t n, float* wbuf, int device) {
  if (a.wdtype == DType::F32) return static_cast<const float*>(a.weight) + v0 * a.H;
  cuda_cast(static_cast<const uint16_t*>(a.weight) + v0 * a.H, a.wdtype, wbuf, DType::F32, size_t(n * a.H), device);
  return wbuf;
}
}  // namespace

void linear_logprobs_cuda(const LinearLogprobsArgs& a, float* logp, float* lse, float* ent, int device) {
  if (a.N == 0) return;
  check(cudaSetDevice(device), "cudaSetDevice");
  const int64_t nb = std::min<int64_t>(a.N, 2048), vc = 8192, nch = (a.V + vc - 1) / vc;
  DeviceBuf tile(size_t(nb * vc) * 4, device), st(size_t(nb * nch) * sizeof(SoftmaxState), device), zy(size_t(nb) * 4, device);
  DeviceBuf wbuf(a.wdtype == DType::F32 ? 0 : size_t(vc * a.H) * 4, device);
  for (int64_t t0 = 0; t0 < a.N; t0 += nb) {
    const int64_t m = std::min(nb, a.N - t0);
    for (int64_t c = 0; c < nch; ++c) {
      const int64_t v0 = c * vc, n = std::min(vc, a.V - v0);
      const float* w = weight_rows(a, v0, n, wbuf.as<float>(), device);
      cuda_sgemm(false, true, m, n, a.H, 1.0f, a.hidden + t0 * a.H, a.H, w, a.H, 0.0f, tile.as<float>(), vc, device);
      const float* b = a.bias ? a.bias + v0 : nullptr;
      row_state_kernel<<<unsigned(m), kThreads>>>(tile.as<float>(), vc, n, 1.0f / a.temperature, b, st.as<SoftmaxState>(), nch, c);
      pick_target_kernel<<<grid(m, 256), 256>>>(tile.as<float>(), vc, a.tgt + t0, v0, n, 1.0f / a.temperature, a.bias, m, zy.as<float>());
    }
    finish_kernel<<<grid(m, 256), 256>>>(st.as<SoftmaxState>(), nch, zy.as<float>(), m, logp + t0, lse + t0, ent ? ent + t0 : nullptr);
    check(cudaGetLastError(), "kernel launch");
  }
  check(cudaDeviceSynchronize(), "linear_logprobs");
}

void linear_logprobs_backward_cuda(const LinearLogprobsArgs& a, const float* lse, const float* dlogp, float* dhidden,
                                   float* dweight, float* dbias, bool accumulate, int device) {
  check(cudaSetDevice(device), "cudaSetDevice");
  if (a.N == 0) {
    if (!accumulate) {
      if (dweight) cuda_memset(dweight, 0, size_t(a.V * a.H) * 4, device);
      if (dbias) cuda_memset(dbias, 0, size_t(a.V) * 4, device);
    }
    return;
  }
  const int64_t nb = std::min<int64_t>(a.N, 2048), vc = 8192, nch = (a.V + vc - 1) / vc;
  DeviceBuf tile(size_t(nb * vc) * 4, device);
  DeviceBuf wbuf(a.wdtype == DType::F32 ? 0 : size_t(vc * a.H) * 4, device);
  const float scale = 1.0f / a.temperature;
  for (int64_t t0 = 0; t0 < a.N; t0 += nb) {
    const int64_t m = std::min(nb, a.N - t0);
    const bool first = t0 == 0 && !accumulate;
    for (int64_t c = 0; c < nch; ++c) {
      const int64_t v0 = c * vc, n = std::min(vc, a.V - v0);
      const float* w = weight_rows(a, v0, n, wbuf.as<float>(), device);
      cuda_sgemm(false, true, m, n, a.H, 1.0f, a.hidden + t0 * a.H, a.H, w, a.H, 0.0f, tile.as<float>(), vc, device);
      row_grad_kernel<<<unsigned(m), kThreads>>>(tile.as<float>(), vc, n, v0, a.tgt + t0, scale, a.bias, lse + t0,
                                                 dlogp + t0, tile.as<float>(), vc);
      if (dweight)
        cuda_sgemm(true, false, n, a.H, m, 1.0f, tile.as<float>(), vc, a.hidden + t0 * a.H, a.H, first ? 0.0f : 1.0f,
                   dweight + v0 * a.H, a.H, device);
      if (dbias) colsum_kernel<<<grid(n, 256), 256>>>(tile.as<float>(), vc, m, n, dbias + v0, !first);
      cuda_sgemm(false, false, m, a.H, n, 1.0f, tile.as<float>(), vc, w, a.H, c == 0 ? 0.0f : 1.0f, dhidden + t0 * a.H,
                 a.H, device);
    }
    check(cudaGetLastError(), "kernel launch");
  }
  check(cudaDeviceSynchronize(), "linear_logprobs_backward");
}

}  // namespace vt
