#include "parallel.h"

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdlib>
#include <mutex>
#include <thread>
#include <vector>

#include "blas.h"

namespace vt {
namespace {

thread_local bool t_in_region = false;

class Pool {
 public:
  Pool() {
    int n = int(std::thread::hardware_concurrency());
    if (const char* env = std::getenv("VT_NUM_THREADS")) {
      int e = std::atoi(env);
      if (e > 0) n = e;
    }
    threads_ = std::max(1, std::min(n, 256));
  }

  int threads() const { return threads_.load(); }
  int set_threads(int n) {
    std::lock_guard<std::mutex> region(region_m_);
    int old = threads_.exchange(std::max(1, std::min(n, 256)));
    return old;
  }

  void run(int max_threads, const std::function<void(int, int)>& fn) {
    int nth = std::max(1, std::min(threads(), max_threads));
    if (nth == 1 || t_in_region) {
      bool was = t_in_region;
      t_in_region = true;
      fn(0, 1);
      t_in_region = was;
      return;
    }
    std::lock_guard<std::mutex> region(region_m_);
    nth = std::max(1, std::min(threads(), max_threads));
    ensure_workers(nth - 1);
    {
      std::lock_guard<std::mutex> lk(m_);
      job_ = &fn;
      job_nth_ = nth;
      pending_ = nth - 1;
      ++generation_;
    }
    cv_.notify_all();
    t_in_region = true;
    fn(0, nth);
    t_in_region = false;
    std::unique_lock<std::mutex> lk(m_);
    done_cv_.wait(lk, [&] { return pending_ == 0; });
    job_ = nullptr;
  }

 private:
  // Called with region_m_ held, before the region's generation is published, so a new worker
  // starts from the current generation and takes the coming job.
  void ensure_workers(int n) {
    while (int(workers_.size()) < n) {
      int idx = int(workers_.size()) + 1;  // tid of this worker
      uint64_t gen;
      {
        std::lock_guard<std::mutex> lk(m_);
        gen = generation_;
      }
      workers_.emplace_back([this, idx, gen] { loop(idx, gen); });
    }
  }

  void loop(int tid, uint64_t seen) {
    for (;;) {
      const std::function<void(int, int)>* job;
      int nth;
      {
        std::unique_lock<std::mutex> lk(m_);
        cv_.wait(lk, [&] { return generation_ != seen; });
        seen = generation_;
        job = job_;
        nth = job_nth_;
      }
      if (job == nullptr || tid >= nth) continue;
      t_in_region = true;
      (*job)(tid, nth);
      t_in_region = false;
      std::lock_guard<std::mutex> lk(m_);
      if (--pending_ == 0) done_cv_.notify_one();
    }
  }

  std::atomic<int> threads_{1};
  std::mutex region_m_;  // one region at a time
  std::mutex m_;
  std::condition_variable cv_, done_cv_;
  std::vector<std::thread> workers_;
  const std::function<void(int, int)>* job_ = nullptr;
  int job_nth_ = 0;
  int pending_ = 0;
  uint64_t generation_ = 0;
};

Pool& pool() {
  static Pool* p = new Pool();  // never destroyed: workers may outlive static destruction order
  return *p;
}

}  // namespace

int num_threads() { return pool().threads(); }

int set_num_threads(int n) {
  int old = pool().set_threads(n);
  blas_set_threads(std::max(1, n));
  return old;
}

void parallel_run(int max_threads, const std::function<void(int, int)>& fn) { pool().run(max_threads, fn); }

void parallel_for(int64_t n, int64_t grain, const std::function<void(int64_t, int64_t)>& fn) {
  if (n <= 0) return;
  grain = std::max<int64_t>(1, grain);
  int64_t max_parts = (n + grain - 1) / grain;
  int want = int(std::min<int64_t>(max_parts, 256));
  parallel_run(want, [&](int tid, int nth) {
    int64_t per = n / nth, rem = n % nth;
    int64_t b = tid * per + std::min<int64_t>(tid, rem);
    int64_t e = b + per + (tid < rem ? 1 : 0);
    if (b < e) fn(b, e);
  });
}

void parallel_chunks(int64_t n, int64_t chunk, const std::function<void(int64_t, int64_t, int)>& fn) {
  if (n <= 0) return;
  chunk = std::max<int64_t>(1, chunk);
  int64_t nchunks = (n + chunk - 1) / chunk;
  std::atomic<int64_t> next{0};
  parallel_run(int(std::min<int64_t>(nchunks, 256)), [&](int tid, int) {
    for (;;) {
      int64_t c = next.fetch_add(1);
      if (c >= nchunks) break;
      int64_t b = c * chunk;
      fn(b, std::min(n, b + chunk), tid);
    }
  });
}

}  // namespace vt
