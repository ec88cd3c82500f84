// A small persistent thread pool. One parallel region runs at a time (regions submitted from
// several libuv worker threads queue on a mutex); a region started from inside a region runs
// serially on the calling thread, so kernels may call each other freely.
#pragma once
#include <algorithm>
#include <atomic>
#include <cstdint>
#include <functional>
#include <thread>

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

// The share [b, e) of [0, n) that thread tid of nth takes, in whole units of `align` (the last
// share ends at n): a fixed split, so results never depend on timing.
inline void split_range(int64_t n, int tid, int nth, int64_t align, int64_t& b, int64_t& e) {
  const int64_t units = (n + align - 1) / align;
  const int64_t per = units / nth, rem = units % nth;
  const int64_t ub = tid * per + std::min<int64_t>(tid, rem), ue = ub + per + (tid < rem ? 1 : 0);
  b = std::min(n, ub * align);
  e = std::min(n, ue * align);
}

// A spinning barrier for the threads of one parallel_run region: decode runs ~15 dependent
// steps per layer, and waking the pool's workers through a condition variable for each cost
// more than the step itself (measured: 48 ms of 58 ms per 0.5B token went to the 24 layers
// whose weights stream in ~26 ms).
class SpinBarrier {
 public:
  // n: the region's thread count (every caller passes the same).
  void wait(int n) {
    if (n <= 1) return;
    const int g = gen_.load(std::memory_order_acquire);
    if (count_.fetch_add(1, std::memory_order_acq_rel) + 1 == n) {
      count_.store(0, std::memory_order_relaxed);
      gen_.fetch_add(1, std::memory_order_acq_rel);
      return;
    }
    for (int spins = 0; gen_.load(std::memory_order_acquire) == g; spins++)
      if (spins > 2000) std::this_thread::yield();
  }

 private:
  std::atomic<int> count_{0}, gen_{0};
};

}  // namespace vt
