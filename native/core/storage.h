// Native-owned tensor memory. CPU storage is 64-byte aligned; CUDA storage lives on a device.
// Everything that reads a Storage holds a shared_ptr to it, so memory outlives any work in
// flight, typed-array views and disposal order.
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>
#include <new>

namespace vt {

struct Storage {
  void* data = nullptr;
  size_t bytes = 0;
  int device = -1;  // -1: CPU; >= 0: CUDA device index
  // Memory the Storage does not own (a memory-mapped file): `owner` releases it when the last
  // reference goes; data is then neither counted nor freed here.
  std::shared_ptr<void> owner;
  // The block came from the host allocator's cache of freed blocks (memory the process already
  // held, so taking it did not grow the process) and fit the budget of such blocks in use
  // (storage.cc): the addon does not report it to V8 as external memory (napi_util.cc says why).
  bool recycled = false;
  uint64_t recycled_epoch = 0;  // the collection period it was counted in (storage.cc)
  ~Storage();
  Storage() = default;
  Storage(const Storage&) = delete;
  Storage& operator=(const Storage&) = delete;
};

using StoragePtr = std::shared_ptr<Storage>;

// Throws std::bad_alloc when the memory cannot be had (the addon turns it into a RangeError).
StoragePtr storage_alloc(size_t bytes, int device = -1);
// A garbage collection freed handles (the addon's GC finalizer calls it): a new period of the
// recycled budget starts, and the recycled blocks still alive stop counting against it.
void storage_collection_seen();

// Host memory accounting: every CPU Storage and every kernel workspace (ScratchBuffer) counts here,
// so tests can see that dispose frees at once and benchmarks can report a kernel's peak extra
// memory exactly (RSS also counts allocator caching and other libraries).
struct HostMemoryStats {
  int64_t live_bytes;
  int64_t peak_bytes;  // since the last reset_host_memory_peak()
  int64_t allocations;  // live allocation count
};
HostMemoryStats host_memory_stats();
void reset_host_memory_peak();
// Freed blocks kept for reuse (storage.cc explains why); not counted in live_bytes.
size_t host_cached_bytes();
// Gives every cached block back to the system allocator.
void host_release_cache();
// 64-byte aligned, counted; nullptr on failure. *recycled (when given) tells whether the block
// came from the cache of freed blocks.
void* host_alloc(size_t bytes, bool* recycled = nullptr);
void host_free(void* p, size_t bytes);

// A counted, 64-byte aligned, uninitialised kernel workspace of n elements of T.
template <class T>
class ScratchBuffer {
 public:
  ScratchBuffer() = default;
  explicit ScratchBuffer(size_t n) { reset(n); }
  ~ScratchBuffer() { release(); }
  ScratchBuffer(const ScratchBuffer&) = delete;
  ScratchBuffer& operator=(const ScratchBuffer&) = delete;
  void reset(size_t n) {
    release();
    if (n == 0) return;
    p_ = static_cast<T*>(host_alloc(n * sizeof(T)));
    if (!p_) throw std::bad_alloc();
    n_ = n;
  }
  void release() {
    if (p_) host_free(p_, n_ * sizeof(T));
    p_ = nullptr;
    n_ = 0;
  }
  // Exchanges the buffers (ownership moves with them).
  void swap(ScratchBuffer& o) noexcept {
    T* p = p_;
    p_ = o.p_;
    o.p_ = p;
    const size_t n = n_;
    n_ = o.n_;
    o.n_ = n;
  }
  T* data() const { return p_; }
  size_t size() const { return n_; }
  T& operator[](size_t i) const { return p_[i]; }

 private:
  T* p_ = nullptr;
  size_t n_ = 0;
};

}  // namespace vt
