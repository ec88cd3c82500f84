// Token embedding, forward and backward (CPU; CUDA forms in embedding.cu).
// ids (T) i32; rows with ids[t] < 0 are skipped (the model writes vision embeddings there).
#pragma once
#include <cstdint>

#include "../core/dtype.h"

namespace vt {

// y (T, C) rows = table (V, C) rows, widened to f32. ids are checked by the caller.
void embedding_forward_cpu(float* y, const int32_t* ids, WeightRef table, int64_t T, int64_t C);
// dtable (V, C) rows ids[t] += dy (T, C) rows, in token order (threads own column ranges, so the
// sums are deterministic).
void embedding_backward_cpu(float* dtable, const float* dy, const int32_t* ids, int64_t T, int64_t C);

// CUDA forms (pointers on `device`; the backward adds with atomics, so its order is not fixed).
void embedding_forward_cuda(float* y, const int32_t* ids, const float* table, int64_t T, int64_t C, int device);
void embedding_backward_cuda(float* dtable, const float* dy, const int32_t* ids, int64_t T, int64_t C, int device);

}  // namespace vt
