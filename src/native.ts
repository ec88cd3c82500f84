// Loads the native addon and describes the core of its binding. Kernel families add their own
// functions to `Binding` by interface merging (see src/kernels/*.ts), so each family's binding
// sits beside its typed wrapper.
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const require = createRequire(import.meta.url);
/** The package root (this file is src/native.ts or dist/native.js). */
export const packageRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

/** Native memory behind one or more tensors. */
export interface StorageHandle {
  readonly bytes: number;
  /** -1 for CPU memory, else the CUDA device index. */
  readonly device: number;
  readonly released: boolean;
  release(): void;
  /** One external ArrayBuffer over the whole storage (CPU only); it keeps the memory alive. */
  arrayBuffer(): ArrayBuffer;
}

/** What native functions receive for a tensor argument. Sizes, strides and offset in elements. */
export interface TensorDesc {
  h: StorageHandle;
  dt: number;
  shape: number[];
  strides: number[];
  off: number;
}

export interface CudaDevice {
  index: number;
  name: string;
  computeCapability: string;
  totalMemory: number;
  multiprocessors: number;
}

export type SimdLevel = 'scalar' | 'avx2' | 'avx512';

export interface BackendInfo {
  /** Package version compiled into the addon. */
  version: string;
  /** SIMD features of this CPU. */
  simd: { sse42: boolean; avx: boolean; avx2: boolean; fma: boolean; f16c: boolean; avx512f: boolean; avx512bw: boolean; avx512vl: boolean; avx512dq: boolean; avx512bf16: boolean };
  /** Kernel level in use: 'avx512', 'avx2' (AVX2+FMA+F16C) or 'scalar'; capped by VT_SIMD or setSimdLevel(). */
  kernels: SimdLevel;
  /** The best level this CPU supports. */
  bestKernels: SimdLevel;
  /** Threads used by native parallel regions. */
  threads: number;
  /** The BLAS linked in ('OpenBLAS 0.3.21 ...') or 'none' (the builtin GEMM serves). */
  blas: string;
  /**
   * The GEMM that `matmul({ impl: 'auto' })` and every internal GEMM (model linears, LM head,
   * linearCdpo, backward passes) run on this CPU at the current SIMD level, and why: the builtin
   * GEMM at AVX-512, OpenBLAS at AVX2 when its kernels are AVX2 or better (README, "GEMM").
   */
  gemm: {
    auto: 'builtin' | 'blas';
    reason: string;
    /** Instruction set of the kernels OpenBLAS loaded ('AVX-512', 'AVX2', 'AVX', 'SSE', 'unknown', 'none'). */
    blasKernels: string;
    /** OpenBLAS's core name ('SkylakeX', 'Haswell', ...) or 'none'. */
    blasCore: string;
    /** OPENBLAS_CORETYPE as the environment set it (OpenBLAS honours it; the package never changes it), or null. */
    openblasCoretype: string | null;
    /**
     * What precision 'bf16' (matmul, linearLogprobs and its backward forms) runs: native (true) the
     * AVX512_BF16 kernels (VDPBF16PS, up to twice the f32 rate) at the avx512 level; otherwise the
     * f32 GEMM on operands rounded to bf16 (the same products, no faster).
     */
    bf16: { native: boolean; reason: string };
    /** The process's matmul precision (setMatmulPrecision): 'f32' unless set. */
    precision: 'f32' | 'bf16';
  };
  cuda: { compiled: boolean; runtime: string; architectures: number[]; devices: CudaDevice[] };
}

/** Native host memory held by tensors and kernel workspaces. */
export interface MemoryStats {
  /** Bytes allocated now. */
  liveBytes: number;
  /** Most bytes allocated at once since the last resetPeakMemory(). */
  peakBytes: number;
  /** Live allocations. */
  allocations: number;
  /**
   * Freed blocks (64 KiB to 64 MiB, at most 256 MiB) kept to serve the next allocation of the same
   * size without page faults; not part of liveBytes. Given back when an allocation fails.
   */
  cachedBytes: number;
}

export interface Binding {
  backend(): BackendInfo;
  setNumThreads(n: number): number;
  setSimdLevel(level: SimdLevel): SimdLevel;
  setMatmulPrecision(p: 'f32' | 'bf16'): 'f32' | 'bf16';
  matmulPrecision(): 'f32' | 'bf16';
  measureCeilings(threads?: number, seconds?: number): { fmaGflops: number; readGBs: number };
  memoryStats(): MemoryStats;
  resetPeakMemory(): void;
  alloc(bytes: number, device: number, zero?: boolean): StorageHandle;
  fromBytes(data: ArrayBufferView): StorageHandle;
  copyStrided(src: TensorDesc, dtype: number, async: boolean): StorageHandle | Promise<StorageHandle>;
  fillRandom(t: TensorDesc, kind: 'normal' | 'uniform', seed: number, a: number, b: number): void;
  toDevice(src: TensorDesc, device: number): StorageHandle;
  matmul(a: TensorDesc, b: TensorDesc, out: TensorDesc | null, transA: boolean, transB: boolean,
    impl: string, async: boolean, alpha: number, beta: number, precision?: 'f32' | 'bf16'): StorageHandle | undefined | Promise<StorageHandle | undefined>;
}

function load(): Binding {
  const override = process.env.VT_ADDON_PATH;
  const tried: string[] = [];
  if (override) {
    tried.push(path.resolve(override));
    try {
      return require(path.resolve(override)) as Binding;
    } catch (e) {
      throw loadError(tried, e);
    }
  }
  try {
    const nodeGypBuild = require('node-gyp-build') as { (dir: string): unknown; resolve?: (dir: string) => string };
    return nodeGypBuild(packageRoot) as Binding;
  } catch (e) {
    tried.push(path.join(packageRoot, 'prebuilds', `${process.platform}-${process.arch}`, '*.node'),
      path.join(packageRoot, 'build', 'Release', 'videothinker.node'));
    throw loadError(tried, e);
  }
}

function loadError(tried: string[], cause: unknown): Error {
  const msg = cause instanceof Error ? cause.message : String(cause);
  return new Error(
    `videothinker: could not load its native addon (${process.platform}-${process.arch}, Node ${process.version}, ` +
    `N-API ${process.versions.napi}).\nTried:\n  ${tried.join('\n  ')}\nCause: ${msg}\n` +
    'Fixes:\n' +
    '  - reinstall so that the prebuilt binary or the install-time build runs: npm rebuild videothinker\n' +
    '  - build from source in the package folder: npm run build (needs cmake, a C++17 compiler; OpenBLAS and nvcc optional)\n' +
    '  - an "invalid ELF header" or "wrong architecture" cause means node_modules came from another machine: reinstall there\n' +
    '  - set VT_ADDON_PATH to a videothinker.node you built yourself',
    { cause });
}

export const native: Binding = load();
