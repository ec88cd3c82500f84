// Seeded, counter-based random numbers: element i depends only on (seed, i), so results are the
// same whatever the thread count.
#pragma once
#include <cstdint>

namespace vt {

// A double in [0, 1) from counter i under seed: the generator behind both fills, for kernels
// that draw their own numbers (sampling).
double random_u01(uint64_t seed, uint64_t i);

void fill_uniform(float* out, int64_t n, uint64_t seed, float lo, float hi);  // [lo, hi)
void fill_normal(float* out, int64_t n, uint64_t seed, float mean, float std);

}  // namespace vt
