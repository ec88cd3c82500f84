// CUDA runtime glue and the foundation's device kernels (cast, SGEMM). Linked with the static
// cudart, so the addon loads on machines without a driver: every entry point first asks the
// runtime for devices and reports none when it cannot get them.
#include <cuda_runtime.h>

#include <stdexcept>
#include <string>

#include "cast_math.h"
#include "gemm_math.h"
#include "cuda_api.h"

namespace vt {
namespace {

void check(cudaError_t e, const char* what) {
  if (e != cudaSuccess) throw std::runtime_error(std::string(what) + ": " + cudaGetErrorString(e));
}

__global__ void cast_kernel(const void* src, DType st, void* dst, DType dt, size_t n) {
  for (size_t i = blockIdx.x * size_t(blockDim.x) + threadIdx.x; i < n; i += size_t(gridDim.x) * blockDim.x)
    store_elem(dst, dt, int64_t(i), load_elem(src, st, int64_t(i)));
}

// Tiled SGEMM: a 64 x 64 block of C per 256 threads, each thread a 4 x 4 register tile computed by
// the same tile_fma the scalar CPU microkernel runs. Tiles of op(A) and op(B) are staged in shared
// memory k-major (the layout tile_fma reads).
constexpr int BM = 64, BN = 64, BK = 16, TM = 4, TN = 4;

__global__ void sgemm_kernel(bool ta, bool tb, long long M, long long N, long long K, float alpha, const float* A,
                             long long lda, const float* B, long long ldb, float beta, float* C, long long ldc) {
  __shared__ float As[BK][BM];
  __shared__ float Bs[BK][BN];
  const int tx = threadIdx.x % (BN / TN), ty = threadIdx.x / (BN / TN);
  const long long m0 = (long long)blockIdx.y * BM, n0 = (long long)blockIdx.x * BN;
  float acc[TM][TN] = {};
  for (long long k0 = 0; k0 < K; k0 += BK) {
    for (int idx = threadIdx.x; idx < BK * BM; idx += blockDim.x) {
      int kk = idx / BM, mm = idx % BM;
      long long gm = m0 + mm, gk = k0 + kk;
      As[kk][mm] = (gm < M && gk < K) ? (ta ? A[gk * lda + gm] : A[gm * lda + gk]) : 0.0f;
    }
    for (int idx = threadIdx.x; idx < BK * BN; idx += blockDim.x) {
      int kk = idx / BN, nn = idx % BN;
      long long gn = n0 + nn, gk = k0 + kk;
      Bs[kk][nn] = (gn < N && gk < K) ? (tb ? B[gn * ldb + gk] : B[gk * ldb + gn]) : 0.0f;
    }
    __syncthreads();
    tile_fma<TM, TN>(BK, &As[0][ty * TM], BM, &Bs[0][tx * TN], BN, acc);
    __syncthreads();
  }
  const long long r = m0 + ty * TM, c = n0 + tx * TN;
  if (r < M && c < N) tile_store<TM, TN>(acc, C + r * ldc + c, ldc, int(M - r), int(N - c), alpha, beta);
}

}  // namespace

bool cuda_compiled() { return true; }

std::string cuda_runtime_version() {
  int v = CUDART_VERSION;
  return std::to_string(v / 1000) + "." + std::to_string((v % 1000) / 10);
}

std::vector<int> cuda_architectures() {
  std::vector<int> out;
#ifdef VT_CUDA_ARCHS
#define VT_STR2(...) #__VA_ARGS__
#define VT_STR(...) VT_STR2(__VA_ARGS__)
  std::string s = VT_STR(VT_CUDA_ARCHS);  // "75_80_86_..." from CMake (nvcc splits -D values at commas)
  size_t p = 0;
  while (p < s.size()) {
    size_t q = s.find('_', p);
    if (q == std::string::npos) q = s.size();
    out.push_back(std::stoi(s.substr(p, q - p)));
    p = q + 1;
  }
#endif
  return out;
}

std::vector<CudaDeviceInfo> cuda_devices() {
  std::vector<CudaDeviceInfo> out;
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    cudaGetLastError();  // no driver or no device: clear the sticky error, report none
    return out;
  }
  for (int i = 0; i < n; ++i) {
    cudaDeviceProp p;
    if (cudaGetDeviceProperties(&p, i) != cudaSuccess) continue;
    CudaDeviceInfo d;
    d.index = i;
    d.name = p.name;
    d.major = p.major;
    d.minor = p.minor;
    d.total_memory = p.totalGlobalMem;
    d.multiprocessors = p.multiProcessorCount;
    out.push_back(d);
  }
  return out;
}

void* cuda_malloc(size_t bytes, int device) {
  void* p = nullptr;
  if (cudaSetDevice(device) != cudaSuccess || cudaMalloc(&p, bytes) != cudaSuccess) {
    cudaGetLastError();
    return nullptr;
  }
  return p;
}

void cuda_free(void* p, int device) {
  if (cudaSetDevice(device) == cudaSuccess) cudaFree(p);
}

void cuda_memset(void* p, int value, size_t bytes, int device) {
  check(cudaSetDevice(device), "cudaSetDevice");
  check(cudaMemset(p, value, bytes), "cudaMemset");
}

void cuda_memcpy(void* dst, const void* src, size_t bytes) {
  check(cudaMemcpy(dst, src, bytes, cudaMemcpyDefault), "cudaMemcpy");
}

void cuda_cast(const void* src, DType st, void* dst, DType dt, size_t n, int device) {
  if (n == 0) return;
  check(cudaSetDevice(device), "cudaSetDevice");
  int blocks = int((n + 255) / 256 < 65535 ? (n + 255) / 256 : 65535);
  cast_kernel<<<blocks, 256>>>(src, st, dst, dt, n);
  check(cudaGetLastError(), "cast kernel launch");
  check(cudaDeviceSynchronize(), "cast kernel");
}

void cuda_sgemm(bool transA, bool transB, long long M, long long N, long long K, float alpha, const float* A,
                long long lda, const float* B, long long ldb, float beta, float* C, long long ldc, int device) {
  if (M <= 0 || N <= 0) return;
  check(cudaSetDevice(device), "cudaSetDevice");
  dim3 grid(unsigned((N + BN - 1) / BN), unsigned((M + BM - 1) / BM));
  sgemm_kernel<<<grid, (BM / TM) * (BN / TN)>>>(transA, transB, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
  check(cudaGetLastError(), "sgemm kernel launch");
  check(cudaDeviceSynchronize(), "sgemm kernel");
}

}  // namespace vt
