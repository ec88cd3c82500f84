// Rotary embedding on the CPU (rope.h), the pair math from rope_math.h.
#include <vector>

#include "../core/parallel.h"
#include "rope.h"
#include "rope_math.h"

namespace vt {

void rope_table_cpu(float* cs, float* sn, const int32_t* pos, const float* inv_freq, const int32_t* sections, int S,
                    int64_t T, int64_t D) {
  const int64_t half = D / 2;
  std::vector<int> stream(size_t(half), 0);
  int64_t j = 0;
  for (int s = 0; s < S; s++)
    for (int32_t c = 0; c < sections[s] && j < half; c++) stream[size_t(j++)] = s;
  parallel_for(T, 16, [&](int64_t t0, int64_t t1) {
    for (int64_t t = t0; t < t1; t++)
      for (int64_t k = 0; k < half; k++) {
        const double a = rope_angle(pos[int64_t(stream[size_t(k)]) * T + t], inv_freq[k]);
        cs[t * half + k] = float(std::cos(a));
        sn[t * half + k] = float(std::sin(a));
      }
  });
}

void rope_apply_rows(float* x, const float* cs, const float* sn, int64_t H, int64_t D, int64_t t0, int64_t t1,
                     bool inverse) {
  const int64_t half = D / 2;
  for (int64_t t = t0; t < t1; t++) {
    const float* c = cs + t * half;
    const float* s = sn + t * half;
    for (int64_t h = 0; h < H; h++) {
      float* r = x + (t * H + h) * D;
      for (int64_t k = 0; k < half; k++) rope_rotate(r[k], r[k + half], c[k], s[k], inverse);
    }
  }
}

void rope_apply_cpu(float* x, const float* cs, const float* sn, int64_t T, int64_t H, int64_t D, bool inverse) {
  parallel_for(T, 8, [&](int64_t t0, int64_t t1) { rope_apply_rows(x, cs, sn, H, D, t0, t1, inverse); });
}

}  // namespace vt
