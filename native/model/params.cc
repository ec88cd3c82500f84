// The parameter store (params.h).
#include "params.h"

#include <cstring>
#include <new>

#include "../core/convert.h"
#include "../core/parallel.h"

namespace vt {

namespace {
constexpr int64_t kAlign = 16;  // floats: every parameter starts on a 64-byte boundary
}

ParamStore::ParamStore(std::vector<ParamSource> sources) {
  params_.reserve(sources.size());
  int64_t off = 0;
  for (const ParamSource& s : sources) {
    Param p;
    p.name = s.name;
    p.shape = s.shape;
    p.numel = 1;
    for (int64_t d : s.shape) p.numel *= d;
    p.trainable = s.trainable;
    if (p.trainable) {
      p.offset = off;
      off += (p.numel + kAlign - 1) / kAlign * kAlign;
      trainable_numel_ += p.numel;
    } else {
      p.source = s.storage;
      p.value.data = static_cast<const char*>(s.storage->data) + s.offset * int64_t(dtype_size(s.dtype));
      p.value.dtype = s.dtype;
    }
    index_[p.name] = params_.size();
    params_.push_back(std::move(p));
  }
  flat_numel_ = off;
  if (off > 0) {
    master_ = storage_alloc(size_t(off) * sizeof(float));
    grads_ = storage_alloc(size_t(off) * sizeof(float));
    float* m = static_cast<float*>(master_->data);
    float* g = static_cast<float*>(grads_->data);
    // Padding included: the flat buffers are fully defined (norms and optimizer passes may run
    // over them whole).
    parallel_for(off, int64_t(1) << 16, [&](int64_t i0, int64_t i1) {
      std::memset(m + i0, 0, size_t(i1 - i0) * sizeof(float));
      std::memset(g + i0, 0, size_t(i1 - i0) * sizeof(float));
    });
    for (size_t i = 0; i < params_.size(); i++) {
      Param& p = params_[i];
      if (!p.trainable) continue;
      const ParamSource& s = sources[i];
      float* dst = m + p.offset;
      if (!s.zero) {
        const void* src = static_cast<const char*>(s.storage->data) + s.offset * int64_t(dtype_size(s.dtype));
        cast(src, s.dtype, dst, DType::F32, p.numel);
      }
      p.value.data = dst;
      p.value.dtype = DType::F32;
      p.grad = g + p.offset;
    }
  }
}

const Param* ParamStore::find(const std::string& name) const {
  auto it = index_.find(name);
  return it == index_.end() ? nullptr : &params_[it->second];
}

void ParamStore::zero_grad() {
  if (!grads_) return;
  float* g = static_cast<float*>(grads_->data);
  parallel_for(flat_numel_, int64_t(1) << 16, [&](int64_t i0, int64_t i1) {
    std::memset(g + i0, 0, size_t(i1 - i0) * sizeof(float));
  });
}

}  // namespace vt
