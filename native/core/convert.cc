#include "convert.h"

#include <algorithm>
#include <cstring>
#include <vector>

#include "cast_math.h"
#include "half.h"
#include "parallel.h"
#include "simd.h"

namespace vt {
namespace {

void cast_serial(const void* src, DType st, void* dst, DType dt, int64_t n) {
  if (st == dt) {
    std::memcpy(dst, src, size_t(n) * dtype_size(st));
    return;
  }
  const bool simd = cpu().use_avx2;
  if (st == DType::F32 && dt == DType::F16) {
    if (simd) return detail::f32_to_f16_avx2(static_cast<const float*>(src), static_cast<uint16_t*>(dst), n);
    for (int64_t i = 0; i < n; ++i) static_cast<uint16_t*>(dst)[i] = f32_to_f16(static_cast<const float*>(src)[i]);
    return;
  }
  if (st == DType::F16 && dt == DType::F32) {
    if (simd) return detail::f16_to_f32_avx2(static_cast<const uint16_t*>(src), static_cast<float*>(dst), n);
    for (int64_t i = 0; i < n; ++i) static_cast<float*>(dst)[i] = f16_to_f32(static_cast<const uint16_t*>(src)[i]);
    return;
  }
  if (st == DType::F32 && dt == DType::BF16) {
    if (simd) return detail::f32_to_bf16_avx2(static_cast<const float*>(src), static_cast<uint16_t*>(dst), n);
    for (int64_t i = 0; i < n; ++i) static_cast<uint16_t*>(dst)[i] = f32_to_bf16(static_cast<const float*>(src)[i]);
    return;
  }
  if (st == DType::BF16 && dt == DType::F32) {
    if (simd) return detail::bf16_to_f32_avx2(static_cast<const uint16_t*>(src), static_cast<float*>(dst), n);
    for (int64_t i = 0; i < n; ++i) static_cast<float*>(dst)[i] = bf16_to_f32(static_cast<const uint16_t*>(src)[i]);
    return;
  }
  if (st == DType::F16 && dt == DType::BF16) {
    // f16 -> bf16 goes through f32 exactly (every f16 is an f32), then rounds once.
    for (int64_t i = 0; i < n; ++i)
      static_cast<uint16_t*>(dst)[i] = f32_to_bf16(f16_to_f32(static_cast<const uint16_t*>(src)[i]));
    return;
  }
  if (st == DType::BF16 && dt == DType::F16) {
    for (int64_t i = 0; i < n; ++i)
      static_cast<uint16_t*>(dst)[i] = f32_to_f16(bf16_to_f32(static_cast<const uint16_t*>(src)[i]));
    return;
  }
  if (st == DType::I64 && dt == DType::I32) {  // exact path: no trip through double
    for (int64_t i = 0; i < n; ++i) {
      int64_t v = static_cast<const int64_t*>(src)[i];
      static_cast<int32_t*>(dst)[i] = int32_t(std::min<int64_t>(std::max<int64_t>(v, INT32_MIN), INT32_MAX));
    }
    return;
  }
  if (st == DType::I32 && dt == DType::I64) {
    for (int64_t i = 0; i < n; ++i) static_cast<int64_t*>(dst)[i] = static_cast<const int32_t*>(src)[i];
    return;
  }
  for (int64_t i = 0; i < n; ++i) store_elem(dst, dt, i, load_elem(src, st, i));
}

}  // namespace

void cast(const void* src, DType st, void* dst, DType dt, int64_t n) {
  const size_t ss = dtype_size(st), ds = dtype_size(dt);
  parallel_for(n, 1 << 16, [&](int64_t b, int64_t e) {
    cast_serial(static_cast<const char*>(src) + b * ss, st, static_cast<char*>(dst) + b * ds, dt, e - b);
  });
}

void copy_strided(const void* src, DType st, int ndim, const int64_t* shape, const int64_t* strides, void* dst,
                  DType dt) {
  int64_t n = 1;
  for (int d = 0; d < ndim; ++d) n *= shape[d];
  if (n == 0) return;
  // Collapse to rows of the innermost dimension; rows are split over threads.
  const int64_t inner = ndim > 0 ? shape[ndim - 1] : 1;
  const int64_t inner_stride = ndim > 0 ? strides[ndim - 1] : 1;
  const int64_t rows = n / inner;
  const size_t ss = dtype_size(st), ds = dtype_size(dt);
  parallel_for(rows, std::max<int64_t>(1, (1 << 15) / std::max<int64_t>(inner, 1)), [&](int64_t rb, int64_t re) {
    std::vector<char> tmp;
    for (int64_t r = rb; r < re; ++r) {
      // Offset of row r: unravel r over the outer dimensions.
      int64_t off = 0, rem = r;
      for (int d = ndim - 2; d >= 0; --d) {
        off += (rem % shape[d]) * strides[d];
        rem /= shape[d];
      }
      const char* s = static_cast<const char*>(src) + off * int64_t(ss);
      char* o = static_cast<char*>(dst) + r * inner * int64_t(ds);
      if (inner_stride == 1) {
        cast_serial(s, st, o, dt, inner);
      } else {
        tmp.resize(size_t(inner) * ss);
        for (int64_t i = 0; i < inner; ++i) std::memcpy(tmp.data() + i * ss, s + i * inner_stride * int64_t(ss), ss);
        cast_serial(tmp.data(), st, o, dt, inner);
      }
    }
  });
}

}  // namespace vt
