#include "peak.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <new>

#include "parallel.h"
#include "simd.h"

namespace vt {
namespace {

using Clock = std::chrono::steady_clock;

// Each kernel runs `iters` rounds of 16 independent FMAs per lane group (enough chains to cover the
// FMA latency of 4 cycles on 2 ports) and returns a value that depends on every result.
float fma_scalar(int64_t iters) {
  float acc[16];
  for (int i = 0; i < 16; ++i) acc[i] = 1.0f + i * 1e-3f;
  const float m = 0.999999f, a = 1e-7f;
  for (int64_t it = 0; it < iters; ++it)
    for (int i = 0; i < 16; ++i) acc[i] = acc[i] * m + a;
  float s = 0;
  for (float v : acc) s += v;
  return s;
}

double flops_per_iter_scalar() { return 16.0 * 2; }

}  // namespace
}  // namespace vt

#if VT_X86
#include <immintrin.h>
VT_AVX2_BEGIN
namespace vt {
namespace {
float fma_avx2(int64_t iters) {
  __m256 acc[12];
  for (int i = 0; i < 12; ++i) acc[i] = _mm256_set1_ps(1.0f + i * 1e-3f);
  const __m256 m = _mm256_set1_ps(0.999999f), a = _mm256_set1_ps(1e-7f);
  for (int64_t it = 0; it < iters; ++it)
    for (int i = 0; i < 12; ++i) acc[i] = _mm256_fmadd_ps(acc[i], m, a);
  __m256 s = acc[0];
  for (int i = 1; i < 12; ++i) s = _mm256_add_ps(s, acc[i]);
  float out[8];
  _mm256_storeu_ps(out, s);
  return out[0] + out[7];
}
}  // namespace
}  // namespace vt
VT_AVX2_END
VT_AVX512_BEGIN
namespace vt {
namespace {
float fma_avx512(int64_t iters) {
  __m512 acc[16];
  for (int i = 0; i < 16; ++i) acc[i] = _mm512_set1_ps(1.0f + i * 1e-3f);
  const __m512 m = _mm512_set1_ps(0.999999f), a = _mm512_set1_ps(1e-7f);
  for (int64_t it = 0; it < iters; ++it)
    for (int i = 0; i < 16; ++i) acc[i] = _mm512_fmadd_ps(acc[i], m, a);
  __m512 s = acc[0];
  for (int i = 1; i < 16; ++i) s = _mm512_add_ps(s, acc[i]);
  return _mm512_reduce_add_ps(s);
}
float sum_avx512(const float* p, int64_t n) {
  __m512 s0 = _mm512_setzero_ps(), s1 = _mm512_setzero_ps(), s2 = _mm512_setzero_ps(), s3 = _mm512_setzero_ps();
  int64_t i = 0;
  for (; i + 64 <= n; i += 64) {
    s0 = _mm512_add_ps(s0, _mm512_loadu_ps(p + i));
    s1 = _mm512_add_ps(s1, _mm512_loadu_ps(p + i + 16));
    s2 = _mm512_add_ps(s2, _mm512_loadu_ps(p + i + 32));
    s3 = _mm512_add_ps(s3, _mm512_loadu_ps(p + i + 48));
  }
  float s = _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(s0, s1), _mm512_add_ps(s2, s3)));
  for (; i < n; ++i) s += p[i];
  return s;
}
}  // namespace
}  // namespace vt
VT_AVX512_END
#endif

namespace vt {

double measure_fma_peak(int threads, double seconds) {
  const CpuFeatures& f = cpu();
  float (*kernel)(int64_t) = fma_scalar;
  double per_iter = flops_per_iter_scalar();
#if VT_X86
  if (f.use_avx512) { kernel = fma_avx512; per_iter = 16.0 * 16 * 2; }
  else if (f.use_avx2) { kernel = fma_avx2; per_iter = 12.0 * 8 * 2; }
#endif
  // Calibrate one chunk to ~20 ms, then run chunks until `seconds` have passed.
  int64_t iters = 1 << 16;
  for (;;) {
    auto t0 = Clock::now();
    volatile float sink = kernel(iters);
    (void)sink;
    double dt = std::chrono::duration<double>(Clock::now() - t0).count();
    if (dt > 0.02 || iters > (int64_t(1) << 34)) break;
    iters *= 2;
  }
  std::atomic<int64_t> total{0};
  auto t0 = Clock::now();
  parallel_run(threads, [&](int, int) {
    int64_t done = 0;
    volatile float sink = 0;
    while (std::chrono::duration<double>(Clock::now() - t0).count() < seconds) {
      sink = sink + kernel(iters);
      done += iters;
    }
    total += done;
  });
  double dt = std::chrono::duration<double>(Clock::now() - t0).count();
  return double(total.load()) * per_iter / dt / 1e9;
}

double measure_read_bandwidth(int threads, int64_t bytes, int repeats) {
  int64_t n = bytes / 4;
  std::unique_ptr<float[]> buf(new float[size_t(n)]);
  parallel_for(n, 1 << 20, [&](int64_t b, int64_t e) { for (int64_t i = b; i < e; ++i) buf[size_t(i)] = 1.0f; });
  double best = 0;
  for (int r = 0; r < repeats; ++r) {
    std::atomic<int> sink{0};
    auto t0 = Clock::now();
    parallel_run(threads, [&](int tid, int nth) {
      int64_t b = n * tid / nth, e = n * (tid + 1) / nth;
      float s = 0;
#if VT_X86
      if (cpu().use_avx512) s = sum_avx512(buf.get() + b, e - b);
      else
#endif
        for (int64_t i = b; i < e; ++i) s += buf[size_t(i)];
      sink += int(s) & 1;
    });
    double dt = std::chrono::duration<double>(Clock::now() - t0).count();
    best = std::max(best, double(bytes) / dt / 1e9);
  }
  return best;
}

}  // namespace vt
