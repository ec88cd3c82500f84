// Measures this machine's ceilings, so benchmarks report fractions of what the CPU really does:
// the fp32 FMA throughput of register-resident loops, and the DRAM read bandwidth.
#pragma once
#include <cstdint>

namespace vt {

// GFLOP/s of independent FMA chains at the current SIMD level on `threads` threads (>= 1).
double measure_fma_peak(int threads, double seconds);
// GB/s of summing a buffer of `bytes` (larger than the caches) on `threads` threads.
double measure_read_bandwidth(int threads, int64_t bytes, int repeats);

}  // namespace vt
