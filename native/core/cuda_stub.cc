// The CUDA API of a build without nvcc: nothing is compiled in, no device exists.
#include <stdexcept>

#include "cuda_api.h"

namespace vt {

bool cuda_compiled() { return false; }
std::string cuda_runtime_version() { return ""; }
std::vector<int> cuda_architectures() { return {}; }
std::vector<CudaDeviceInfo> cuda_devices() { return {}; }
void* cuda_malloc(size_t, int) { return nullptr; }
void cuda_free(void*, int) {}
void cuda_memset(void*, int, size_t, int) { throw std::runtime_error("CUDA is not compiled into this build"); }
void cuda_memcpy(void*, const void*, size_t) { throw std::runtime_error("CUDA is not compiled into this build"); }
void cuda_cast(const void*, DType, void*, DType, size_t, int) {
  throw std::runtime_error("CUDA is not compiled into this build");
}
void cuda_sgemm(bool, bool, long long, long long, long long, float, const float*, long long, const float*, long long,
                float, float*, long long, int) {
  throw std::runtime_error("CUDA is not compiled into this build");
}

}  // namespace vt
