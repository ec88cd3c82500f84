// The optimizer family on the CPU (optim.h). Each segment is split into fixed chunks over the
// threads; the element math is optim_math.h's (the compiler vectorises the plain loop: the pass is
// bound by memory, not arithmetic).
#include <algorithm>
#include <cmath>
#include <vector>

#include "../../core/parallel.h"
#include "../../core/simd.h"
#include "../../core/vec.h"
#include "optim.h"

namespace vt {

namespace {
constexpr int64_t kChunk = int64_t(1) << 14;  // 64 KiB of each buffer: whole pages, fits L2

// Runs fn(segment, begin, end) over chunks of every segment, chunks split over threads.
template <class F>
void over_chunks(const OptimSegment* segs, int64_t nseg, F&& fn) {
  std::vector<int64_t> start(size_t(nseg) + 1, 0);
  for (int64_t i = 0; i < nseg; i++) start[size_t(i) + 1] = start[size_t(i)] + (segs[i].numel + kChunk - 1) / kChunk;
  parallel_for(start.back(), 1, [&](int64_t c0, int64_t c1) {
    int64_t si = 0;
    for (int64_t c = c0; c < c1; c++) {
      while (start[size_t(si) + 1] <= c) si++;
      const OptimSegment& s = segs[si];
      const int64_t b = s.offset + (c - start[size_t(si)]) * kChunk;
      const int64_t e = std::min(s.offset + s.numel, b + kChunk);
      fn(s, b, e);
    }
  });
}
}  // namespace

void adamw_step_cpu(float* p, float* m, float* v, const float* g, const OptimSegment* segs, int64_t nseg,
                    const AdamWScalars& s) {
  const float step_size = float(double(s.lr) / s.bc1);
  const float inv_sqrt_bc2 = float(1.0 / std::sqrt(s.bc2));
  over_chunks(segs, nseg, [&](const OptimSegment& seg, int64_t b, int64_t e) {
    const float decay = 1.0f - s.lr * seg.weight_decay;
    if (cpu().use_avx512) adamw_span_avx512(p + b, m + b, v + b, g + b, e - b, s, decay, step_size, inv_sqrt_bc2);
    else if (cpu().use_avx2) adamw_span_avx2(p + b, m + b, v + b, g + b, e - b, s, decay, step_size, inv_sqrt_bc2);
    else
      for (int64_t i = b; i < e; i++) adamw_elem(p[i], m[i], v[i], g[i], s, decay, step_size, inv_sqrt_bc2);
  });
}

double grad_sumsq_cpu(const float* g, const OptimSegment* segs, int64_t nseg) {
  // Partial sums per chunk, added in chunk order: the same norm on any thread count.
  std::vector<int64_t> start(size_t(nseg) + 1, 0);
  for (int64_t i = 0; i < nseg; i++) start[size_t(i) + 1] = start[size_t(i)] + (segs[i].numel + kChunk - 1) / kChunk;
  std::vector<double> part(size_t(start.back()), 0.0);
  over_chunks(segs, nseg, [&](const OptimSegment& seg, int64_t b, int64_t) {
    // Recover this chunk's index from its segment and start.
    const int64_t si = &seg - segs;
    const int64_t c = start[size_t(si)] + (b - seg.offset) / kChunk;
    const int64_t e = std::min(seg.offset + seg.numel, b + kChunk);
    part[size_t(c)] = vec_sumsq(g + b, e - b);
  });
  double total = 0.0;
  for (double x : part) total += x;
  return total;
}

void grad_scale_cpu(float* g, const OptimSegment* segs, int64_t nseg, float scale) {
  over_chunks(segs, nseg, [&](const OptimSegment&, int64_t b, int64_t e) {
    for (int64_t i = b; i < e; i++) g[i] *= scale;
  });
}

}  // namespace vt
