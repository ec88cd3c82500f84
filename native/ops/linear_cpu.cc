// Linear layer on the CPU (linear.h). The forward multiplies in blocks of output columns so that
// a bf16/f16 weight is widened one block at a time (the widened block stays in cache for the
// GEMM); the backward is two whole-matrix GEMMs (the weight gradient is f32 and so is the
// master weight during training). Under the bf16 matmul precision (gemm_bf16.h) the GEMMs take
// bf16 products and read a bf16 weight as it is; the GEMV (T <= 8 rows: decode, bandwidth-bound)
// and the LoRA adapters' small GEMMs stay f32.
#include <algorithm>
#include <vector>

#include "../core/gemm.h"
#include "../core/gemm_bf16.h"
#include "../core/parallel.h"
#include "../core/vec.h"
#include "linear.h"

namespace vt {

namespace {
// Row n of a [N, K] weight in its storage.
const void* row_ptr(WeightRef w, int64_t n, int64_t K) {
  return static_cast<const char*>(w.data) + n * K * int64_t(dtype_size(w.dtype));
}

// y[t, n0:n1] += b[n0:n1]
void add_bias_columns(float* y, WeightRef b, int64_t T, int64_t N, int64_t n0, int64_t n1) {
  if (!b || n0 >= n1) return;
  float bb[kLinearBlockN];
  for (int64_t c0 = n0; c0 < n1; c0 += kLinearBlockN) {
    const int64_t c1 = std::min(n1, c0 + kLinearBlockN);
    for (int64_t n = c0; n < c1; n++) bb[n - c0] = load_f32(b.data, b.dtype, n);
    for (int64_t t = 0; t < T; t++) {
      float* yr = y + t * N;
      for (int64_t n = c0; n < c1; n++) yr[n] += bb[n - c0];
    }
  }
}

// Columns [n0, n1) of y: the GEMV for short inputs; else the serial builtin GEMM over the whole
// range when the weight is f32 (x is packed once per 3072 columns instead of once per 64-column
// block: the forward of four 0.5B layers at 128 tokens went from 102 to 118 GFLOP/s), or, for a
// bf16/f16 weight, blocks of kLinearWidenN rows widened first (256 rather than 64: x is packed
// a quarter as often; the widened block, 256 x K floats, still fits in L2 for K up to 512 and
// in L3 beyond).
constexpr int64_t kLinearWidenN = 256;
void forward_columns(float* y, const float* x, WeightRef w, WeightRef b, int64_t T, int64_t K, int64_t N, int64_t n0,
                     int64_t n1, ScratchBuffer<float>& ws) {
  if (n0 >= n1) return;
  if (T <= kLinearGemvRows) {
    gemv_rows(y, N, x, K, T, w.data, w.dtype, K, n0, n1);
  } else if (matmul_bf16() && w.dtype != DType::F16) {
    // bf16 products (setMatmulPrecision): an f32 or bf16 weight is packed as it is.
    gemm_bf16_serial(false, true, T, n1 - n0, K, 1.0f, x, DType::F32, K, row_ptr(w, n0, K), w.dtype, K, 0.0f, y + n0, N);
  } else if (w.dtype == DType::F32) {
    sgemm_serial(false, true, T, n1 - n0, K, 1.0f, x, K, static_cast<const float*>(w.data) + n0 * K, K, 0.0f, y + n0, N);
  } else {
    if (ws.size() < size_t(kLinearWidenN * K)) ws.reset(size_t(kLinearWidenN * K));
    for (int64_t c0 = n0; c0 < n1; c0 += kLinearWidenN) {
      const int64_t c1 = std::min(n1, c0 + kLinearWidenN);
      widen_rows(ws.data(), w.data, w.dtype, K, c0, c1);
      if (matmul_bf16())
        gemm_bf16_serial(false, true, T, c1 - c0, K, 1.0f, x, DType::F32, K, ws.data(), DType::F32, K, 0.0f, y + c0, N);
      else
        sgemm_serial(false, true, T, c1 - c0, K, 1.0f, x, K, ws.data(), K, 0.0f, y + c0, N);
    }
  }
  add_bias_columns(y, b, T, N, n0, n1);
}
}  // namespace

void linear_part_columns(int64_t T, int64_t N, int tid, int nth, int64_t& n0, int64_t& n1) {
  // The GEMV splits in 16-column units (one AVX-512 vector of outputs); the GEMM path in whole
  // blocks so that no block is widened twice.
  split_range(N, tid, nth, T <= kLinearGemvRows ? 16 : kLinearBlockN, n0, n1);
}

void linear_forward_part(float* y, const float* x, WeightRef w, WeightRef b, int64_t T, int64_t K, int64_t N, int tid,
                         int nth, ScratchBuffer<float>& ws) {
  if (T <= 0 || N <= 0) return;
  int64_t n0, n1;
  linear_part_columns(T, N, tid, nth, n0, n1);
  forward_columns(y, x, w, b, T, K, N, n0, n1, ws);
}

void linear_forward_cpu(float* y, const float* x, WeightRef w, WeightRef b, int64_t T, int64_t K, int64_t N) {
  if (T <= 0 || N <= 0) return;
  const int nth = std::max(num_threads(), 1);
  std::vector<ScratchBuffer<float>> ws(static_cast<size_t>(nth));
  if (T <= kLinearGemvRows) {
    parallel_run(nth, [&](int tid, int n) { linear_forward_part(y, x, w, b, T, K, N, tid, n, ws[size_t(tid)]); });
    return;
  }
  const bool bf16 = matmul_bf16();
  if (w.dtype == DType::F32 || (bf16 && w.dtype == DType::BF16)) {
    if (bf16)
      gemm_bf16(false, true, T, N, K, 1.0f, x, DType::F32, K, w.data, w.dtype, K, 0.0f, y, N);
    else
      sgemm(false, true, T, N, K, 1.0f, x, K, static_cast<const float*>(w.data), K, 0.0f, y, N);
    parallel_for(N, 256, [&](int64_t n0, int64_t n1) { add_bias_columns(y, b, T, N, n0, n1); });
    return;
  }
  // Blocks of widened rows handed out dynamically: threads that finish early take more.
  const int64_t nblocks = (N + kLinearWidenN - 1) / kLinearWidenN;
  parallel_chunks(nblocks, 1, [&](int64_t b0, int64_t b1, int tid) {
    forward_columns(y, x, w, b, T, K, N, b0 * kLinearWidenN, std::min(N, b1 * kLinearWidenN), ws[size_t(tid)]);
  });
}

void linear_backward_cpu(float* dx, float* dw, float* db, const float* dy, const float* x, WeightRef w, int64_t T,
                         int64_t K, int64_t N, bool accumulate_dx) {
  if (T <= 0 || N <= 0 || K <= 0) return;
  const bool bf16 = matmul_bf16();
  if (dx) {
    const float beta = accumulate_dx ? 1.0f : 0.0f;
    if (bf16 && w.dtype != DType::F16) {
      gemm_bf16(false, false, T, K, N, 1.0f, dy, DType::F32, N, w.data, w.dtype, K, beta, dx, K);
    } else if (w.dtype == DType::F32) {
      sgemm(false, false, T, K, N, 1.0f, dy, N, static_cast<const float*>(w.data), K, beta, dx, K);
    } else {
      // A frozen bf16/f16 weight (LoRA, frozen towers): widened once for this call.
      ScratchBuffer<float> wf(size_t(N * K));
      parallel_for(N, 64, [&](int64_t n0, int64_t n1) { widen_rows(wf.data() + n0 * K, w.data, w.dtype, K, n0, n1); });
      sgemm_at(bf16, false, false, T, K, N, 1.0f, dy, N, wf.data(), K, beta, dx, K);
    }
  }
  if (dw) sgemm_at(bf16, true, false, N, K, T, 1.0f, dy, N, x, K, 1.0f, dw, K);
  if (db) {
    // Column sums in double, columns split over threads (each owns its columns: no reduction).
    parallel_for(N, 256, [&](int64_t n0, int64_t n1) {
      std::vector<double> acc(size_t(n1 - n0), 0.0);
      for (int64_t t = 0; t < T; t++) {
        const float* r = dy + t * N;
        for (int64_t n = n0; n < n1; n++) acc[size_t(n - n0)] += r[n];
      }
      for (int64_t n = n0; n < n1; n++) db[n] += float(acc[size_t(n - n0)]);
    });
  }
}

void lora_down_rows(float* t, const float* x, const float* A, int64_t K, int64_t r, int64_t t0, int64_t t1) {
  for (int64_t i = t0; i < t1; i++)
    for (int64_t j = 0; j < r; j++) t[i * r + j] = vec_dot(x + i * K, A + j * K, K);
}

void lora_up_columns(float* y, const float* t, const float* B, float scale, int64_t T, int64_t N, int64_t r,
                     int64_t n0, int64_t n1) {
  for (int64_t i = 0; i < T; i++) {
    const float* ti = t + i * r;
    float* yi = y + i * N;
    for (int64_t n = n0; n < n1; n++) {
      float s = 0.0f;
      for (int64_t j = 0; j < r; j++) s += ti[j] * B[n * r + j];
      yi[n] += scale * s;
    }
  }
}

void lora_forward_cpu(float* y, float* t, const float* x, const float* A, const float* B, float scale, int64_t T,
                      int64_t K, int64_t N, int64_t r) {
  if (T <= 0 || r <= 0) return;
  // t = x A^T and y += scale t B^T as GEMMs: at rank 16 and hundreds of rows these are real
  // matrix products, not the per-row loops of the decode path.
  sgemm(false, true, T, r, K, 1.0f, x, K, A, K, 0.0f, t, r);
  sgemm(false, true, T, N, r, scale, t, r, B, r, 1.0f, y, N);
}

void lora_backward_cpu(float* dx, float* dA, float* dB, const float* dy, const float* x, const float* t, const float* A,
                       const float* B, float scale, int64_t T, int64_t K, int64_t N, int64_t r, float* ws) {
  if (T <= 0 || r <= 0) return;
  if (dB) sgemm(true, false, N, r, T, scale, dy, N, t, r, 1.0f, dB, r);
  if (!dA && !dx) return;
  sgemm(false, false, T, r, N, scale, dy, N, B, r, 0.0f, ws, r);  // u = scale dy B
  if (dA) sgemm(true, false, r, K, T, 1.0f, ws, r, x, K, 1.0f, dA, K);
  if (dx) sgemm(false, false, T, K, r, 1.0f, ws, r, A, K, 1.0f, dx, K);
}

}  // namespace vt
