// CPU-only builds: the CUDA entry points of the optimizer family throw a clear error.
#include <stdexcept>

#include "optim.h"

namespace vt {
namespace {
[[noreturn]] void no_cuda() { throw std::runtime_error("the optimizer on CUDA: CUDA not compiled in (this build is CPU-only)"); }
}  // namespace
void adamw_step_cuda(float*, float*, float*, const float*, const OptimSegment*, int64_t, const AdamWScalars&, int) { no_cuda(); }
double grad_sumsq_cuda(const float*, const OptimSegment*, int64_t, int) { no_cuda(); }
void grad_scale_cuda(float*, const OptimSegment*, int64_t, float, int) { no_cuda(); }
}  // namespace vt
