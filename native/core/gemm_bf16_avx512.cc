// AVX512_BF16 kernels of the bf16 GEMM (gemm_bf16.h): the 12 x 32 VDPBF16PS microkernel and the
// packers that round f32 to bf16 pairs (VCVTNE2PS2BF16, round to nearest even) or pair up bf16
// storage. Compiled for AVX512_BF16 only inside this file's target region; gemm_bf16.cc calls them
// only when cpu() reports the feature.
#include <cstdint>

#include "gemm_bf16.h"
#include "simd.h"

// GCC 10 and Clang 9 brought the AVX512_BF16 intrinsics; older compilers build the fallback only.
#if VT_X86 && ((defined(__clang__) && __clang_major__ >= 9) || (!defined(__clang__) && defined(__GNUC__) && __GNUC__ >= 10))
#define VT_HAVE_BF16_KERNELS 1
#include <immintrin.h>

#if defined(__GNUC__) && !defined(__clang__)
// GCC 12 warns inside its own intrinsics (_mm512_undefined_* initialise themselves on purpose).
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#endif

#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512bf16,avx2,fma,f16c"))), apply_to = function)
#else
#pragma GCC push_options
#pragma GCC target("avx512f,avx512bw,avx512vl,avx512dq,avx512bf16,avx2,fma,f16c")
#endif

#include "gemm_avx512_util.h"

namespace vt {
namespace detail {
namespace {

constexpr int MR = 12, NR = 32;

inline __m512bh as_bh(__m512i v) { return (__m512bh)v; }
inline __m512i as_si(__m512bh v) { return (__m512i)v; }

// R rows of the tile: 2R accumulators, per pair of k two B loads and R broadcasts of an A pair,
// 2R VDPBF16PS (4R products), in the f32 kernel's frame (gemm_avx512_util.h).
struct Ukr {
  template <int R>
  static void run(int64_t kp, const uint32_t* ap, const uint32_t* bp, float* c, int64_t ldc, float alpha, float beta, int n) {
    prefetch_tile_rows<R>(c, ldc);
    __m512 acc[R][2];
    for (int i = 0; i < R; ++i) acc[i][0] = acc[i][1] = _mm512_setzero_ps();
    for (int64_t k = 0; k < kp; ++k) {
      const __m512bh b0 = as_bh(_mm512_load_si512(bp)), b1 = as_bh(_mm512_load_si512(bp + 16));
      for (int i = 0; i < R; ++i) {
        const __m512bh a = as_bh(_mm512_set1_epi32(int(ap[i])));
        acc[i][0] = _mm512_dpbf16_ps(acc[i][0], a, b0);
        acc[i][1] = _mm512_dpbf16_ps(acc[i][1], a, b1);
      }
      ap += MR;
      bp += NR;
    }
    store_tile_rows<R>(acc, c, ldc, alpha, beta, n);
  }
};

void ukr_any(int64_t kp, const uint32_t* ap, const uint32_t* bp, float* c, int64_t ldc, float alpha, float beta, int m,
             int n) {
  run_rows<Ukr>(m, kp, ap, bp, c, ldc, alpha, beta, n);
}

// 32 values of one row along k (kn <= 32 valid, the rest 0) as 16 pairs.
inline __m512 pairs_f32(const float* p, int kn) {
  const __m512 x0 = _mm512_maskz_loadu_ps(lanes(kn), p), x1 = _mm512_maskz_loadu_ps(lanes(kn - 16), p + 16);
  return _mm512_castsi512_ps(as_si(_mm512_cvtne2ps_pbh(x1, x0)));  // low half from x0: pair d = (2d, 2d + 1)
}
inline __m512 pairs_bf16(const uint16_t* p, int kn) {
  const __mmask32 m = kn >= 32 ? __mmask32(0xFFFFFFFFu) : __mmask32((1u << kn) - 1u);  // 16-bit lanes: no read past kn
  return _mm512_castsi512_ps(_mm512_maskz_loadu_epi16(m, p));
}

// Groups of 16 rows, 32 values of k (16 pairs) at a time: one 16 x 16 transpose of 32-bit pairs.
template <typename T, __m512 (*Load)(const T*, int)>
void pack_trans(const T* src, int64_t ld, int64_t rows, int64_t kc, uint32_t* out, int W) {
  for (int g = 0; g < W; g += 16) {
    const int valid = int(rows - g < 0 ? 0 : rows - g > 16 ? 16 : rows - g);
    const __mmask16 store_mask = lanes(W - g);
    for (int64_t k0 = 0; k0 < kc; k0 += 32) {
      const int kn = int(kc - k0 < 32 ? kc - k0 : 32);
      __m512 r[16];
      for (int i = 0; i < 16; ++i) r[i] = i < valid ? Load(src + (g + i) * ld + k0, kn) : _mm512_setzero_ps();
      transpose16(r);
      uint32_t* o = out + (k0 / 2) * W + g;
      for (int d = 0; d < (kn + 1) / 2; ++d) _mm512_mask_storeu_ps(o + d * W, store_mask, r[d]);
    }
  }
}

// 16 columns of rows k and k + 1 (cols valid) as 16 pairs.
inline __m512i pair_rows_f32(const float* r0, const float* r1, int cols) {
  const __mmask16 m = lanes(cols);
  const __m256bh a = _mm512_cvtneps_pbh(_mm512_maskz_loadu_ps(m, r0));
  const __m256bh b = r1 ? _mm512_cvtneps_pbh(_mm512_maskz_loadu_ps(m, r1)) : _mm512_cvtneps_pbh(_mm512_setzero_ps());
  return _mm512_or_si512(_mm512_cvtepu16_epi32((__m256i)a), _mm512_slli_epi32(_mm512_cvtepu16_epi32((__m256i)b), 16));
}
inline __m512i pair_rows_bf16(const uint16_t* r0, const uint16_t* r1, int cols) {
  const __mmask16 m = lanes(cols);
  const __m256i a = _mm256_maskz_loadu_epi16(m, r0), b = r1 ? _mm256_maskz_loadu_epi16(m, r1) : _mm256_setzero_si256();
  return _mm512_or_si512(_mm512_cvtepu16_epi32(a), _mm512_slli_epi32(_mm512_cvtepu16_epi32(b), 16));
}

template <typename T, __m512i (*Pair)(const T*, const T*, int)>
void pack_copy(const T* src, int64_t ld, int64_t kc, int64_t cols, uint32_t* out, int W) {
  for (int64_t k = 0; k < kc; k += 2) {
    const T* r0 = src + k * ld;
    const T* r1 = k + 1 < kc ? r0 + ld : nullptr;
    uint32_t* o = out + (k / 2) * W;
    for (int j = 0; j < W; j += 16)
      _mm512_mask_storeu_epi32(o + j, lanes(W - j), Pair(r0 + j, r1 ? r1 + j : nullptr, int(cols - j)));
  }
}

}  // namespace

bool gemm_bf16_kernels_avx512(Bf16Kernels& k) {
  k.ukr = ukr_any;
  k.pack_trans_f32 = pack_trans<float, pairs_f32>;
  k.pack_trans_bf16 = pack_trans<uint16_t, pairs_bf16>;
  k.pack_copy_f32 = pack_copy<float, pair_rows_f32>;
  k.pack_copy_bf16 = pack_copy<uint16_t, pair_rows_bf16>;
  return true;
}

}  // namespace detail
}  // namespace vt

#if defined(__clang__)
#pragma clang attribute pop
#else
#pragma GCC pop_options
#endif

#else
namespace vt {
namespace detail {
bool gemm_bf16_kernels_avx512(Bf16Kernels&) { return false; }
}  // namespace detail
}  // namespace vt
#endif
