// CPU-only builds: the CUDA entry points of the network's ops (linear.h, norm.h, rope.h, act.h,
// embedding.h) throw a clear error.
#include <stdexcept>
#include <string>

#include "act.h"
#include "embedding.h"
#include "linear.h"
#include "norm.h"
#include "rope.h"

namespace vt {
namespace {
[[noreturn]] void no_cuda(const char* op) {
  throw std::runtime_error(std::string(op) + " on CUDA: CUDA not compiled in (this build is CPU-only)");
}
}  // namespace
void linear_forward_cuda(float*, const float*, const float*, const float*, int64_t, int64_t, int64_t, int) { no_cuda("linear"); }
void linear_backward_cuda(float*, float*, float*, const float*, const float*, const float*, int64_t, int64_t, int64_t, bool,
                          int) {
  no_cuda("linear backward");
}
void rmsnorm_forward_cuda(float*, float*, const float*, const float*, float, int64_t, int64_t, int) { no_cuda("rmsnorm"); }
void rmsnorm_backward_cuda(float*, float*, const float*, const float*, const float*, const float*, int64_t, int64_t, bool,
                           int) {
  no_cuda("rmsnorm backward");
}
void rope_apply_cuda(float*, const float*, const float*, int64_t, int64_t, int64_t, bool, int) { no_cuda("rope"); }
void swiglu_forward_cuda(float*, const float*, const float*, int64_t, int) { no_cuda("swiglu"); }
void swiglu_backward_cuda(float*, float*, const float*, const float*, const float*, int64_t, int) { no_cuda("swiglu backward"); }
void gelu_forward_cuda(float*, const float*, int64_t, int) { no_cuda("gelu"); }
void gelu_backward_cuda(float*, const float*, const float*, int64_t, int) { no_cuda("gelu backward"); }
void embedding_forward_cuda(float*, const int32_t*, const float*, int64_t, int64_t, int) { no_cuda("embedding"); }
void embedding_backward_cuda(float*, const float*, const int32_t*, int64_t, int64_t, int) { no_cuda("embedding backward"); }
}  // namespace vt
