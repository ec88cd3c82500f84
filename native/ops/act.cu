// Activations on CUDA (act.h): grid-stride loops over act_math.h's element math.
#include "act.h"
#include "act_math.h"
#include "ops_cuda.h"

namespace vt {
namespace {
#define VT_GRID_LOOP(i, n) for (long long i = blockIdx.x * blockDim.x + threadIdx.x; i < (n); i += (long long)gridDim.x * blockDim.x)
__global__ void swiglu_kernel(float* y, const float* g, const float* u, long long n) {
  VT_GRID_LOOP(i, n) y[i] = swiglu_elem(g[i], u[i]);
}
__global__ void swiglu_grad_kernel(float* dg, float* du, const float* dy, const float* g, const float* u, long long n) {
  VT_GRID_LOOP(i, n) {
    float a, b;
    swiglu_grad_elem(dy[i], g[i], u[i], a, b);
    dg[i] = a;
    du[i] = b;
  }
}
__global__ void gelu_kernel(float* y, const float* x, long long n) {
  VT_GRID_LOOP(i, n) y[i] = gelu_elem(x[i]);
}
__global__ void gelu_grad_kernel(float* dx, const float* dy, const float* x, long long n) {
  VT_GRID_LOOP(i, n) dx[i] = gelu_grad_elem(dy[i], x[i]);
}
#undef VT_GRID_LOOP
}  // namespace

void swiglu_forward_cuda(float* y, const float* g, const float* u, int64_t n, int device) {
  opscuda::check(cudaSetDevice(device), "swiglu");
  swiglu_kernel<<<opscuda::blocks(n, 256), 256>>>(y, g, u, n);
  opscuda::finish("swiglu");
}
void swiglu_backward_cuda(float* dg, float* du, const float* dy, const float* g, const float* u, int64_t n, int device) {
  opscuda::check(cudaSetDevice(device), "swiglu backward");
  swiglu_grad_kernel<<<opscuda::blocks(n, 256), 256>>>(dg, du, dy, g, u, n);
  opscuda::finish("swiglu backward");
}
void gelu_forward_cuda(float* y, const float* x, int64_t n, int device) {
  opscuda::check(cudaSetDevice(device), "gelu");
  gelu_kernel<<<opscuda::blocks(n, 256), 256>>>(y, x, n);
  opscuda::finish("gelu");
}
void gelu_backward_cuda(float* dx, const float* dy, const float* x, int64_t n, int device) {
  opscuda::check(cudaSetDevice(device), "gelu backward");
  gelu_grad_kernel<<<opscuda::blocks(n, 256), 256>>>(dx, dy, x, n);
  opscuda::finish("gelu backward");
}

}  // namespace vt
