// The bf16 GEMM's driver (gemm_bf16.h): the builtin GEMM's loops (gemm.cc: jc over NC columns,
// pc over KC depth, ic over MC rows, each thread a slice of the wider output dimension) around the
// VDPBF16PS microkernel, with panels of bf16 pairs; or, without AVX512_BF16, the f32 GEMM on
// operands rounded to bf16.
#include "gemm_bf16.h"

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <memory>
#include <new>
#include <vector>

#include "convert.h"
#include "gemm.h"
#include "parallel.h"
#include "simd.h"

namespace vt {
namespace {

// Blocking in values of k, as the f32 AVX-512 GEMM's (gemm_avx512.cc) but with KC doubled: a
// lane holds a pair, so a packed block of KC values takes the bytes of KC / 2 f32 values.
constexpr int MR = 12, NR = 32;
constexpr int64_t MC = 60, NC = 768, KC_MAX = 2048;

const detail::Bf16Kernels* kernels() {
  static detail::Bf16Kernels k;
  static const bool ok = detail::gemm_bf16_kernels_avx512(k);
  return ok ? &k : nullptr;
}

struct AlignedFree {
  void operator()(uint32_t* p) const { std::free(p); }
};

uint32_t* thread_buffer(int which, size_t lanes) {
  thread_local std::unique_ptr<uint32_t, AlignedFree> bufs[2];
  thread_local size_t caps[2] = {0, 0};
  if (caps[which] < lanes) {
    const size_t bytes = (lanes * sizeof(uint32_t) + 63) & ~size_t(63);
    bufs[which].reset(static_cast<uint32_t*>(std::aligned_alloc(64, bytes)));
    if (!bufs[which]) throw std::bad_alloc();
    caps[which] = lanes;
  }
  return bufs[which].get();
}

// One operand: its storage and how to pack a panel of it.
struct Operand {
  const void* p;
  DType dt;
  int64_t ld;
  bool trans_pack;  // rows of the storage run along k (A untransposed, B transposed)
  // Panel of W lanes: `width` rows/columns of op(X) from index i, k from pc, kc values.
  void pack(const detail::Bf16Kernels& k, int64_t i, int64_t pc, int64_t width, int64_t kc, uint32_t* out, int W) const {
    const int64_t off = trans_pack ? i * ld + pc : pc * ld + i;
    if (dt == DType::BF16) {
      const uint16_t* s = static_cast<const uint16_t*>(p) + off;
      trans_pack ? k.pack_trans_bf16(s, ld, width, kc, out, W) : k.pack_copy_bf16(s, ld, kc, width, out, W);
    } else {
      const float* s = static_cast<const float*>(p) + off;
      trans_pack ? k.pack_trans_f32(s, ld, width, kc, out, W) : k.pack_copy_f32(s, ld, kc, width, out, W);
    }
  }
};

void serial(const detail::Bf16Kernels& kern, int64_t M, int64_t N, int64_t K, float alpha, const Operand& A,
            const Operand& B, float beta, float* C, int64_t ldc) {
  // Depth blocks of equal, even size (pairs never straddle two blocks).
  const int64_t nblk = (K + KC_MAX - 1) / KC_MAX;
  const int64_t KC = ((K + nblk - 1) / nblk + 1) & ~int64_t(1);
  const int64_t nc_max = std::min<int64_t>(NC, (N + NR - 1) / NR * NR);
  const int64_t kp_max = (std::min(KC, K) + 1) / 2;
  uint32_t* bpack = thread_buffer(0, size_t(kp_max * nc_max));
  uint32_t* apack = thread_buffer(1, size_t(kp_max * MC));
  for (int64_t jc = 0; jc < N; jc += NC) {
    const int64_t nc = std::min(NC, N - jc);
    for (int64_t pc = 0; pc < K; pc += KC) {
      const int64_t kc = std::min(KC, K - pc), kp = (kc + 1) / 2;
      const float b_eff = pc == 0 ? beta : 1.0f;
      for (int64_t jr = 0; jr < nc; jr += NR) B.pack(kern, jc + jr, pc, std::min<int64_t>(NR, nc - jr), kc, bpack + jr * kp, NR);
      for (int64_t ic = 0; ic < M; ic += MC) {
        const int64_t mc = std::min(MC, M - ic);
        for (int64_t ir = 0; ir < mc; ir += MR) A.pack(kern, ic + ir, pc, std::min<int64_t>(MR, mc - ir), kc, apack + ir * kp, MR);
        for (int64_t jr = 0; jr < nc; jr += NR) {
          const int nr = int(std::min<int64_t>(NR, nc - jr));
          for (int64_t ir = 0; ir < mc; ir += MR)
            kern.ukr(kp, apack + ir * kp, bpack + jr * kp, C + (ic + ir) * ldc + jc + jr, ldc, alpha, b_eff,
                     int(std::min<int64_t>(MR, mc - ir)), nr);
        }
      }
    }
  }
}

const char* elem(const void* p, DType dt, int64_t off) {
  return static_cast<const char*>(p) + off * int64_t(dt == DType::BF16 ? 2 : 4);
}

// Without the kernels: op(X)'s storage (rows x cols, row stride ld) rounded to bf16 and widened
// back, contiguous.
std::vector<float> rounded(const void* p, DType dt, int64_t rows, int64_t cols, int64_t ld, bool serial_only) {
  std::vector<float> out(size_t(rows * cols));
  auto rows_of = [&](int64_t r0, int64_t r1) {
    std::vector<uint16_t> tmp(static_cast<size_t>(cols));
    for (int64_t r = r0; r < r1; ++r) {
      const void* row = elem(p, dt, r * ld);
      if (dt == DType::F32) cast(row, DType::F32, tmp.data(), DType::BF16, cols);
      cast(dt == DType::F32 ? tmp.data() : row, DType::BF16, out.data() + r * cols, DType::F32, cols);
    }
  };
  if (serial_only) rows_of(0, rows);
  else parallel_for(rows, 16, rows_of);
  return out;
}

std::atomic<bool> g_matmul_bf16{false};

void fallback(bool serial_only, bool transA, bool transB, int64_t M, int64_t N, int64_t K, float alpha, const void* A,
              DType adt, int64_t lda, const void* B, DType bdt, int64_t ldb, float beta, float* C, int64_t ldc) {
  const int64_t ar = transA ? K : M, ac = transA ? M : K, br = transB ? N : K, bc = transB ? K : N;
  const std::vector<float> a = rounded(A, adt, ar, ac, lda, serial_only), b = rounded(B, bdt, br, bc, ldb, serial_only);
  const int64_t la = std::max<int64_t>(ac, 1), lb = std::max<int64_t>(bc, 1);
  // The builtin GEMM, not Auto's pick: its threads own whole output tiles, so bf16 products give
  // the same bits on any thread count here too (OpenBLAS splits K for some shapes).
  if (serial_only)
    sgemm_serial(transA, transB, M, N, K, alpha, a.data(), la, b.data(), lb, beta, C, ldc);
  else
    sgemm(transA, transB, M, N, K, alpha, a.data(), la, b.data(), lb, beta, C, ldc, GemmImpl::Builtin);
}

// Operands as the threads' slices see them: [b, e) of the split dimension.
void run_part(const detail::Bf16Kernels& kern, bool split_n, int64_t b, int64_t e, bool transA, bool transB, int64_t M,
              int64_t N, int64_t K, float alpha, const void* A, DType adt, int64_t lda, const void* B, DType bdt,
              int64_t ldb, float beta, float* C, int64_t ldc) {
  if (split_n) {
    const Operand a{A, adt, lda, !transA}, bo{elem(B, bdt, transB ? b * ldb : b), bdt, ldb, transB};
    serial(kern, M, e - b, K, alpha, a, bo, beta, C + b, ldc);
  } else {
    const Operand a{elem(A, adt, transA ? b : b * lda), adt, lda, !transA}, bo{B, bdt, ldb, transB};
    serial(kern, e - b, N, K, alpha, a, bo, beta, C + b * ldc, ldc);
  }
}

}  // namespace

void set_matmul_bf16(bool on) { g_matmul_bf16.store(on, std::memory_order_relaxed); }
bool matmul_bf16() { return g_matmul_bf16.load(std::memory_order_relaxed); }

bool gemm_bf16_native() { return cpu().use_avx512 && cpu().avx512bf16 && kernels() != nullptr; }

void gemm_bf16(bool transA, bool transB, int64_t M, int64_t N, int64_t K, float alpha, const void* A, DType adt,
               int64_t lda, const void* B, DType bdt, int64_t ldb, float beta, float* C, int64_t ldc) {
  if (M <= 0 || N <= 0) return;
  if (!gemm_bf16_native() || K <= 0) return fallback(false, transA, transB, M, N, K, alpha, A, adt, lda, B, bdt, ldb, beta, C, ldc);
  const detail::Bf16Kernels& kern = *kernels();
  gemm_split(M, N, K, MR, NR, [&](bool split_n, int64_t b, int64_t e) {
    run_part(kern, split_n, b, e, transA, transB, M, N, K, alpha, A, adt, lda, B, bdt, ldb, beta, C, ldc);
  });
}

void sgemm_at(bool bf16, bool transA, bool transB, int64_t M, int64_t N, int64_t K, float alpha, const float* A,
              int64_t lda, const float* B, int64_t ldb, float beta, float* C, int64_t ldc) {
  if (bf16)
    gemm_bf16(transA, transB, M, N, K, alpha, A, DType::F32, lda, B, DType::F32, ldb, beta, C, ldc);
  else
    sgemm(transA, transB, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

void gemm_bf16_serial(bool transA, bool transB, int64_t M, int64_t N, int64_t K, float alpha, const void* A, DType adt,
                      int64_t lda, const void* B, DType bdt, int64_t ldb, float beta, float* C, int64_t ldc) {
  if (M <= 0 || N <= 0) return;
  if (!gemm_bf16_native() || K <= 0) return fallback(true, transA, transB, M, N, K, alpha, A, adt, lda, B, bdt, ldb, beta, C, ldc);
  run_part(*kernels(), true, 0, N, transA, transB, M, N, K, alpha, A, adt, lda, B, bdt, ldb, beta, C, ldc);
}

}  // namespace vt
