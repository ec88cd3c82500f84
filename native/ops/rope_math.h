// Per-pair math of the rotary embedding (rotate-half convention: element j pairs with j + D/2),
// shared by the CPU path and the CUDA kernels (VT_HD). The backward is the inverse rotation.
#pragma once
#include <cmath>

#include "../core/hostdevice.h"

namespace vt {

// Rotates (a, b) by the angle whose cosine and sine are c and s (inverse: by minus it).
VT_HD void rope_rotate(float& a, float& b, float c, float s, bool inverse) {
  const float x = a, y = b;
  if (inverse) {
    a = x * c + y * s;
    b = y * c - x * s;
  } else {
    a = x * c - y * s;
    b = y * c + x * s;
  }
}

// The angle of frequency j at position p, in double (positions reach 10^5 and inv_freq spans
// ten orders of magnitude: float would lose the angle's low bits).
VT_HD double rope_angle(int p, float inv_freq) { return double(p) * double(inv_freq); }

}  // namespace vt
