// Rotary position embedding, forward and backward (CPU; CUDA forms in rope.cu): the decoder's
// M-RoPE (three position streams t, h, w over consecutive frequency sections), plain 1-D rotary
// (one stream) and the vision tower's 2-D rotary (row and column streams).
//
// A table of cos/sin (T, D/2) is built once per forward from the positions and shared by every
// layer, q and k, and the backward. Frequency j in [0, D/2) uses stream s(j): sections[s] gives
// each stream's count of consecutive frequencies; angle = pos[s(j) * T + t] * inv_freq[j].
#pragma once
#include <cstdint>

namespace vt {

// cs, sn (T, D/2) f32. pos (S, T) i32; inv_freq (D/2); sections (S), summing to D/2.
void rope_table_cpu(float* cs, float* sn, const int32_t* pos, const float* inv_freq, const int32_t* sections, int S,
                    int64_t T, int64_t D);
// x (T, H, D) rotated in place (inverse: the backward, dx from dy in place). Parallel inside.
void rope_apply_cpu(float* x, const float* cs, const float* sn, int64_t T, int64_t H, int64_t D, bool inverse);
// Rows [t0, t1) on the calling thread (team form).
void rope_apply_rows(float* x, const float* cs, const float* sn, int64_t H, int64_t D, int64_t t0, int64_t t1,
                     bool inverse);

// CUDA forms (x, cs, sn on `device`).
void rope_apply_cuda(float* x, const float* cs, const float* sn, int64_t T, int64_t H, int64_t D, bool inverse,
                     int device);

}  // namespace vt
