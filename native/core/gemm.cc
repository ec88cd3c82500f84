// Builtin GEMM: BLIS-style loops (jc over NC columns, pc over KC depth, ic over MC rows) around a
// register microkernel (12x32 AVX-512, 6x16 AVX2, 6x16 scalar). Packed A (MC x KC, 120 KiB) stays in L2 (512 KiB per core), packed
// B (KC x NC, 3 MiB) in L3; each thread owns a slice of columns (or rows when N is narrow), so
// threads share nothing and results do not depend on timing.
#include "gemm.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <memory>

#include "blas.h"
#include "gemm_math.h"
#include "parallel.h"
#include "simd.h"

namespace vt {
namespace {

constexpr int64_t KC = 256;
constexpr int64_t MC = 120;   // multiple of every kernel's mr (6, 12)
constexpr int64_t NC = 3072;  // multiple of every kernel's nr (16, 32)
constexpr int MR = kGemmMR, NR = kGemmNR;
constexpr int kMaxMR = 12, kMaxNR = 32;

// The register tile in use: chosen per call from the SIMD level.
struct Ukr {
  int mr, nr;
  GemmMicroKernel fn;
};
Ukr pick_ukr() {
  if (cpu().use_avx512) return {12, 32, detail::gemm_ukr_avx512_12x32};
  if (cpu().use_avx2) return {6, 16, detail::gemm_ukr_avx2};
  return {6, 16, detail::gemm_ukr_scalar};
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

// op(A)(i, k) for i in [0, mc), k in [0, kc) into MR-row panels, k-major, zero padded.
void pack_a(const float* A, int64_t lda, bool trans, int64_t mc, int64_t kc, float* out, int MRp) {
  for (int64_t i0 = 0; i0 < mc; i0 += MRp) {
    int64_t mr = std::min<int64_t>(MRp, mc - i0);
    for (int64_t k = 0; k < kc; ++k) {
      for (int64_t i = 0; i < mr; ++i) out[k * MRp + i] = trans ? A[k * lda + i0 + i] : A[(i0 + i) * lda + k];
      for (int64_t i = mr; i < MRp; ++i) out[k * MRp + i] = 0.0f;
    }
    out += kc * MRp;
  }
}

// op(B)(k, j) for k in [0, kc), j in [0, nc) into NR-column panels, k-major, zero padded.
void pack_b(const float* B, int64_t ldb, bool trans, int64_t kc, int64_t nc, float* out, int NRp) {
  for (int64_t j0 = 0; j0 < nc; j0 += NRp) {
    int64_t nr = std::min<int64_t>(NRp, nc - j0);
    if (!trans && nr == NRp) {
      for (int64_t k = 0; k < kc; ++k) std::memcpy(out + k * NRp, B + k * ldb + j0, size_t(NRp) * sizeof(float));
    } else {
      for (int64_t k = 0; k < kc; ++k) {
        for (int64_t j = 0; j < nr; ++j) out[k * NRp + j] = trans ? B[(j0 + j) * ldb + k] : B[k * ldb + j0 + j];
        for (int64_t j = nr; j < NRp; ++j) out[k * NRp + j] = 0.0f;
      }
    }
    out += kc * NRp;
  }
}

}  // namespace

namespace detail {
void gemm_ukr_scalar(int64_t kc, const float* ap, const float* bp, float* c, int64_t ldc, float alpha, float beta) {
  float acc[MR][NR] = {};
  tile_fma<MR, NR>(kc, ap, MR, bp, NR, acc);
  tile_store<MR, NR>(acc, c, ldc, MR, NR, alpha, beta);
}
}  // namespace detail

GemmMicroKernel gemm_microkernel() { return cpu().use_avx2 ? detail::gemm_ukr_avx2 : detail::gemm_ukr_scalar; }

void sgemm_serial(bool transA, bool transB, int64_t M, int64_t N, int64_t K, float alpha, const float* A,
                  int64_t lda, const float* B, int64_t ldb, float beta, float* C, int64_t ldc) {
  if (M <= 0 || N <= 0) return;
  if (K <= 0 || alpha == 0.0f) {
    for (int64_t i = 0; i < M; ++i)
      for (int64_t j = 0; j < N; ++j) C[i * ldc + j] = beta == 0.0f ? 0.0f : beta * C[i * ldc + j];
    return;
  }
  const Ukr u = pick_ukr();
  const int MRk = u.mr, NRk = u.nr;
  GemmMicroKernel ukr = u.fn;
  const int64_t nc_max = std::min<int64_t>(NC, (N + NRk - 1) / NRk * NRk);
  const int64_t kc_max = std::min<int64_t>(KC, K);
  float* bpack = thread_buffer(0, size_t(kc_max * nc_max));
  float* apack = thread_buffer(1, size_t(kc_max * MC));
  alignas(64) float edge[kMaxMR * kMaxNR];
  for (int64_t jc = 0; jc < N; jc += NC) {
    const int64_t nc = std::min(NC, N - jc);
    for (int64_t pc = 0; pc < K; pc += KC) {
      const int64_t kc = std::min(KC, K - pc);
      const float b_eff = pc == 0 ? beta : 1.0f;
      pack_b(transB ? B + jc * ldb + pc : B + pc * ldb + jc, ldb, transB, kc, nc, bpack, NRk);
      for (int64_t ic = 0; ic < M; ic += MC) {
        const int64_t mc = std::min(MC, M - ic);
        pack_a(transA ? A + pc * lda + ic : A + ic * lda + pc, lda, transA, mc, kc, apack, MRk);
        for (int64_t jr = 0; jr < nc; jr += NRk) {
          const int64_t nr = std::min<int64_t>(NRk, nc - jr);
          const float* bp = bpack + jr * kc;
          for (int64_t ir = 0; ir < mc; ir += MRk) {
            const int64_t mr = std::min<int64_t>(MRk, mc - ir);
            const float* ap = apack + ir * kc;
            float* c = C + (ic + ir) * ldc + jc + jr;
            if (mr == MRk && nr == NRk) {
              ukr(kc, ap, bp, c, ldc, alpha, b_eff);
            } else {
              // Edge tile: compute into a scratch tile, then add the valid part.
              ukr(kc, ap, bp, edge, NRk, alpha, 0.0f);
              for (int64_t i = 0; i < mr; ++i)
                for (int64_t j = 0; j < nr; ++j)
                  c[i * ldc + j] = b_eff == 0.0f ? edge[i * NRk + j] : edge[i * NRk + j] + b_eff * c[i * ldc + j];
            }
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

static void sgemm_builtin(bool transA, bool transB, int64_t M, int64_t N, int64_t K, float alpha, const float* A,
                          int64_t lda, const float* B, int64_t ldb, float beta, float* C, int64_t ldc) {
  const double flops = 2.0 * double(M) * double(N) * double(K);
  const int nth = flops < 2e6 ? 1 : num_threads();
  if (nth <= 1) {
    sgemm_serial(transA, transB, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
    return;
  }
  // Split the wider of the two output dimensions, in whole register tiles.
  const bool split_n = N >= M;
  const Ukr u = pick_ukr();
  const int64_t extent = split_n ? N : M, unit = split_n ? u.nr : u.mr;
  const int64_t tiles = (extent + unit - 1) / unit;
  parallel_run(int(std::min<int64_t>(nth, tiles)), [&](int tid, int nt) {
    const int64_t t0 = tiles * tid / nt, t1 = tiles * (tid + 1) / nt;
    const int64_t b = t0 * unit, e = std::min(extent, t1 * unit);
    if (b >= e) return;
    if (split_n)
      sgemm_serial(transA, transB, M, e - b, K, alpha, A, lda, transB ? B + b * ldb : B + b, ldb, beta, C + b, ldc);
    else
      sgemm_serial(transA, transB, e - b, N, K, alpha, transA ? A + b : A + b * lda, lda, B, ldb, beta, C + b * ldc,
                   ldc);
  });
}

void sgemm(bool transA, bool transB, int64_t M, int64_t N, int64_t K, float alpha, const float* A, int64_t lda,
           const float* B, int64_t ldb, float beta, float* C, int64_t ldc, GemmImpl impl) {
  const int64_t lim = int64_t(1) << 31;
  const bool fits32 = M < lim && N < lim && K < lim && lda < lim && ldb < lim && ldc < lim;
  if (impl == GemmImpl::Auto) impl = blas_available() && fits32 ? GemmImpl::Blas : GemmImpl::Builtin;
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
