// Rotary embedding on CUDA (rope.h): one thread per rotated pair, rope_math.h's rotation.
#include "ops_cuda.h"
#include "rope.h"
#include "rope_math.h"

namespace vt {
namespace {
__global__ void apply_kernel(float* x, const float* cs, const float* sn, long long T, long long H, long long D,
                             bool inverse) {
  const long long half = D / 2, n = T * H * half;
  for (long long i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (long long)gridDim.x * blockDim.x) {
    const long long k = i % half, th = i / half, t = th / H;
    float* r = x + th * D;
    rope_rotate(r[k], r[k + half], cs[t * half + k], sn[t * half + k], inverse);
  }
}
}  // namespace

void rope_apply_cuda(float* x, const float* cs, const float* sn, int64_t T, int64_t H, int64_t D, bool inverse,
                     int device) {
  if (T <= 0) return;
  opscuda::check(cudaSetDevice(device), "rope");
  apply_kernel<<<opscuda::blocks(T * H * (D / 2), 256), 256>>>(x, cs, sn, T, H, D, inverse);
  opscuda::finish("rope");
}

}  // namespace vt
