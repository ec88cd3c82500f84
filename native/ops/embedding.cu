// Token embedding on CUDA (embedding.h).
#include "embedding.h"
#include "ops_cuda.h"

namespace vt {
namespace {
__global__ void forward_kernel(float* y, const int* ids, const float* table, long long T, long long C) {
  for (long long i = blockIdx.x * blockDim.x + threadIdx.x; i < T * C; i += (long long)gridDim.x * blockDim.x) {
    const long long t = i / C, c = i % C;
    if (ids[t] >= 0) y[i] = table[(long long)ids[t] * C + c];
  }
}
__global__ void backward_kernel(float* dtable, const float* dy, const int* ids, long long T, long long C) {
  for (long long i = blockIdx.x * blockDim.x + threadIdx.x; i < T * C; i += (long long)gridDim.x * blockDim.x) {
    const long long t = i / C, c = i % C;
    if (ids[t] >= 0) atomicAdd(dtable + (long long)ids[t] * C + c, dy[i]);
  }
}
}  // namespace

void embedding_forward_cuda(float* y, const int32_t* ids, const float* table, int64_t T, int64_t C, int device) {
  if (T <= 0) return;
  opscuda::check(cudaSetDevice(device), "embedding");
  forward_kernel<<<opscuda::blocks(T * C, 256), 256>>>(y, ids, table, T, C);
  opscuda::finish("embedding");
}
void embedding_backward_cuda(float* dtable, const float* dy, const int32_t* ids, int64_t T, int64_t C, int device) {
  if (T <= 0) return;
  opscuda::check(cudaSetDevice(device), "embedding backward");
  backward_kernel<<<opscuda::blocks(T * C, 256), 256>>>(dtable, dy, ids, T, C);
  opscuda::finish("embedding backward");
}

}  // namespace vt
