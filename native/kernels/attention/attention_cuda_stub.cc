// CPU-only builds: the CUDA entry points of the fused attention (flash.h).
#include <stdexcept>

#include "attention.h"

namespace vt {
void attention_forward_cuda(const AttnArgs&, float*, float*, int) {
  throw std::runtime_error("attention on CUDA: CUDA not compiled in (this build is CPU-only)");
}
void attention_backward_cuda(const AttnArgs&, const float*, const float*, const float*, float*, float*, float*, int) {
  throw std::runtime_error("attention on CUDA: CUDA not compiled in (this build is CPU-only)");
}
}  // namespace vt
