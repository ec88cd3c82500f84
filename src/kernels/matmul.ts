import { checkBoolean, checkOneOf, checkOptions } from '../errors.js';
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
  /** 'auto' (the BLAS when linked, else builtin), 'blas', 'builtin' (blocked AVX2 GEMM) or 'naive' (reference triple loop, for benchmarks). */
  impl?: 'auto' | 'blas' | 'builtin' | 'naive';
}

function prepare(a: unknown, b: unknown, opts: MatmulOptions | undefined) {
  const o = checkOptions('options', opts);
  const ta = expectTensor('a', a, { dtypes: ['f32'], ndim: 2, layout: '[M, K]' });
  const tb = expectTensor('b', b, { dtypes: ['f32'], ndim: 2, layout: '[K, N]' });
  const transA = o.transA === undefined ? false : checkBoolean('transA', o.transA);
  const transB = o.transB === undefined ? false : checkBoolean('transB', o.transB);
  const impl = checkOneOf('impl', o.impl ?? 'auto', ['auto', 'blas', 'builtin', 'naive'] as const);
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
  return { ta, tb, transA, transB, impl, out, M, N };
}

function finish(h: StorageHandle | undefined, out: Tensor | undefined, M: number, N: number): Tensor {
  return out ?? Tensor._wrap(h!, 'f32', [M, N]);
}

/**
 * C = op(a) op(b) for 2-D f32 tensors, on a native thread (the event loop keeps running).
 * a and b may be transposed views (a.transpose()) without a copy.
 */
export async function matmul(a: Tensor, b: Tensor, opts?: MatmulOptions): Promise<Tensor> {
  const p = prepare(a, b, opts);
  const h = await (native.matmul(p.ta._desc('a'), p.tb._desc('b'), p.out?._desc('out') ?? null, p.transA, p.transB, p.impl, true) as Promise<StorageHandle | undefined>);
  return finish(h, p.out, p.M, p.N);
}

/** The synchronous form of matmul(): blocks the calling thread. */
export function matmulSync(a: Tensor, b: Tensor, opts?: MatmulOptions): Tensor {
  const p = prepare(a, b, opts);
  const h = native.matmul(p.ta._desc('a'), p.tb._desc('b'), p.out?._desc('out') ?? null, p.transA, p.transB, p.impl, false) as StorageHandle | undefined;
  return finish(h, p.out, p.M, p.N);
}
