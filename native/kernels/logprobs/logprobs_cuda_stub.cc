// CPU-only builds: the CUDA entry points of the log-prob gathering family (gather.h).
#include <stdexcept>

#include "logprobs.h"

namespace vt {
namespace {
[[noreturn]] void no_cuda() { throw std::runtime_error("log-prob gathering on CUDA: CUDA not compiled in (this build is CPU-only)"); }
}  // namespace
void gather_logprobs_cuda(const float*, int64_t, int64_t, int64_t, const int32_t*, float, float*, float*, float*, int) { no_cuda(); }
void gather_logprobs_backward_cuda(const float*, int64_t, int64_t, int64_t, const int32_t*, const float*, const float*,
                                   float, float*, int) { no_cuda(); }
void linear_logprobs_cuda(const LinearLogprobsArgs&, float*, float*, float*, int) { no_cuda(); }
void linear_logprobs_backward_cuda(const LinearLogprobsArgs&, const float*, const float*, float*, float*, float*, bool, int) {
  no_cuda();
}
}  // namespace vt
