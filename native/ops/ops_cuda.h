// Shared helpers of the ops' CUDA files: error checks naming the op, launch sizes.
#pragma once
#include <cuda_runtime.h>

#include <stdexcept>
#include <string>

namespace vt {
namespace opscuda {

inline void check(cudaError_t e, const char* what) {
  if (e != cudaSuccess) throw std::runtime_error(std::string(what) + " on CUDA: " + cudaGetErrorString(e));
}
inline unsigned blocks(long long n, int per) {
  const long long b = (n + per - 1) / per;
  return unsigned(b < 65535 ? (b > 0 ? b : 1) : 65535);
}
// After a launch: surface launch errors, then wait so errors and results belong to this call.
inline void finish(const char* what) {
  check(cudaGetLastError(), what);
  check(cudaDeviceSynchronize(), what);
}

}  // namespace opscuda
}  // namespace vt
