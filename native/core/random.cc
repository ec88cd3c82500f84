#include "random.h"

#include <cmath>

#include "parallel.h"

namespace vt {
namespace {

// splitmix64 finaliser: a strong 64-bit mix, enough for statistical (not cryptographic) use.
inline uint64_t mix(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

// A double in [0, 1) from 53 random bits of counter `i` under `seed`.
inline double u01(uint64_t seed, uint64_t i) {
  return double(mix(mix(seed) + 0x9E3779B97F4A7C15ull * (i + 1)) >> 11) * 0x1.0p-53;
}

}  // namespace

double random_u01(uint64_t seed, uint64_t i) { return u01(seed, i); }

void fill_uniform(float* out, int64_t n, uint64_t seed, float lo, float hi) {
  parallel_for(n, 1 << 15, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) {
      float v = float(lo + (double(hi) - lo) * u01(seed, uint64_t(i)));
      out[i] = v < hi ? v : lo;  // rounding to float may reach hi
    }
  });
}

void fill_normal(float* out, int64_t n, uint64_t seed, float mean, float std) {
  // Box-Muller: pair p gives elements 2p and 2p+1 from counters 2p and 2p+1.
  const int64_t pairs = (n + 1) / 2;
  parallel_for(pairs, 1 << 14, [&](int64_t b, int64_t e) {
    for (int64_t p = b; p < e; ++p) {
      double u1 = 1.0 - u01(seed, uint64_t(2 * p));  // (0, 1]
      double u2 = u01(seed, uint64_t(2 * p + 1));
      double r = std::sqrt(-2.0 * std::log(u1)), t = 6.283185307179586 * u2;
      out[2 * p] = float(mean + std * r * std::cos(t));
      if (2 * p + 1 < n) out[2 * p + 1] = float(mean + std * r * std::sin(t));
    }
  });
}

}  // namespace vt
