#include "storage.h"

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <new>

#include "../cuda/cuda_api.h"

namespace vt {

namespace {
std::atomic<int64_t> g_live{0}, g_peak{0}, g_count{0};
}

void* host_alloc(size_t bytes) {
  size_t rounded = (std::max<size_t>(bytes, 1) + 63) & ~size_t(63);
  if (rounded < bytes) return nullptr;
  void* p = std::aligned_alloc(64, rounded);
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
  std::free(p);
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
