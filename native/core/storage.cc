#include "storage.h"

#include <algorithm>
#include <atomic>
#include <mutex>
#include <vector>
#include <cstdlib>
#include <new>

#include "cuda_api.h"

namespace vt {

namespace {
std::atomic<int64_t> g_live{0}, g_peak{0}, g_count{0};

// A small cache of freed large blocks. Blocks of a MiB or more come from mmap and go back to the
// kernel when freed, so a kernel that returns a fresh 5 MiB output on every call page-faults it
// in every time (a quarter of the time of a windowed attention call). Freed blocks are kept (at
// most kCacheBlocks, kCacheBytes in all, not counted as live) and handed out again for a
// request of the same rounded size.
constexpr size_t kCacheMin = size_t(1) << 20;
constexpr size_t kCacheBlocks = 16;
constexpr size_t kCacheBytes = size_t(256) << 20;
struct Cached {
  void* p;
  size_t size;
};
std::mutex g_cache_mu;
std::vector<Cached> g_cache;
size_t g_cache_total = 0;

size_t round_size(size_t bytes) {
  const size_t align = bytes >= kCacheMin ? size_t(4096) : size_t(64);
  return (std::max<size_t>(bytes, 1) + align - 1) & ~(align - 1);
}

void* cache_take(size_t rounded) {
  if (rounded < kCacheMin) return nullptr;
  std::lock_guard<std::mutex> lock(g_cache_mu);
  for (size_t i = g_cache.size(); i-- > 0;) {
    if (g_cache[i].size == rounded) {
      void* p = g_cache[i].p;
      g_cache_total -= rounded;
      g_cache.erase(g_cache.begin() + std::ptrdiff_t(i));
      return p;
    }
  }
  return nullptr;
}

bool cache_put(void* p, size_t rounded) {
  if (rounded < kCacheMin || rounded > kCacheBytes / 4) return false;
  std::lock_guard<std::mutex> lock(g_cache_mu);
  while (!g_cache.empty() && (g_cache.size() >= kCacheBlocks || g_cache_total + rounded > kCacheBytes)) {
    std::free(g_cache.front().p);  // oldest first
    g_cache_total -= g_cache.front().size;
    g_cache.erase(g_cache.begin());
  }
  g_cache.push_back({p, rounded});
  g_cache_total += rounded;
  return true;
}
}  // namespace

void* host_alloc(size_t bytes) {
  const size_t rounded = round_size(bytes);
  if (rounded < bytes) return nullptr;
  void* p = cache_take(rounded);
  if (!p) p = std::aligned_alloc(64, rounded);
  if (!p) return nullptr;
  int64_t now = g_live.fetch_add(int64_t(bytes)) + int64_t(bytes);
  g_count.fetch_add(1);
  int64_t peak = g_peak.load();
  while (now > peak && !g_peak.compare_exchange_weak(peak, now)) {
  }
  return p;
}

void host_free(void* p, size_t bytes) {
  if (!p) return;
  if (!cache_put(p, round_size(bytes))) std::free(p);
  g_live.fetch_sub(int64_t(bytes));
  g_count.fetch_sub(1);
}

HostMemoryStats host_memory_stats() { return {g_live.load(), g_peak.load(), g_count.load()}; }
void reset_host_memory_peak() { g_peak.store(g_live.load()); }

Storage::~Storage() {
  if (!data || owner) return;
  if (device < 0)
    host_free(data, bytes);
  else
    cuda_free(data, device);
}

StoragePtr storage_alloc(size_t bytes, int device) {
  auto s = std::make_shared<Storage>();
  s->bytes = bytes;
  s->device = device;
  if (device < 0) {
    s->data = host_alloc(bytes);
  } else {
    size_t rounded = (std::max<size_t>(bytes, 1) + 63) & ~size_t(63);
    if (rounded < bytes) throw std::bad_alloc();
    s->data = cuda_malloc(rounded, device);
  }
  if (!s->data) throw std::bad_alloc();
  return s;
}

}  // namespace vt
