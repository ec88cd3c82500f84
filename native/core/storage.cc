#include "storage.h"

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <map>
#include <mutex>
#include <new>
#include <utility>
#include <vector>

#include "cuda_api.h"

namespace vt {

namespace {
std::atomic<int64_t> g_live{0}, g_peak{0}, g_count{0};

// A cache of freed blocks, so that memory a kernel's output held is handed to the next output of
// the same size still mapped, instead of going back to the kernel and being page-faulted in (and
// zeroed) again. It matters most for results left to the garbage collector (issue 15): V8 frees
// them in batches, when the external memory they report has grown by ~64 MiB since the last full
// collection, so 16-20 dead 4 MiB matmul results come back at once. With room for 16 blocks the
// cache dropped the surplus, and the next cycle faulted it in again: 80-560 page faults and up to
// 2 ms of system time per 1024^2 result (none when disposed). Blocks of 64 KiB to 64 MiB are kept,
// 320 MiB in all (oldest dropped first), exact rounded size reused most-recent first (warmest in
// the caches). Smaller blocks stay with malloc, whose own free lists serve them without faults.
constexpr size_t kCacheMin = size_t(64) << 10;
constexpr size_t kCacheMaxBlock = size_t(64) << 20;
constexpr size_t kCacheBytes = size_t(320) << 20;
constexpr size_t kPage = 4096;

// Recycled blocks in use by storages, up to kRecycledBudget: the addon does not report these to
// V8 (native/addon/napi_util.cc), so that undisposed results trigger a full collection per
// ~256 MiB (the budget plus V8's own 64 MiB step) rather than per 64 MiB. The cache holds the
// budget, one such step and V8's slack (it finishes marking a few allocations past its limit),
// so that a collection's whole batch is kept for the next cycle.
// The budget counts the recycled blocks taken since the last collection that freed handles (a
// period): the dead results it exists to bound all date from the current period, while blocks
// that outlived a collection are in use, and counting those too (as a first version did) let a
// few long-lived tensors use up the budget: a benchmark holding 40 recycled 5 MiB results made V8
// collect per ~75 MiB of window-attention results instead of per ~256, 15-20% of their time.
constexpr int64_t kRecycledBudget = int64_t(192) << 20;
std::atomic<int64_t> g_recycled{0};
std::atomic<uint64_t> g_epoch{1};

struct Cache {
  std::mutex mu;
  std::map<size_t, std::vector<std::pair<uint64_t, void*>>> by_size;  // per size, oldest first
  std::map<uint64_t, size_t> by_age;                                  // put order -> size
  uint64_t next = 0;
  size_t total = 0;
};
Cache& cache() {
  static Cache* c = new Cache();  // never destroyed: blocks may be freed during static destruction
  return *c;
}

size_t round_size(size_t bytes) {
  const size_t align = bytes >= kCacheMin ? kPage : size_t(64);
  return (std::max<size_t>(bytes, 1) + align - 1) & ~(align - 1);
}

void* cache_take(size_t rounded) {
  if (rounded < kCacheMin || rounded > kCacheMaxBlock) return nullptr;
  Cache& c = cache();
  std::lock_guard<std::mutex> lock(c.mu);
  auto it = c.by_size.find(rounded);
  if (it == c.by_size.end() || it->second.empty()) return nullptr;
  const auto [age, p] = it->second.back();
  it->second.pop_back();
  if (it->second.empty()) c.by_size.erase(it);
  c.by_age.erase(age);
  c.total -= rounded;
  return p;
}

bool cache_put(void* p, size_t rounded) {
  if (rounded < kCacheMin || rounded > kCacheMaxBlock) return false;
  Cache& c = cache();
  std::lock_guard<std::mutex> lock(c.mu);
  while (!c.by_age.empty() && c.total + rounded > kCacheBytes) {
    const auto oldest = c.by_age.begin();
    const auto list = c.by_size.find(oldest->second);
    std::free(list->second.front().second);  // each size's list is in put order: its front is the oldest
    list->second.erase(list->second.begin());
    if (list->second.empty()) c.by_size.erase(list);
    c.total -= oldest->second;
    c.by_age.erase(oldest);
  }
  const uint64_t age = c.next++;
  c.by_size[rounded].push_back({age, p});
  c.by_age[age] = rounded;
  c.total += rounded;
  return true;
}
}  // namespace

size_t host_cached_bytes() {
  Cache& c = cache();
  std::lock_guard<std::mutex> lock(c.mu);
  return c.total;
}

void host_release_cache() {
  Cache& c = cache();
  std::lock_guard<std::mutex> lock(c.mu);
  for (auto& [size, list] : c.by_size)
    for (auto& e : list) std::free(e.second);
  c.by_size.clear();
  c.by_age.clear();
  c.total = 0;
}

void* host_alloc(size_t bytes, bool* recycled) {
  const size_t rounded = round_size(bytes);
  if (rounded < bytes) return nullptr;
  void* p = cache_take(rounded);
  if (recycled) *recycled = p != nullptr;
  if (!p) p = std::aligned_alloc(64, rounded);
  if (!p && host_cached_bytes() > 0) {
    host_release_cache();  // out of memory: what the cache holds may make the difference
    p = std::aligned_alloc(64, rounded);
  }
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

void storage_collection_seen() {
  g_epoch.fetch_add(1);
  g_recycled.store(0);
}

Storage::~Storage() {
  if (recycled && recycled_epoch == g_epoch.load()) g_recycled.fetch_sub(int64_t(bytes));
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
    bool from_cache = false;
    s->data = host_alloc(bytes, &from_cache);
    const uint64_t epoch = g_epoch.load();
    if (from_cache && g_recycled.fetch_add(int64_t(bytes)) + int64_t(bytes) <= kRecycledBudget) {
      s->recycled = true;
      s->recycled_epoch = epoch;
    } else if (from_cache)
      g_recycled.fetch_sub(int64_t(bytes));
  } else {
    size_t rounded = (std::max<size_t>(bytes, 1) + 63) & ~size_t(63);
    if (rounded < bytes) throw std::bad_alloc();
    s->data = cuda_malloc(rounded, device);
  }
  if (!s->data) throw std::bad_alloc();
  return s;
}

}  // namespace vt
