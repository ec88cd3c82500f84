// The CUDA runtime as the rest of the native code sees it. Implemented by cuda_api.cu when the
// build found nvcc (static cudart), else by cuda_stub.cc. Safe to call on machines without a
// driver or a GPU: cuda_device_count() is then 0.
#pragma once
#include <cstddef>
#include <string>
#include <vector>

#include "dtype.h"

namespace vt {

struct CudaDeviceInfo {
  int index = 0;
  std::string name;
  int major = 0, minor = 0;
  size_t total_memory = 0;
  int multiprocessors = 0;
};

bool cuda_compiled();
std::string cuda_runtime_version();  // "" when not compiled
std::vector<int> cuda_architectures();  // those compiled in, e.g. 75, 80, ...
std::vector<CudaDeviceInfo> cuda_devices();  // empty without a driver or GPU
void* cuda_malloc(size_t bytes, int device);  // nullptr on failure
void cuda_free(void* p, int device);
void cuda_memset(void* p, int value, size_t bytes, int device);
// Copies between host and device memory (kind deduced by the runtime); throws on failure.
void cuda_memcpy(void* dst, const void* src, size_t bytes);
// Element cast on a device buffer (contiguous), same semantics as the CPU cast.
void cuda_cast(const void* src, DType st, void* dst, DType dt, size_t n, int device);
// Row-major C = alpha * op(A) op(B) + beta * C on the device (tiled SGEMM kernel).
void cuda_sgemm(bool transA, bool transB, long long M, long long N, long long K, float alpha, const float* A,
                long long lda, const float* B, long long ldb, float beta, float* C, long long ldc, int device);

}  // namespace vt
