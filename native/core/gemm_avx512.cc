// AVX-512 kernels of the builtin GEMM (gemm_kernels.h): the 12 x 32 microkernel and the packers.
// Compiled for AVX-512 only inside VT_AVX512_BEGIN/END; gemm.cc calls them only when cpu() allows.
#include <cstdint>

#include "gemm_kernels.h"
#include "simd.h"

#if VT_X86
#include <immintrin.h>

#if defined(__GNUC__) && !defined(__clang__)
// GCC 12 warns inside its own intrinsics (_mm512_undefined_ps initialises itself on purpose).
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif

VT_AVX512_BEGIN
#include "gemm_avx512_util.h"
namespace vt {
namespace detail {
namespace {

constexpr int MR = 12, NR = 32;

// R rows of the 12 x 32 tile: 2R zmm accumulators + 2 B vectors + 1 broadcast (27 of 32 at
// R = 12), 24 FMAs per pair of B loads; the frame (C prefetch, store) is gemm_avx512_util.h's.
struct Ukr {
  template <int R>
  static void run(int64_t kc, const float* ap, const float* bp, float* c, int64_t ldc, float alpha, float beta, int n) {
    prefetch_tile_rows<R>(c, ldc);
    __m512 acc[R][2];
    for (int i = 0; i < R; ++i) acc[i][0] = acc[i][1] = _mm512_setzero_ps();
    for (int64_t k = 0; k < kc; ++k) {
      const __m512 b0 = _mm512_load_ps(bp), b1 = _mm512_load_ps(bp + 16);
      for (int i = 0; i < R; ++i) {
        const __m512 a = _mm512_set1_ps(ap[i]);
        acc[i][0] = _mm512_fmadd_ps(a, b0, acc[i][0]);
        acc[i][1] = _mm512_fmadd_ps(a, b1, acc[i][1]);
      }
      ap += MR;
      bp += NR;
    }
    store_tile_rows<R>(acc, c, ldc, alpha, beta, n);
  }
};

void ukr_any(int64_t kc, const float* ap, const float* bp, float* c, int64_t ldc, float alpha, float beta, int m,
             int n) {
  run_rows<Ukr>(m, kc, ap, bp, c, ldc, alpha, beta, n);
}

// Groups of 16 rows, 16 values of k at a time: masked loads for the k tail, zero rows past
// `rows`, and only the panel's W lanes stored (12 of 16 for an A panel).
void pack_trans(const float* src, int64_t ld, int64_t rows, int64_t kc, float* out, int W) {
  for (int g = 0; g < W; g += 16) {
    const int valid = int(rows - g < 0 ? 0 : rows - g > 16 ? 16 : rows - g);
    const __mmask16 store_mask = lanes(W - g);
    for (int64_t k0 = 0; k0 < kc; k0 += 16) {
      const int kn = int(kc - k0 < 16 ? kc - k0 : 16);
      const __mmask16 kmask = lanes(kn);
      __m512 r[16];
      for (int i = 0; i < 16; ++i)
        r[i] = i < valid ? _mm512_maskz_loadu_ps(kmask, src + (g + i) * ld + k0) : _mm512_setzero_ps();
      transpose16(r);
      float* o = out + k0 * W + g;
      for (int k = 0; k < kn; ++k) _mm512_mask_storeu_ps(o + k * W, store_mask, r[k]);
    }
  }
}

void pack_copy(const float* src, int64_t ld, int64_t kc, int64_t cols, float* out, int W) {
  const __mmask16 m0 = lanes(int(cols)), m1 = lanes(int(cols) - 16);
  if (W == NR) {
    for (int64_t k = 0; k < kc; ++k) {
      _mm512_storeu_ps(out + k * NR, _mm512_maskz_loadu_ps(m0, src + k * ld));
      _mm512_storeu_ps(out + k * NR + 16, _mm512_maskz_loadu_ps(m1, src + k * ld + 16));
    }
  } else if (W == MR) {
    // 12 wide: one masked 16-lane load, a 12-lane store.
    for (int64_t k = 0; k < kc; ++k) _mm512_mask_storeu_ps(out + k * MR, lanes(MR), _mm512_maskz_loadu_ps(m0, src + k * ld));
  } else {
    gemm_pack_copy_scalar(src, ld, kc, cols, out, W);
  }
}

}  // namespace

// KC 1024 (K unsplit up to 1024): one Zen 4 core at 1024^3 went from 97 to 105-109 GFLOP/s
// against KC 256 (OpenBLAS Cooperlake: 97-101), the LM head's 256 x 4096 x 896 tile from 92 to
// 100-102 (OpenBLAS: 95-97). NC 768 keeps the packed B block at 3 MiB; MC 60 keeps packed A at
// 240 KiB (60 and 120 measured level here; 60 leaves room in a 512 KiB L2).
GemmKernels gemm_kernels_avx512() { return {MR, NR, 1024, 60, 768, ukr_any, pack_copy, pack_trans}; }

}  // namespace detail
}  // namespace vt
VT_AVX512_END

#else
namespace vt {
namespace detail {
GemmKernels gemm_kernels_avx512() { return gemm_kernels_scalar(); }
}  // namespace detail
}  // namespace vt
#endif
