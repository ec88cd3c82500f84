// A small persistent thread pool. One parallel region runs at a time (regions submitted from
// several libuv worker threads queue on a mutex); a region started from inside a region runs
// serially on the calling thread, so kernels may call each other freely.
#pragma once
#include <cstdint>
#include <functional>

namespace vt {

// Threads used by parallel regions (including the calling thread). Default: VT_NUM_THREADS if
// set, else the hardware concurrency.
int num_threads();
// Sets the thread count (>= 1); returns the previous one. Also sets the BLAS thread count.
int set_num_threads(int n);

// Runs fn(tid, nth) on nth = min(num_threads(), max_threads) threads, tid in [0, nth).
void parallel_run(int max_threads, const std::function<void(int tid, int nth)>& fn);

// Splits [0, n) into contiguous ranges of at least `grain` items, one per thread, and runs
// fn(begin, end) on each. Deterministic: the split depends only on n, grain and the thread count.
void parallel_for(int64_t n, int64_t grain, const std::function<void(int64_t begin, int64_t end)>& fn);

// Splits [0, n) into `chunks` ranges handed out dynamically (an atomic counter): for uneven work.
void parallel_chunks(int64_t n, int64_t chunk, const std::function<void(int64_t begin, int64_t end, int tid)>& fn);

}  // namespace vt
