// CUDA path of the CDPO loss: the per-token math of cdpo_math.h in double, as on the CPU.
//   1. (sequence level) one block per completion: rho_i, pol_i, dpol_i from the mean log-ratio
//   2. a fixed grid of token blocks: dlogp, and per-block partial sums (tree order fixed)
//   3. one block adds the partials in block order
// The grid size depends only on N, so the loss is deterministic for a given input.
#include <cuda_runtime.h>

#include <algorithm>
#include <stdexcept>
#include <string>

#include "../../core/cuda_api.h"
#include "cdpo.h"

namespace vt {
namespace {

constexpr int kThreads = 256;
constexpr int kMaxBlocks = 1024;

void check(cudaError_t e, const char* what) {
  if (e != cudaSuccess) throw std::runtime_error(std::string("cdpoLoss (CUDA): ") + what + ": " + cudaGetErrorString(e));
}

// Block sum of kNumCdpoSums values per thread into out (thread 0 writes).
__device__ void block_sums(double (*sh)[kThreads], const double* v, double* out) {
  for (int j = 0; j < kNumCdpoSums; ++j) sh[j][threadIdx.x] = v[j];
  __syncthreads();
  for (int s = kThreads / 2; s > 0; s >>= 1) {
    if (int(threadIdx.x) < s)
      for (int j = 0; j < kNumCdpoSums; ++j) sh[j][threadIdx.x] += sh[j][threadIdx.x + s];
    __syncthreads();
  }
  if (threadIdx.x == 0)
    for (int j = 0; j < kNumCdpoSums; ++j) out[j] = sh[j][0];
}

__global__ void seq_kernel(double* seq, const float* logp, const float* old, const float* adv, const int32_t* off,
                           CdpoConst<double> c) {
  __shared__ double sh[kThreads];
  const int64_t i = blockIdx.x, t0 = off[i], t1 = off[i + 1];
  double s = 0;
  // On-policy: 0 * logp (NaN for a NaN / infinite log-prob, as on the CPU).
  for (int64_t t = t0 + threadIdx.x; t < t1; t += kThreads) s += old ? double(logp[t]) - double(old[t]) : 0.0 * double(logp[t]);
  sh[threadIdx.x] = s;
  __syncthreads();
  for (int k = kThreads / 2; k > 0; k >>= 1) {
    if (int(threadIdx.x) < k) sh[threadIdx.x] += sh[threadIdx.x + k];
    __syncthreads();
  }
  if (threadIdx.x == 0) {
    const double rho = exp(t1 > t0 ? sh[0] / double(t1 - t0) : 0.0);
    double pol, dpol;
    cdpo_policy(rho, double(adv[i]), c, &pol, &dpol);
    seq[3 * i] = rho;
    seq[3 * i + 1] = pol;
    seq[3 * i + 2] = dpol;
  }
}

struct TokenArgs {
  float* dlogp;
  const float *logp, *old, *ref, *bias, *adv;
  const int32_t* off;
  const double* seq;  // (3B) at sequence level, else nullptr
  int64_t N, B;
  CdpoLossType type;
  double norm;
  CdpoConst<double> c;
};

__global__ void token_kernel(TokenArgs a, double* partial) {
  __shared__ double sh[kNumCdpoSums][kThreads];
  double s[kNumCdpoSums] = {};
  for (int64_t t = blockIdx.x * int64_t(kThreads) + threadIdx.x; t < a.N; t += int64_t(gridDim.x) * kThreads) {
    // completion i with off[i] <= t < off[i + 1]
    int64_t lo = 0, hi = a.B;
    while (hi - lo > 1) {
      const int64_t mid = (lo + hi) / 2;
      if (a.off[mid] <= t) lo = mid; else hi = mid;
    }
    const int64_t i = lo;
    const double w = cdpo_weight(a.type, a.B, int64_t(a.off[i + 1] - a.off[i]), a.N, a.norm);
    const double lp = a.logp[t], adv = a.adv[i];
    double rho, pol, dpol;
    if (a.seq) {
      rho = a.seq[3 * i];
      pol = a.seq[3 * i + 1];
      dpol = a.seq[3 * i + 2];
    } else {
      rho = a.old ? exp(lp - double(a.old[t])) : 1.0 + 0.0 * lp;  // NaN-preserving on-policy ratio (cdpo_cpu.cc)
      cdpo_policy(rho, adv, a.c, &pol, &dpol);
    }
    const CdpoToken<double> tok = cdpo_token(lp, rho, pol, dpol, a.ref != nullptr, a.ref ? double(a.ref[t]) : 0.0,
                                             a.bias != nullptr, a.bias ? double(a.bias[t]) : 0.0, a.c);
    a.dlogp[t] = float(w * tok.dlogp);
    cdpo_accumulate(s, tok, w, rho, adv, a.c);
  }
  block_sums(sh, s, partial + size_t(blockIdx.x) * kNumCdpoSums);
}

__global__ void final_kernel(const double* partial, int nblocks, double* out) {
  __shared__ double sh[kNumCdpoSums][kThreads];
  double s[kNumCdpoSums] = {};
  for (int b = threadIdx.x; b < nblocks; b += kThreads)
    for (int j = 0; j < kNumCdpoSums; ++j) s[j] += partial[size_t(b) * kNumCdpoSums + j];
  block_sums(sh, s, out);
}

}  // namespace

CdpoResult cdpo_loss_cuda(float* dlogp, const CdpoParams& p, int device) {
  check(cudaSetDevice(device), "cudaSetDevice");
  const int64_t N = p.N, B = p.B;
  const int nblocks = int(std::max<int64_t>(1, std::min<int64_t>(kMaxBlocks, (N + kThreads - 1) / kThreads)));
  // One device workspace: offsets (B+1 ints, padded to 8 bytes), seq (3B), partials, result.
  const size_t off_bytes = (size_t(B + 1) * sizeof(int32_t) + 7) / 8 * 8;
  const size_t seq_n = p.seq_level ? size_t(3 * B) : 0;
  const size_t bytes = off_bytes + (seq_n + size_t(nblocks + 1) * kNumCdpoSums) * sizeof(double);
  char* ws = static_cast<char*>(cuda_malloc(bytes, device));
  if (!ws) throw std::runtime_error("cdpoLoss (CUDA): out of device memory for the workspace");
  struct Free { char* p; int d; ~Free() { cuda_free(p, d); } } guard{ws, device};
  int32_t* d_off = reinterpret_cast<int32_t*>(ws);
  double* d_seq = reinterpret_cast<double*>(ws + off_bytes);
  double* d_part = d_seq + seq_n;
  double* d_out = d_part + size_t(nblocks) * kNumCdpoSums;
  check(cudaMemcpy(d_off, p.offsets, size_t(B + 1) * sizeof(int32_t), cudaMemcpyHostToDevice), "copy offsets");
  const CdpoConst<double> c = p.consts();
  if (p.seq_level) seq_kernel<<<unsigned(B), kThreads>>>(d_seq, p.logp, p.old_logp, p.adv, d_off, c);
  TokenArgs a{dlogp, p.logp, p.old_logp, p.ref_logp, p.bias_logp, p.adv, d_off, p.seq_level ? d_seq : nullptr,
              N, B, p.loss_type, p.norm, c};
  token_kernel<<<unsigned(nblocks), kThreads>>>(a, d_part);
  final_kernel<<<1, kThreads>>>(d_part, nblocks, d_out);
  check(cudaGetLastError(), "launch");
  double sums[kNumCdpoSums];
  check(cudaMemcpy(sums, d_out, sizeof sums, cudaMemcpyDeviceToHost), "copy the result");
  return cdpo_result(sums, N);
}

}  // namespace vt
