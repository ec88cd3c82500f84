// Native-owned tensor memory. CPU storage is 64-byte aligned; CUDA storage lives on a device.
// Everything that reads a Storage holds a shared_ptr to it, so memory outlives any work in
// flight, typed-array views and disposal order.
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>

namespace vt {

struct Storage {
  void* data = nullptr;
  size_t bytes = 0;
  int device = -1;  // -1: CPU; >= 0: CUDA device index
  ~Storage();
  Storage() = default;
  Storage(const Storage&) = delete;
  Storage& operator=(const Storage&) = delete;
};

using StoragePtr = std::shared_ptr<Storage>;

// Throws std::bad_alloc when the memory cannot be had (the addon turns it into a RangeError).
StoragePtr storage_alloc(size_t bytes, int device = -1);

}  // namespace vt
