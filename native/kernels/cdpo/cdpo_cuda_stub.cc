// CPU-only builds: the CUDA entry points of the CDPO family. No CUDA tensor can exist in such a
// build, so reaching these means a mixed-up build; say so clearly.
#include <stdexcept>

#include "cdpo.h"
#include "cdpo_linear.h"

namespace vt {

CdpoResult cdpo_loss_cuda(float*, const CdpoParams&, int) {
  throw std::runtime_error("cdpoLoss on a CUDA device: CUDA not compiled in (this is a CPU-only build)");
}

CdpoResult linear_cdpo_cuda(float*, float*, float*, const LinearCdpoParams&, int) {
  throw std::runtime_error("linearCdpo on a CUDA device: CUDA not compiled in (this is a CPU-only build)");
}

}  // namespace vt
