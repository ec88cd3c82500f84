// Builtin GEMM: BLIS-style loops (jc over NC columns, pc over KC depth, ic over MC rows) around a
// register microkernel (12x32 AVX-512, 6x16 AVX2, 6x16 scalar; gemm_kernels.h, with each level's
// blocking and the measurements behind it). Packed A (MC x KC) stays in L2, packed B (KC x NC,
// 3 MiB) in L3; each thread owns a slice of columns (or rows when N is narrow), so threads share
// nothing and results do not depend on timing. Both
// operands are packed by SIMD code whatever their transposes (a row-major A and a transposed B
// need a transpose into k-major panels: 16 x 16 register transposes, not strided scalar reads).
#include "gemm.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <new>

#include "blas.h"
#include "gemm_kernels.h"
#include "gemm_math.h"
#include "parallel.h"
#include "simd.h"

namespace vt {
namespace {


// The kernel set of the SIMD level in use, chosen per call (setSimdLevel applies at once).
detail::GemmKernels pick_kernels() {
  detail::GemmKernels k = cpu().use_avx512 ? detail::gemm_kernels_avx512()
                          : cpu().use_avx2 ? detail::gemm_kernels_avx2()
                                           : detail::gemm_kernels_scalar();
#ifdef VT_GEMM_TUNE  // development builds only: try other blockings without recompiling
  auto env = [](const char* n, int64_t& v) { if (const char* e = std::getenv(n)) v = std::atoll(e); };
  env("VT_GEMM_KC", k.kc);
  env("VT_GEMM_MC", k.mc);
  env("VT_GEMM_NC", k.nc);
#endif
  return k;
}

struct AlignedFree {
  void operator()(float* p) const { std::free(p); }
};
using Buf = std::unique_ptr<float, AlignedFree>;

float* thread_buffer(int which, size_t floats) {
  thread_local Buf bufs[2];
  thread_local size_t caps[2] = {0, 0};
  if (caps[which] < floats) {
    size_t bytes = (floats * sizeof(float) + 63) & ~size_t(63);
    bufs[which].reset(static_cast<float*>(std::aligned_alloc(64, bytes)));
    if (!bufs[which]) throw std::bad_alloc();
    caps[which] = floats;
  }
  return bufs[which].get();
}

constexpr int SMR = 6, SNR = 16;  // the scalar tile

void ukr_scalar(int64_t kc, const float* ap, const float* bp, float* c, int64_t ldc, float alpha, float beta, int m,
                int n) {
  float acc[SMR][SNR] = {};
  tile_fma<SMR, SNR>(kc, ap, SMR, bp, SNR, acc);
  tile_store<SMR, SNR>(acc, c, ldc, m, n, alpha, beta);
}

}  // namespace

namespace detail {

void gemm_pack_copy_scalar(const float* src, int64_t ld, int64_t kc, int64_t cols, float* out, int W) {
  for (int64_t k = 0; k < kc; ++k) {
    std::memcpy(out + k * W, src + k * ld, size_t(cols) * sizeof(float));
    for (int64_t j = cols; j < W; ++j) out[k * W + j] = 0.0f;
  }
}

void gemm_pack_trans_scalar(const float* src, int64_t ld, int64_t rows, int64_t kc, float* out, int W) {
  // Row by row: each source row is read in order (the panel, kc x W floats, stays in cache).
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t k = 0; k < kc; ++k) out[k * W + r] = src[r * ld + k];
  for (int64_t r = rows; r < W; ++r)
    for (int64_t k = 0; k < kc; ++k) out[k * W + r] = 0.0f;
}

GemmKernels gemm_kernels_scalar() {
  return {SMR, SNR, 256, 120, 3072, ukr_scalar, gemm_pack_copy_scalar, gemm_pack_trans_scalar};
}

}  // namespace detail

void sgemm_serial(bool transA, bool transB, int64_t M, int64_t N, int64_t K, float alpha, const float* A,
                  int64_t lda, const float* B, int64_t ldb, float beta, float* C, int64_t ldc) {
  if (M <= 0 || N <= 0) return;
  if (K <= 0 || alpha == 0.0f) {
    for (int64_t i = 0; i < M; ++i)
      for (int64_t j = 0; j < N; ++j) C[i * ldc + j] = beta == 0.0f ? 0.0f : beta * C[i * ldc + j];
    return;
  }
  const detail::GemmKernels kern = pick_kernels();
  const int MRk = kern.mr, NRk = kern.nr;
  const int64_t MC = kern.mc, NC = kern.nc;
  // Depth blocks of equal size (K 1030 with KC 1024: two of 515, not 1024 and a pass of 6).
  const int64_t KC = (K + (K + kern.kc - 1) / kern.kc - 1) / ((K + kern.kc - 1) / kern.kc);
  const int64_t nc_max = std::min<int64_t>(NC, (N + NRk - 1) / NRk * NRk);
  const int64_t kc_max = std::min<int64_t>(KC, K);
  float* bpack = thread_buffer(0, size_t(kc_max * nc_max));
  float* apack = thread_buffer(1, size_t(kc_max * MC));
  for (int64_t jc = 0; jc < N; jc += NC) {
    const int64_t nc = std::min(NC, N - jc);
    for (int64_t pc = 0; pc < K; pc += KC) {
      const int64_t kc = std::min(KC, K - pc);
      const float b_eff = pc == 0 ? beta : 1.0f;
      for (int64_t jr = 0; jr < nc; jr += NRk) {
        const int64_t nr = std::min<int64_t>(NRk, nc - jr), j = jc + jr;
        if (transB)
          kern.pack_trans(B + j * ldb + pc, ldb, nr, kc, bpack + jr * kc, NRk);
        else
          kern.pack_copy(B + pc * ldb + j, ldb, kc, nr, bpack + jr * kc, NRk);
      }
      for (int64_t ic = 0; ic < M; ic += MC) {
        const int64_t mc = std::min(MC, M - ic);
        for (int64_t ir = 0; ir < mc; ir += MRk) {
          const int64_t mr = std::min<int64_t>(MRk, mc - ir), i = ic + ir;
          if (transA)
            kern.pack_copy(A + pc * lda + i, lda, kc, mr, apack + ir * kc, MRk);
          else
            kern.pack_trans(A + i * lda + pc, lda, mr, kc, apack + ir * kc, MRk);
        }
        for (int64_t jr = 0; jr < nc; jr += NRk) {
          const int nr = int(std::min<int64_t>(NRk, nc - jr));
          const float* bp = bpack + jr * kc;
          for (int64_t ir = 0; ir < mc; ir += MRk) {
            const int mr = int(std::min<int64_t>(MRk, mc - ir));
            kern.ukr(kc, apack + ir * kc, bp, C + (ic + ir) * ldc + jc + jr, ldc, alpha, b_eff, mr, nr);
          }
        }
      }
    }
  }
}

static void sgemm_naive(bool transA, bool transB, int64_t M, int64_t N, int64_t K, float alpha, const float* A,
                        int64_t lda, const float* B, int64_t ldb, float beta, float* C, int64_t ldc) {
  for (int64_t i = 0; i < M; ++i)
    for (int64_t j = 0; j < N; ++j) {
      float s = 0.0f;
      for (int64_t k = 0; k < K; ++k)
        s += (transA ? A[k * lda + i] : A[i * lda + k]) * (transB ? B[j * ldb + k] : B[k * ldb + j]);
      C[i * ldc + j] = beta == 0.0f ? alpha * s : alpha * s + beta * C[i * ldc + j];
    }
}

void gemm_split(int64_t M, int64_t N, int64_t K, int mr, int nr,
                const std::function<void(bool split_n, int64_t b, int64_t e)>& run) {
  const double flops = 2.0 * double(M) * double(N) * double(K);
  const int nth = flops < 2e6 ? 1 : num_threads();
  // Split the wider of the two output dimensions, in whole register tiles.
  const bool split_n = N >= M;
  const int64_t extent = split_n ? N : M, unit = split_n ? nr : mr;
  if (nth <= 1) {
    run(split_n, 0, extent);
    return;
  }
  const int64_t tiles = (extent + unit - 1) / unit;
  parallel_run(int(std::min<int64_t>(nth, tiles)), [&](int tid, int nt) {
    const int64_t t0 = tiles * tid / nt, t1 = tiles * (tid + 1) / nt;
    const int64_t b = t0 * unit, e = std::min(extent, t1 * unit);
    if (b < e) run(split_n, b, e);
  });
}

static void sgemm_builtin(bool transA, bool transB, int64_t M, int64_t N, int64_t K, float alpha, const float* A,
                          int64_t lda, const float* B, int64_t ldb, float beta, float* C, int64_t ldc) {
  const detail::GemmKernels kern = pick_kernels();
  gemm_split(M, N, K, kern.mr, kern.nr, [&](bool split_n, int64_t b, int64_t e) {
    if (split_n)
      sgemm_serial(transA, transB, M, e - b, K, alpha, A, lda, transB ? B + b * ldb : B + b, ldb, beta, C + b, ldc);
    else
      sgemm_serial(transA, transB, e - b, N, K, alpha, transA ? A + b : A + b * lda, lda, B, ldb, beta, C + b * ldc,
                   ldc);
  });
}

// What Auto runs: a rule on instruction sets, decided per call from (SIMD level in use, OpenBLAS's
// kernel set) and never by timing, so that a process computes the same bits from one run to the
// next (a timed calibration on a shared 2-vCPU machine flips between the two under load, and the
// two GEMMs round differently). Measured on one Zen 4 core (thread CPU time, so that other jobs on
// the machine do not count):
//  - builtin AVX-512 vs OpenBLAS AVX-512 (Cooperlake): 1024^3 105-109 vs 97-101 GFLOP/s, the LM
//    head's 256 x 4096 x 896 tile 100-102 vs 95-97. The builtin also runs on the package's own
//    pool: after an OpenBLAS call its idle threads spin, 40 ms of CPU in the next 50 ms and ~50 ms
//    more in the 450 ms after (the caller asleep; none after a builtin call), taken from the
//    kernels that follow (attention, log-softmax) on a 2-core machine.
//  - builtin AVX-512 vs OpenBLAS pinned to Haswell (OPENBLAS_CORETYPE=Haswell, as CI environments
//    set it): on Intel AVX-512 parts the builtin is ~1.7x faster (issue 15: 318 vs 190 GFLOP/s
//    at 1024^3, 2 threads); on Zen 4, whose AVX-512 runs on 256-bit units, the two are level.
//  - builtin AVX2 vs OpenBLAS Haswell at the AVX2 level: OpenBLAS 105 vs builtin 102 (1024^3),
//    96 vs 96 (LM-head tile) here; on an Intel AVX2 part issue 15 measured 164 vs ~190, so
//    OpenBLAS keeps the AVX2 level when its kernels are AVX2 or better.
//  - OpenBLAS below the builtin level (its SSE fallback for a CPU it does not know, or a pin):
//    the builtin.
GemmChoice gemm_auto() {
  if (!blas_available()) return {GemmImpl::Builtin, "no BLAS is linked: the builtin GEMM"};
  // VT_GEMM=blas|builtin overrides the rule (A/B runs of whole models, e.g. the training bench).
  static const char* const env = std::getenv("VT_GEMM");
  if (env && std::strcmp(env, "blas") == 0) return {GemmImpl::Blas, "OpenBLAS: VT_GEMM=blas set in the environment"};
  if (env && std::strcmp(env, "builtin") == 0) return {GemmImpl::Builtin, "builtin GEMM: VT_GEMM=builtin set in the environment"};
  const BlasKernels bk = blas_kernels();
  const SimdLevel lv = cpu().level;
  const bool pinned = blas_coretype_env() != nullptr;
  if (lv == SimdLevel::Avx512) {
    if (bk == BlasKernels::Avx512)
      return {GemmImpl::Builtin,
              "builtin AVX-512 GEMM: as fast as OpenBLAS's AVX-512 kernels, and on the package's own threads"};
    return {GemmImpl::Builtin, pinned ? "builtin AVX-512 GEMM: OPENBLAS_CORETYPE pins OpenBLAS to kernels below this CPU's AVX-512"
                                      : "builtin AVX-512 GEMM: OpenBLAS runs kernels below this CPU's AVX-512"};
  }
  if (lv == SimdLevel::Avx2) {
    if (bk == BlasKernels::Avx2 || bk == BlasKernels::Avx512)
      return {GemmImpl::Blas, "OpenBLAS: its AVX2/AVX-512 kernels beat the builtin AVX2 GEMM"};
    return {GemmImpl::Builtin, pinned ? "builtin AVX2 GEMM: OPENBLAS_CORETYPE pins OpenBLAS to kernels below AVX2"
                                      : "builtin AVX2 GEMM: OpenBLAS runs kernels below AVX2 (a CPU it does not know)"};
  }
  return {GemmImpl::Blas, "OpenBLAS: the builtin GEMM is at the scalar level (VT_SIMD or setSimdLevel)"};
}

void sgemm(bool transA, bool transB, int64_t M, int64_t N, int64_t K, float alpha, const float* A, int64_t lda,
           const float* B, int64_t ldb, float beta, float* C, int64_t ldc, GemmImpl impl) {
  const int64_t lim = int64_t(1) << 31;
  const bool fits32 = M < lim && N < lim && K < lim && lda < lim && ldb < lim && ldc < lim;
  if (impl == GemmImpl::Auto) impl = gemm_auto().impl;
  switch (impl) {
    case GemmImpl::Blas:
      if (blas_available() && fits32 && M > 0 && N > 0 && K > 0) {
        blas_sgemm(transA, transB, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
        return;
      }
      [[fallthrough]];
    case GemmImpl::Auto:
    case GemmImpl::Builtin:
      sgemm_builtin(transA, transB, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
      return;
    case GemmImpl::Naive:
      sgemm_naive(transA, transB, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
      return;
  }
}

}  // namespace vt
