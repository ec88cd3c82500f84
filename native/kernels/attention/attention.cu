// CUDA fused attention (flash.h): the same semantics as the CPU path, with the per-row online
// softmax and gradient steps shared through flash_math.h. Forward: one thread per (query, head)
// streams the visible keys with an online softmax (no score matrix). Backward: dq by one thread
// per (query, head); dk and dv by one thread per (key, kv head), which owns its rows (no
// atomics), each recomputing probabilities from lse.
#include <cuda_runtime.h>

#include <stdexcept>
#include <string>
#include <vector>

#include "../../core/cuda_api.h"
#include "attention.h"
#include "attention_math.h"

namespace vt {
namespace {

constexpr int kMaxD = 256;

void check(cudaError_t e, const char* what) {
  if (e != cudaSuccess) throw std::runtime_error(std::string("attention on CUDA: ") + what + ": " + cudaGetErrorString(e));
}

// Segment of a token (binary search over the prefix sums).
__device__ int segment_of(const int* cu, int B, long long t) {
  int lo = 0, hi = B;
  while (hi - lo > 1) {
    const int mid = (lo + hi) / 2;
    if (cu[mid] <= t) lo = mid; else hi = mid;
  }
  return lo;
}

__device__ float dot(const float* a, const float* b, int D) {
  float s = 0;
  for (int t = 0; t < D; ++t) s += a[t] * b[t];
  return s;
}

// The query row of thread idx = (token, head): its kv head, its segment's first key, and how many
// keys it sees.
struct QueryRow {
  int g;
  long long k0, lim;
};

__device__ QueryRow query_row(const AttnArgs& a, const int* cu_q, const int* cu_k, long long idx) {
  const long long tq = idx / a.Hq;
  const int h = int(idx % a.Hq);
  const int b = segment_of(cu_q, int(a.B), tq);
  const long long Lq = cu_q[b + 1] - cu_q[b], Lk = cu_k[b + 1] - cu_k[b];
  return {int(h / (a.Hq / a.Hkv)), cu_k[b], visible_keys(tq - cu_q[b], Lq, Lk, a.causal)};
}

__global__ void fwd_kernel(AttnArgs a, const int* cu_q, const int* cu_k, float* out, float* lse) {
  const long long idx = blockIdx.x * (long long)blockDim.x + threadIdx.x;
  if (idx >= a.Tq * a.Hq) return;
  const QueryRow row = query_row(a, cu_q, cu_k, idx);
  const int D = int(a.D), g = row.g;
  const long long k0 = row.k0, lim = row.lim;
  const float* q = a.q + idx * D;
  float acc[kMaxD];
  for (int t = 0; t < D; ++t) acc[t] = 0;
  OnlineRow r{-INFINITY, 0.0f};
  for (long long j = 0; j < lim; ++j) {
    const float* k = a.k + ((k0 + j) * a.Hkv + g) * D;
    const float s = dot(q, k, D) * a.scale;
    const float alpha = online_rescale(r, s);
    const float p = online_weight(r, s);
    r.l += p;
    const float* v = a.v + ((k0 + j) * a.Hkv + g) * D;
    for (int t = 0; t < D; ++t) acc[t] = acc[t] * alpha + p * v[t];
  }
  const float inv = r.l > 0.0f ? 1.0f / r.l : 0.0f;
  for (int t = 0; t < D; ++t) out[idx * D + t] = acc[t] * inv;
  lse[idx] = online_lse(r);
}

__global__ void drow_kernel(const float* out, const float* dout, long long rows, int D, float* drow) {
  const long long r = blockIdx.x * (long long)blockDim.x + threadIdx.x;
  if (r < rows) drow[r] = dot(out + r * D, dout + r * D, D);
}

__global__ void dq_kernel(AttnArgs a, const int* cu_q, const int* cu_k, const float* lse, const float* dout,
                          const float* drow, float* dq) {
  const long long idx = blockIdx.x * (long long)blockDim.x + threadIdx.x;
  if (idx >= a.Tq * a.Hq) return;
  const QueryRow row = query_row(a, cu_q, cu_k, idx);
  const int D = int(a.D), g = row.g;
  const long long k0 = row.k0, lim = row.lim;
  const float* q = a.q + idx * D;
  const float* dO = dout + idx * D;
  float acc[kMaxD];
  for (int t = 0; t < D; ++t) acc[t] = 0;
  for (long long j = 0; j < lim; ++j) {
    const float* k = a.k + ((k0 + j) * a.Hkv + g) * D;
    const float* v = a.v + ((k0 + j) * a.Hkv + g) * D;
    const float p = recompute_p(dot(q, k, D) * a.scale, lse[idx]);
    const float ds = score_grad(p, dot(dO, v, D), drow[idx]);
    for (int t = 0; t < D; ++t) acc[t] += ds * k[t];
  }
  for (int t = 0; t < D; ++t) dq[idx * D + t] = acc[t] * a.scale;
}

__global__ void dkv_kernel(AttnArgs a, const int* cu_q, const int* cu_k, const float* lse, const float* dout,
                           const float* drow, float* dk, float* dv) {
  const long long idx = blockIdx.x * (long long)blockDim.x + threadIdx.x;
  if (idx >= a.Tk * a.Hkv) return;
  const long long tk = idx / a.Hkv;
  const int g = int(idx % a.Hkv), D = int(a.D), group = int(a.Hq / a.Hkv);
  const int b = segment_of(cu_k, int(a.B), tk);
  const long long jk = tk - cu_k[b], q0 = cu_q[b], Lq = cu_q[b + 1] - cu_q[b], Lk = cu_k[b + 1] - cu_k[b];
  const float* k = a.k + idx * D;
  const float* v = a.v + idx * D;
  float ak[kMaxD], av[kMaxD];
  for (int t = 0; t < D; ++t) ak[t] = av[t] = 0;
  for (int h = g * group; h < (g + 1) * group; ++h) {
    for (long long iq = 0; iq < Lq; ++iq) {
      if (jk >= visible_keys(iq, Lq, Lk, a.causal)) continue;
      const long long r = (q0 + iq) * a.Hq + h;
      const float* q = a.q + r * D;
      const float* dO = dout + r * D;
      const float p = recompute_p(dot(q, k, D) * a.scale, lse[r]);
      const float ds = score_grad(p, dot(dO, v, D), drow[r]);
      for (int t = 0; t < D; ++t) {
        av[t] += p * dO[t];
        ak[t] += ds * q[t];
      }
    }
  }
  for (int t = 0; t < D; ++t) {
    dk[idx * D + t] = ak[t] * a.scale;
    dv[idx * D + t] = av[t];
  }
}

struct Dev {
  void* p;
  int device;
  Dev(size_t bytes, int d) : device(d) {
    p = cuda_malloc(bytes ? bytes : 1, d);
    if (!p) throw std::runtime_error("attention on CUDA: out of device memory");
  }
  ~Dev() { cuda_free(p, device); }
};

// The host prefix sums, copied to the device.
struct DevCu {
  Dev q, k;
  DevCu(const AttnArgs& a, int device) : q(size_t(a.B + 1) * 4, device), k(size_t(a.B + 1) * 4, device) {
    cuda_memcpy(q.p, a.cu_q, size_t(a.B + 1) * 4);
    cuda_memcpy(k.p, a.cu_k, size_t(a.B + 1) * 4);
  }
};

unsigned blocks(long long n) { return unsigned((n + 127) / 128); }

void require_d(const AttnArgs& a) {
  if (a.D > kMaxD) throw std::runtime_error("attention on CUDA: head size above 256 is not supported");
}

}  // namespace

void attention_forward_cuda(const AttnArgs& a, float* out, float* lse, int device) {
  require_d(a);
  check(cudaSetDevice(device), "cudaSetDevice");
  if (a.Tq * a.Hq == 0) return;
  DevCu cu(a, device);
  fwd_kernel<<<blocks(a.Tq * a.Hq), 128>>>(a, static_cast<int*>(cu.q.p), static_cast<int*>(cu.k.p), out, lse);
  check(cudaGetLastError(), "launch");
  check(cudaDeviceSynchronize(), "attention forward");
}

void attention_backward_cuda(const AttnArgs& a, const float* out, const float* lse, const float* dout, float* dq,
                             float* dk, float* dv, int device) {
  require_d(a);
  check(cudaSetDevice(device), "cudaSetDevice");
  DevCu cu(a, device);
  Dev drow(size_t(a.Tq * a.Hq) * 4, device);
  float* dr = static_cast<float*>(drow.p);
  if (a.Tq * a.Hq > 0) {
    drow_kernel<<<blocks(a.Tq * a.Hq), 128>>>(out, dout, a.Tq * a.Hq, int(a.D), dr);
    dq_kernel<<<blocks(a.Tq * a.Hq), 128>>>(a, static_cast<int*>(cu.q.p), static_cast<int*>(cu.k.p), lse, dout, dr, dq);
  }
  if (a.Tk * a.Hkv > 0)
    dkv_kernel<<<blocks(a.Tk * a.Hkv), 128>>>(a, static_cast<int*>(cu.q.p), static_cast<int*>(cu.k.p), lse, dout, dr, dk, dv);
  check(cudaGetLastError(), "launch");
  check(cudaDeviceSynchronize(), "attention backward");
}

}  // namespace vt
