// Small inputs that an async job reads on a worker thread (index arrays: targets, segment and
// sequence offsets; per-sequence values such as rewards) are copied at the call into memory the
// job owns. What the boundary validated is then what the worker reads: the caller may write to
// its own tensor (or dispose it) the moment the call returns, before the promise settles, and a
// target checked to lie in [0, V) cannot become an out-of-bounds read. These arrays hold one value
// per token or per sequence, so the copy costs nothing next to the kernel; large inputs (logits,
// weights, activations) are not copied: changing them while a job runs changes the numbers, never
// the memory that is touched.
#pragma once
#include <cstring>

#include "napi_util.h"

namespace vt {
namespace addon {

// A contiguous CPU copy of t (same dtype, shape and name) in a new storage.
inline TensorArg owned_copy(const TensorArg& t) {
  require_cpu(t);
  require_contiguous(t);
  TensorArg c = t;
  const size_t bytes = size_t(t.numel()) * dtype_size(t.dtype);
  c.storage = storage_alloc(bytes > 0 ? bytes : 1, -1);
  if (bytes > 0) std::memcpy(c.storage->data, t.data(), bytes);
  c.offset = 0;
  int64_t s = 1;
  for (int d = c.ndim() - 1; d >= 0; --d) {
    c.strides[size_t(d)] = s;
    s *= c.shape[size_t(d)];
  }
  return c;
}

}  // namespace addon
}  // namespace vt
