// Token embedding on the CPU (embedding.h).
#include "../core/parallel.h"
#include "../core/vec.h"
#include "embedding.h"

namespace vt {

void embedding_forward_cpu(float* y, const int32_t* ids, WeightRef table, int64_t T, int64_t C) {
  parallel_for(T, 16, [&](int64_t t0, int64_t t1) {
    for (int64_t t = t0; t < t1; t++)
      if (ids[t] >= 0) widen_rows(y + t * C, table.data, table.dtype, C, ids[t], int64_t(ids[t]) + 1);
  });
}

void embedding_backward_cpu(float* dtable, const float* dy, const int32_t* ids, int64_t T, int64_t C) {
  parallel_for(C, 64, [&](int64_t c0, int64_t c1) {
    for (int64_t t = 0; t < T; t++) {
      if (ids[t] < 0) continue;
      float* d = dtable + int64_t(ids[t]) * C;
      const float* g = dy + t * C;
      for (int64_t c = c0; c < c1; c++) d[c] += g[c];
    }
  });
}

}  // namespace vt
