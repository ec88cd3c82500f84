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
 * Sets the process's matmul precision and returns the previous one. 'f32' (the default): every
 * GEMM multiplies f32 values. 'bf16': the GEMMs of the network (every layer's linears and the LM
 * head, forward and backward, on the CPU: generation's prefill and the training steps of sft(),
 * grpo/cdpo and reproduce) round their operands to bf16 and sum the products in f32, as PyTorch's
 * bf16 autocast does, and matmul(), linearLogprobs*() and linearCdpo() take it as the default of
 * their `precision` option. On CPUs with AVX512_BF16 (`backend().gemm.bf16.native`) those GEMMs
 * run at up to twice the f32 rate; elsewhere they compute the same products, no faster.
 * Unchanged: decode's GEMV (bandwidth-bound), attention, LoRA's small GEMMs, CUDA. Set it before
 * starting work: calls already running read it as they go.
 */
export function setMatmulPrecision(precision: 'f32' | 'bf16'): 'f32' | 'bf16' {
  checkOneOf('precision', precision, ['f32', 'bf16'] as const);
  return native.setMatmulPrecision(precision);
}

/** The process's matmul precision (setMatmulPrecision). */
export function matmulPrecision(): 'f32' | 'bf16' {
  return native.matmulPrecision();
}

/**
 * @internal A kernel's `precision` option: checked when given ('bf16' only for CPU tensors, `what`
 * names the tensor for the message); unset, the process's matmulPrecision() where bf16 products
 * apply (CPU tensors and `applies`), else 'f32'.
 */
export function precisionOption(given: unknown, device: string, what: string, applies = true): 'f32' | 'bf16' {
  if (given === undefined) return device === 'cpu' && applies ? matmulPrecision() : 'f32';
  const p = checkOneOf('precision', given, ['f32', 'bf16'] as const);
  if (p === 'bf16' && device !== 'cpu') throw new TypeError(`Expected CPU tensors for precision 'bf16' but received ${what} on ${device} (bf16 products run on the CPU)`);
  return p;
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
