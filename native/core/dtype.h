// Element types shared by the addon, the CPU kernels and the CUDA kernels.
// The numeric codes cross the N-API boundary (src/native.ts mirrors them): never renumber.
#pragma once
#include <cstddef>
#include <cstdint>

namespace vt {

enum class DType : int32_t { F32 = 0, F16 = 1, BF16 = 2, I32 = 3, I64 = 4, U8 = 5, Bool = 6 };
constexpr int kNumDTypes = 7;

inline size_t dtype_size(DType t) {
  switch (t) {
    case DType::F32: case DType::I32: return 4;
    case DType::F16: case DType::BF16: return 2;
    case DType::I64: return 8;
    case DType::U8: case DType::Bool: return 1;
  }
  return 0;
}

inline const char* dtype_name(DType t) {
  switch (t) {
    case DType::F32: return "f32";
    case DType::F16: return "f16";
    case DType::BF16: return "bf16";
    case DType::I32: return "i32";
    case DType::I64: return "i64";
    case DType::U8: return "u8";
    case DType::Bool: return "bool";
  }
  return "?";
}

inline bool dtype_valid(int32_t code) { return code >= 0 && code < kNumDTypes; }

// A read-only weight in its stored dtype (f32, bf16 or f16): kernels widen it as they read.
// A null data pointer means "absent" (no bias, no norm weight).
struct WeightRef {
  const void* data = nullptr;
  DType dtype = DType::F32;
  explicit operator bool() const { return data != nullptr; }
};

}  // namespace vt
