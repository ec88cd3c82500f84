import { checkInteger, checkOneOf } from './errors.js';
import { native, type BackendInfo, type MemoryStats, type SimdLevel } from './native.js';

export type { BackendInfo, CudaDevice, MemoryStats, SimdLevel } from './native.js';

/** What the native backend has: version, SIMD features and kernel set, threads, BLAS, CUDA. */
export function backend(): BackendInfo {
  return native.backend();
}

/**
 * Sets the threads native kernels use (also the BLAS's); returns the previous count. The
 * default is VT_NUM_THREADS from the environment, else the machine's hardware threads.
 */
export function setNumThreads(n: number): number {
  checkInteger('n', n, 1, 256);
  return native.setNumThreads(n);
}

/**
 * Caps the SIMD level of the native kernels ('scalar', 'avx2', 'avx512'; never above what the CPU
 * has) and returns the previous level. Tests use it to cover every path; VT_SIMD does the same at
 * start. Takes effect for calls started afterwards.
 */
export function setSimdLevel(level: SimdLevel): SimdLevel {
  checkOneOf('level', level, ['scalar', 'avx2', 'avx512'] as const);
  return native.setSimdLevel(level);
}

/**
 * Native host memory in use by tensors and kernel workspaces (exact byte counts, unlike RSS,
 * which also holds allocator caches). `peakBytes` is the high-water mark since resetPeakMemory().
 */
export function memoryStats(): MemoryStats {
  return native.memoryStats();
}

/** Starts a new high-water window for memoryStats().peakBytes (at the bytes live now). */
export function resetPeakMemory(): void {
  native.resetPeakMemory();
}
