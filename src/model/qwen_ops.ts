// Typed wrappers of the Qwen2.5-VL CPU operators (native/model/qwen_ops*.cc). Activations are f32;
// weights may be bf16, f16 or f32 and are widened as they are read. Each operator has a Promise
// form (runs on a native worker thread) and a Sync form.
import { checkNumber } from '../errors.js';
import { native, type StorageHandle, type TensorDesc } from '../native.js';
import { expectTensor, Tensor } from '../tensor.js';

declare module '../native.js' {
  interface Binding {
    qwenLinear(x: TensorDesc, w: TensorDesc, b: TensorDesc | null, async: boolean): StorageHandle | Promise<StorageHandle>;
    qwenRmsNorm(x: TensorDesc, w: TensorDesc, eps: number, async: boolean): StorageHandle | Promise<StorageHandle>;
    qwenRope(x: TensorDesc, pos: TensorDesc, invFreq: TensorDesc, sections: TensorDesc, async: boolean): undefined | Promise<undefined>;
    qwenSwiglu(g: TensorDesc, u: TensorDesc, async: boolean): StorageHandle | Promise<StorageHandle>;
    qwenGelu(x: TensorDesc, async: boolean): StorageHandle | Promise<StorageHandle>;
    qwenEmbedding(ids: TensorDesc, table: TensorDesc, async: boolean): StorageHandle | Promise<StorageHandle>;
    qwenAttention(q: TensorDesc, k: TensorDesc, v: TensorDesc, cuQ: TensorDesc, cuK: TensorDesc, causal: boolean, scale: number, async: boolean): StorageHandle | Promise<StorageHandle>;
    qwenDecoderLayers(x: TensorDesc, layers: Record<string, TensorDesc>[], dims: DecoderDims, pos: TensorDesc, keyMask: TensorDesc | null,
      invFreq: TensorDesc, sections: TensorDesc, async: boolean): undefined | Promise<undefined>;
  }
}

/** Sizes of one decoder step (see native/model/qwen_ops.h). */
export interface DecoderDims { B: number; T: number; past: number; maxLen: number; Hq: number; Hkv: number; D: number; F: number; eps: number }

/**
 * A native call prepared for either form: `run(false)` executes now, `run(true)` returns a Promise.
 * Model code is written once as a generator of Jobs, driven by runSync or runAsync.
 */
export interface Job<T> { run(async: boolean): T | Promise<T> }
export type Program<R> = Generator<Job<unknown>, R, unknown>;

/** Yields a job and returns its result, typed. */
export function* call<T>(job: Job<T>): Generator<Job<unknown>, T, unknown> {
  return (yield job as Job<unknown>) as T;
}
export function runSync<R>(p: Program<R>): R {
  let r = p.next();
  while (!r.done) r = p.next(r.value.run(false));
  return r.value;
}
export async function runAsync<R>(p: Program<R>, signal?: AbortSignal): Promise<R> {
  let r = p.next();
  while (!r.done) {
    if (signal?.aborted) { p.return(undefined as R); throw signal.reason ?? new Error('Aborted'); }
    r = p.next(await r.value.run(true));
  }
  return r.value;
}

const WDT = ['f32', 'bf16', 'f16'] as const;
const wrap = (shape: readonly number[]) => (h: StorageHandle) => Tensor._wrap(h, 'f32', shape);
function job<T>(f: (async: boolean) => StorageHandle | Promise<StorageHandle>, shape: readonly number[]): Job<Tensor>;
function job(f: (async: boolean) => undefined | Promise<undefined>): Job<undefined>;
function job(f: (async: boolean) => unknown, shape?: readonly number[]): Job<unknown> {
  return {
    run(async: boolean) {
      const r = f(async);
      if (!shape) return r;
      return r instanceof Promise ? r.then((h) => wrap(shape)(h as StorageHandle)) : wrap(shape)(r as StorageHandle);
    },
  };
}
function contig(name: string, t: Tensor): Tensor {
  if (!t.isContiguous) throw new TypeError(`Expected a contiguous tensor for ${name} but received a strided view; call .contiguous() first`);
  if (t.device !== 'cpu') throw new TypeError(`Expected a CPU tensor for ${name} but received one on ${t.device}`);
  return t;
}

/** y [T, N] = x [T, K] @ weight [N, K]^T + bias [N]; weight/bias f32, bf16 or f16. */
export function linearJob(x: Tensor, weight: Tensor, bias?: Tensor | null): Job<Tensor> {
  expectTensor('x', x, { dtypes: ['f32'], ndim: 2, layout: '[T, K]' });
  expectTensor('weight', weight, { dtypes: WDT, ndim: 2, layout: '[N, K]' });
  if (weight.shape[1] !== x.shape[1]) throw new RangeError(`Expected weight of shape [N, ${x.shape[1]}] (K from x) but received [${weight.shape.join(', ')}]`);
  if (bias) {
    expectTensor('bias', bias, { dtypes: WDT, ndim: 1, layout: '[N]' });
    if (bias.shape[0] !== weight.shape[0]) throw new RangeError(`Expected bias of shape [${weight.shape[0]}] but received [${bias.shape.join(', ')}]`);
  }
  contig('x', x); contig('weight', weight); if (bias) contig('bias', bias);
  return job((a) => native.qwenLinear(x._desc('x'), weight._desc('weight'), bias ? bias._desc('bias') : null, a), [x.shape[0]!, weight.shape[0]!]);
}
/** RMSNorm over the last dimension: x [T, C] * rsqrt(mean(x^2) + eps) * weight [C]. */
export function rmsNormJob(x: Tensor, weight: Tensor, eps: number): Job<Tensor> {
  expectTensor('x', x, { dtypes: ['f32'], ndim: 2, layout: '[T, C]' });
  expectTensor('weight', weight, { dtypes: WDT, ndim: 1, layout: '[C]' });
  if (weight.shape[0] !== x.shape[1]) throw new RangeError(`Expected weight of shape [${x.shape[1]}] but received [${weight.shape.join(', ')}]`);
  checkNumber('eps', eps, 0);
  contig('x', x); contig('weight', weight);
  return job((a) => native.qwenRmsNorm(x._desc('x'), weight._desc('weight'), eps, a), x.shape);
}
/**
 * Rotary embedding in place on x [T, H, D] (rotate-half pairs j, j + D/2). Frequency j uses
 * position stream s(j): `sections` [S] gives each stream's count of consecutive frequencies
 * (M-RoPE: [t, h, w] = mrope_section; vision: [D/4, D/4] for rows and columns).
 * positions: i32 [S, T]; invFreq: f32 [D/2].
 */
export function ropeJob(x: Tensor, positions: Tensor, invFreq: Tensor, sections: Tensor): Job<undefined> {
  expectTensor('x', x, { dtypes: ['f32'], ndim: 3, layout: '[T, H, D]' });
  expectTensor('positions', positions, { dtypes: ['i32'], ndim: 2, layout: '[S, T]' });
  expectTensor('invFreq', invFreq, { dtypes: ['f32'], ndim: 1, layout: '[D/2]' });
  expectTensor('sections', sections, { dtypes: ['i32'], ndim: 1, layout: '[S]' });
  contig('x', x);
  return job((a) => native.qwenRope(x._desc('x'), positions._desc('positions'), invFreq._desc('invFreq'), sections._desc('sections'), a));
}
/** silu(gate) * up, both [T, F]. */
export function swigluJob(gate: Tensor, up: Tensor): Job<Tensor> {
  expectTensor('gate', gate, { dtypes: ['f32'], ndim: 2, layout: '[T, F]' });
  expectTensor('up', up, { dtypes: ['f32'], ndim: 2, layout: '[T, F]' });
  contig('gate', gate); contig('up', up);
  return job((a) => native.qwenSwiglu(gate._desc('gate'), up._desc('up'), a), gate.shape);
}
/** Exact (erf) GELU, any shape. */
export function geluJob(x: Tensor): Job<Tensor> {
  expectTensor('x', x, { dtypes: ['f32'] });
  contig('x', x);
  return job((a) => native.qwenGelu(x._desc('x'), a), x.shape);
}
/** Rows of table [V, C] (f32, bf16 or f16) for ids i32 [T], widened to f32 [T, C]. */
export function embeddingJob(ids: Tensor, table: Tensor): Job<Tensor> {
  expectTensor('ids', ids, { dtypes: ['i32'], ndim: 1, layout: '[T]' });
  expectTensor('table', table, { dtypes: WDT, ndim: 2, layout: '[V, C]' });
  contig('ids', ids); contig('table', table);
  return job((a) => native.qwenEmbedding(ids._desc('ids'), table._desc('table'), a), [ids.shape[0]!, table.shape[1]!]);
}
/**
 * Variable-length attention (GQA): q [Tq, Hq, D], k/v [Tk, Hkv, D], cuSeqlensQ/K i32 [nseq + 1].
 * The model's own CPU attention; causal masks are bottom-right aligned.
 */
export function attentionJob(q: Tensor, k: Tensor, v: Tensor, cuSeqlensQ: Tensor, cuSeqlensK: Tensor, causal: boolean, scale: number): Job<Tensor> {
  expectTensor('q', q, { dtypes: ['f32'], ndim: 3, layout: '[Tq, Hq, D]' });
  expectTensor('k', k, { dtypes: ['f32'], ndim: 3, layout: '[Tk, Hkv, D]' });
  expectTensor('v', v, { dtypes: ['f32'], ndim: 3, layout: '[Tk, Hkv, D]' });
  contig('q', q); contig('k', k); contig('v', v);
  return job((a) => native.qwenAttention(q._desc('q'), k._desc('k'), v._desc('v'), cuSeqlensQ._desc('cuSeqlensQ'), cuSeqlensK._desc('cuSeqlensK'), causal, scale, a), q.shape);
}

/** Promise and Sync forms of each operator. */
export const linear = async (x: Tensor, w: Tensor, b?: Tensor | null): Promise<Tensor> => linearJob(x, w, b).run(true);
export const linearSync = (x: Tensor, w: Tensor, b?: Tensor | null) => linearJob(x, w, b).run(false) as Tensor;
export const rmsNorm = async (x: Tensor, w: Tensor, eps: number): Promise<Tensor> => rmsNormJob(x, w, eps).run(true);
export const rmsNormSync = (x: Tensor, w: Tensor, eps: number) => rmsNormJob(x, w, eps).run(false) as Tensor;
export const rope = async (x: Tensor, p: Tensor, f: Tensor, s: Tensor): Promise<void> => { await ropeJob(x, p, f, s).run(true); };
export const ropeSync = (x: Tensor, p: Tensor, f: Tensor, s: Tensor): void => { ropeJob(x, p, f, s).run(false); };
export const swiglu = async (g: Tensor, u: Tensor): Promise<Tensor> => swigluJob(g, u).run(true);
export const swigluSync = (g: Tensor, u: Tensor) => swigluJob(g, u).run(false) as Tensor;
export const gelu = async (x: Tensor): Promise<Tensor> => geluJob(x).run(true);
export const geluSync = (x: Tensor) => geluJob(x).run(false) as Tensor;
export const embedding = async (ids: Tensor, t: Tensor): Promise<Tensor> => embeddingJob(ids, t).run(true);
export const embeddingSync = (ids: Tensor, t: Tensor) => embeddingJob(ids, t).run(false) as Tensor;
