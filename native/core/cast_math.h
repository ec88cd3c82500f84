// Element loads and stores between every dtype, shared by the CPU cast and the CUDA cast kernel.
// Semantics (the same on both paths):
//   to f16 / bf16: round to nearest even (half.h); from floats to integers: truncate toward
//   zero, saturate to the integer's range, NaN -> 0; to bool / from anything: nonzero -> 1.
#pragma once
#include <cstdint>

#include "dtype.h"
#include "half.h"
#include "hostdevice.h"

namespace vt {

VT_HD double load_elem(const void* p, DType t, int64_t i) {
  switch (t) {
    case DType::F32: return double(static_cast<const float*>(p)[i]);
    case DType::F16: return double(f16_to_f32(static_cast<const uint16_t*>(p)[i]));
    case DType::BF16: return double(bf16_to_f32(static_cast<const uint16_t*>(p)[i]));
    case DType::I32: return double(static_cast<const int32_t*>(p)[i]);
    case DType::I64: return double(static_cast<const int64_t*>(p)[i]);
    case DType::U8: return double(static_cast<const uint8_t*>(p)[i]);
    case DType::Bool: return static_cast<const uint8_t*>(p)[i] ? 1.0 : 0.0;
  }
  return 0.0;
}

VT_HD double saturate(double v, double lo, double hi) {
  if (!(v == v)) return 0.0;  // NaN
  return v < lo ? lo : (v > hi ? hi : v);
}

VT_HD void store_elem(void* p, DType t, int64_t i, double v) {
  switch (t) {
    case DType::F32: static_cast<float*>(p)[i] = float(v); break;
    case DType::F16: static_cast<uint16_t*>(p)[i] = f32_to_f16(float(v)); break;
    case DType::BF16: static_cast<uint16_t*>(p)[i] = f32_to_bf16(float(v)); break;
    case DType::I32: static_cast<int32_t*>(p)[i] = int32_t(saturate(v, -2147483648.0, 2147483647.0)); break;
    // 2^63 is not representable as int64; the largest double below it is 2^63 - 1024.
    case DType::I64:
      static_cast<int64_t*>(p)[i] = int64_t(saturate(v, -9223372036854775808.0, 9223372036854774784.0));
      break;
    case DType::U8: static_cast<uint8_t*>(p)[i] = uint8_t(saturate(v, 0.0, 255.0)); break;
    case DType::Bool: static_cast<uint8_t*>(p)[i] = v != 0.0 ? 1 : 0; break;
  }
}

}  // namespace vt
