// Scalar IEEE binary16 (f16) and bfloat16 (bf16) conversions, shared by the CPU code and the
// CUDA kernels (VT_HD). Narrowing rounds to nearest, ties to even, as numpy and PyTorch do.
//
// NaN policy. numpy and PyTorch agree on every non-NaN value and disagree on NaN encodings
// (PyTorch quiets and canonicalises; its own scalar and vector bf16 paths differ), so:
//   f16 <-> f32 follows numpy bit for bit: f16 -> f32 shifts the payload into the f32 mantissa
//   without quieting; f32 -> f16 keeps the sign and the payload's top 10 bits, and a payload that
//   would vanish becomes 1 (a NaN never turns into Inf).
//   bf16 -> f32: exact (the bf16 bits are the f32's upper half).
//   f32 -> bf16: NaN becomes 0x7FC0 (PyTorch's scalar c10::BFloat16 rule).
#pragma once
#include <cstdint>
#include <cstring>
#include "hostdevice.h"

namespace vt {

VT_HD uint32_t f32_bits(float f) { uint32_t u; memcpy(&u, &f, 4); return u; }
VT_HD float bits_f32(uint32_t u) { float f; memcpy(&f, &u, 4); return f; }

VT_HD float bf16_to_f32(uint16_t h) { return bits_f32(uint32_t(h) << 16); }

VT_HD uint16_t f32_to_bf16(float f) {
  uint32_t u = f32_bits(f);
  if ((u & 0x7FFFFFFFu) > 0x7F800000u) return 0x7FC0;  // NaN
  uint32_t bias = 0x7FFFu + ((u >> 16) & 1u);          // ties to even
  return uint16_t((u + bias) >> 16);
}

VT_HD float f16_to_f32(uint16_t h) {
  uint32_t sign = uint32_t(h & 0x8000u) << 16;
  uint32_t exp = (h >> 10) & 0x1Fu;
  uint32_t man = h & 0x3FFu;
  uint32_t u;
  if (exp == 0x1F) {
    u = sign | 0x7F800000u | (man << 13);  // Inf or NaN, payload kept
  } else if (exp != 0) {
    u = sign | ((exp + 112u) << 23) | (man << 13);  // normal: rebias 15 -> 127
  } else if (man == 0) {
    u = sign;  // signed zero
  } else {
    // subnormal: value = man * 2^-24; normalise the mantissa
    int e = -1;
    do { man <<= 1; ++e; } while ((man & 0x400u) == 0);
    u = sign | (uint32_t(112 - e) << 23) | ((man & 0x3FFu) << 13);
  }
  return bits_f32(u);
}

VT_HD uint16_t f32_to_f16(float f) {
  uint32_t u = f32_bits(f);
  uint16_t sign = uint16_t((u >> 16) & 0x8000u);
  uint32_t a = u & 0x7FFFFFFFu;
  if (a > 0x7F800000u) {  // NaN: numpy's rule
    uint32_t payload = (a >> 13) & 0x3FFu;
    return uint16_t(sign | 0x7C00u | (payload ? payload : 1u));
  }
  if (a >= 0x477FF000u) return uint16_t(sign | 0x7C00u);  // rounds to >= 65520: Inf
  if (a >= 0x38800000u) {
    // normal f16 range: drop 13 mantissa bits with ties-to-even, rebias 127 -> 15
    uint32_t r = a + 0x0FFFu + ((a >> 13) & 1u);
    return uint16_t(sign | ((r - 0x38000000u) >> 13));
  }
  if (a < 0x33000000u) return sign;  // below half of the smallest subnormal (2^-25): zero
  // subnormal f16: shift the full 24-bit significand right and round ties-to-even
  uint32_t exp = a >> 23;             // 102..112
  uint32_t man = (a & 0x7FFFFFu) | 0x800000u;
  uint32_t shift = 126u - exp;        // 14..24: value / 2^-24 = man >> shift
  uint32_t q = man >> shift;
  uint32_t rem = man & ((1u << shift) - 1u);
  uint32_t half = 1u << (shift - 1u);
  if (rem > half || (rem == half && (q & 1u))) ++q;
  return uint16_t(sign | q);
}

}  // namespace vt
