import { checkInteger } from './errors.js';
import { native, type BackendInfo } from './native.js';

export type { BackendInfo, CudaDevice } from './native.js';

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

/** Disables (true) or re-enables (false) the AVX2 kernels at run time; returns the previous state. Tests use it to cover the scalar paths; VT_SIMD=scalar does the same at start. */
export function setForceScalar(on: boolean): boolean {
  return native.setForceScalar(on === true);
}
