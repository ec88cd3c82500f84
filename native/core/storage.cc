#include "storage.h"

#include <algorithm>
#include <cstdlib>
#include <new>

#include "../cuda/cuda_api.h"

namespace vt {

Storage::~Storage() {
  if (!data) return;
  if (device < 0)
    std::free(data);
  else
    cuda_free(data, device);
}

StoragePtr storage_alloc(size_t bytes, int device) {
  auto s = std::make_shared<Storage>();
  s->bytes = bytes;
  s->device = device;
  size_t rounded = (std::max<size_t>(bytes, 1) + 63) & ~size_t(63);
  if (rounded < bytes) throw std::bad_alloc();
  s->data = device < 0 ? std::aligned_alloc(64, rounded) : cuda_malloc(rounded, device);
  if (!s->data) throw std::bad_alloc();
  return s;
}

}  // namespace vt
