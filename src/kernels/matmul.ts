import { checkBoolean, checkNumber, checkOneOf, checkOptions } from '../errors.js';
import { precisionOption } from '../backend.js';
import { native, type StorageHandle } from '../native.js';
import { expectTensor, Tensor } from '../tensor.js';
import { checkNoOverlap } from './overlap.js';

export interface MatmulOptions {
  /** Use a^T (a is then [K, M]). */
  transA?: boolean;
  /** Use b^T (b is then [N, K]). */
  transB?: boolean;
  /** Write into this contiguous f32 [M, N] tensor instead of allocating. */
  out?: Tensor;
  /**
   * 'auto' (the fastest for this CPU: the builtin GEMM at AVX-512, OpenBLAS at AVX2 when its
   * kernels are AVX2 or better; `backend().gemm` says which and why), 'blas', 'builtin' (blocked
   * GEMM, AVX-512 12x32 / AVX2 6x16 / scalar microkernels) or 'naive' (reference triple loop).
   */
  impl?: 'auto' | 'blas' | 'builtin' | 'naive';
  /**
   * 'f32' or 'bf16' (default: the process's matmulPrecision(), 'f32' unless setMatmulPrecision
   * changed it; 'f32' on CUDA and for impl 'blas' / 'naive'). 'bf16': every element of op(a) and
   * op(b) rounded to bf16 (8 significant bits; bf16 tensors are taken as they are, so a and b may
   * then be bf16), the products summed in f32, as in PyTorch's bf16 autocast. On CPUs with
   * AVX512_BF16 (Zen 4, Sapphire Rapids, Cooper Lake; `backend().gemm.bf16` says) it runs at up
   * to twice the f32 rate; elsewhere it computes the same products with the f32 GEMM, no faster.
   * CPU only; `impl` must be 'auto' or 'builtin'.
   */
  precision?: 'f32' | 'bf16';
  /** Scales the product (default 1). */
  alpha?: number;
  /** out = alpha op(a) op(b) + beta out (default 0: out's values are not read). Needs `out`. */
  beta?: number;
}

function prepare(a: unknown, b: unknown, opts: MatmulOptions | undefined) {
  const o = checkOptions('options', opts);
  const impl = checkOneOf('impl', o.impl ?? 'auto', ['auto', 'blas', 'builtin', 'naive'] as const);
  // Unset: the process's matmul precision where it applies (the CPU's auto/builtin GEMM).
  const precision = precisionOption(o.precision, a instanceof Tensor ? a.device : 'cpu', 'tensor a', impl === 'auto' || impl === 'builtin');
  const dtypes = precision === 'bf16' ? ['f32', 'bf16'] as const : ['f32'] as const;
  const ta = expectTensor('a', a, { dtypes: [...dtypes], ndim: 2, layout: '[M, K]' });
  const tb = expectTensor('b', b, { dtypes: [...dtypes], ndim: 2, layout: '[K, N]' });
  const transA = o.transA === undefined ? false : checkBoolean('transA', o.transA);
  const transB = o.transB === undefined ? false : checkBoolean('transB', o.transB);
  if (precision === 'bf16' && impl !== 'auto' && impl !== 'builtin') throw new TypeError(`Expected impl 'auto' or 'builtin' with precision 'bf16' but received '${impl}'`);
  const FLT_MAX = 3.4028234663852886e38;  // alpha and beta are f32 in the GEMM
  const alpha = o.alpha === undefined ? 1 : checkNumber('alpha', o.alpha, -FLT_MAX, FLT_MAX);
  const beta = o.beta === undefined ? 0 : checkNumber('beta', o.beta, -FLT_MAX, FLT_MAX);
  if (beta !== 0 && o.out === undefined) throw new TypeError(`Expected out with beta = ${beta} (beta scales out's values) but received no out`);
  const [M, K] = transA ? [ta.shape[1]!, ta.shape[0]!] : [ta.shape[0]!, ta.shape[1]!];
  const [Kb, N] = transB ? [tb.shape[1]!, tb.shape[0]!] : [tb.shape[0]!, tb.shape[1]!];
  if (K !== Kb) {
    throw new RangeError(`Expected the inner dimensions to agree, but a gives K = ${K} (shape [${ta.shape.join(', ')}]${transA ? ', transposed' : ''}) and b gives K = ${Kb} (shape [${tb.shape.join(', ')}]${transB ? ', transposed' : ''})`);
  }
  if (ta.device !== tb.device) throw new TypeError(`Expected a and b on one device but received ${ta.device} and ${tb.device}`);
  let out: Tensor | undefined;
  if (o.out !== undefined) {
    out = expectTensor('out', o.out, { dtypes: ['f32'], ndim: 2, layout: '[M, N]' });
    if (out.shape[0] !== M || out.shape[1] !== N) throw new RangeError(`Expected out of shape [${M}, ${N}] but received [${out.shape.join(', ')}]`);
    if (!out.isContiguous) throw new TypeError('Expected a contiguous tensor for out but received a strided view');
    // C is written while A and B are read: any shared memory gives wrong numbers
    checkNoOverlap('out', out, 'a', ta);
    checkNoOverlap('out', out, 'b', tb);
  }
  return { ta, tb, transA, transB, impl, precision, out, M, N, alpha, beta };
}

function finish(h: StorageHandle | undefined, out: Tensor | undefined, M: number, N: number): Tensor {
  return out ?? Tensor._wrap(h!, 'f32', [M, N]);
}

/**
 * C = alpha op(a) op(b) (+ beta out) for 2-D f32 tensors (also bf16 with precision 'bf16'), on a
 * native thread (the event loop keeps running). a and b may be transposed views (a.transpose())
 * without a copy.
 */
export async function matmul(a: Tensor, b: Tensor, opts?: MatmulOptions): Promise<Tensor> {
  const p = prepare(a, b, opts);
  const h = await (native.matmul(p.ta._desc('a'), p.tb._desc('b'), p.out?._desc('out') ?? null, p.transA, p.transB, p.impl, true, p.alpha, p.beta, p.precision) as Promise<StorageHandle | undefined>);
  return finish(h, p.out, p.M, p.N);
}

/** The synchronous form of matmul(): blocks the calling thread. */
export function matmulSync(a: Tensor, b: Tensor, opts?: MatmulOptions): Tensor {
  const p = prepare(a, b, opts);
  const h = native.matmul(p.ta._desc('a'), p.tb._desc('b'), p.out?._desc('out') ?? null, p.transA, p.transB, p.impl, false, p.alpha, p.beta, p.precision) as StorageHandle | undefined;
  return finish(h, p.out, p.M, p.N);
}
