// Element casts and strided copies on CPU memory (semantics in cast_math.h).
#pragma once
#include <cstdint>

#include "dtype.h"

namespace vt {

// dst[i] = cast(src[i]) for contiguous arrays of n elements (same dtype: a copy).
void cast(const void* src, DType st, void* dst, DType dt, int64_t n);

// Gathers a strided view into contiguous dst, casting on the way. Strides are in elements of
// src (may be zero or negative), shape and strides have ndim entries; src points at the view's
// first element.
void copy_strided(const void* src, DType st, int ndim, const int64_t* shape, const int64_t* strides, void* dst,
                  DType dt);

namespace detail {
// AVX2/F16C bulk conversions (convert_avx2.cc); n any, tails handled inside.
void f32_to_f16_avx2(const float* src, uint16_t* dst, int64_t n);
void f16_to_f32_avx2(const uint16_t* src, float* dst, int64_t n);
void f32_to_bf16_avx2(const float* src, uint16_t* dst, int64_t n);
void bf16_to_f32_avx2(const uint16_t* src, float* dst, int64_t n);
}  // namespace detail

}  // namespace vt
