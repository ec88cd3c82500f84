// Fused attention for the vision encoder (windows and whole frames, bidirectional) and the
// decoder (causal, grouped-query), over packed variable-length segments, forward and backward.
import { checkBoolean, checkNumber, checkOptions, typeError } from '../errors.js';
import { native, type StorageHandle, type TensorDesc } from '../native.js';
import { expectTensor, indexTensor, Tensor } from '../tensor.js';

type Fwd = { out: StorageHandle; lse: StorageHandle };
type Bwd = { dq: StorageHandle; dk: StorageHandle; dv: StorageHandle };

declare module '../native.js' {
  interface Binding {
    attention(q: TensorDesc, k: TensorDesc, v: TensorDesc, cuQ: TensorDesc, cuK: TensorDesc, causal: boolean,
      scale: number | undefined, async: boolean): Fwd | Promise<Fwd>;
    attentionBackward(q: TensorDesc, k: TensorDesc, v: TensorDesc, out: TensorDesc, lse: TensorDesc, dOut: TensorDesc,
      cuQ: TensorDesc, cuK: TensorDesc, causal: boolean, scale: number | undefined, async: boolean): Bwd | Promise<Bwd>;
  }
}

export interface AttentionOptions {
  /** [batch + 1] prefix sums of the query segments (Int32Array or i32 Tensor); default: one segment of all queries. */
  cuSeqlensQ?: Int32Array | Tensor;
  /** [batch + 1] prefix sums of the key segments; default: cuSeqlensQ when k has as many tokens as q, else one segment. */
  cuSeqlensK?: Int32Array | Tensor;
  /** Causal mask, aligned bottom-right: query i of a segment sees keys j <= i + Lk - Lq (default false). */
  causal?: boolean;
  /** Score scale (default 1 / sqrt(D)). */
  scale?: number;
}

export interface AttentionResult {
  /** f32 [totalQ, Hq, D]. */
  out: Tensor;
  /** f32 [totalQ, Hq]: log-sum-exp of each query's scaled scores (-inf where a query sees no key). */
  lse: Tensor;
}

export interface AttentionGrads {
  dq: Tensor;
  dk: Tensor;
  dv: Tensor;
}

type Owned = { tensor: Tensor; owned: boolean };

function f32(name: string, v: unknown): { t: Tensor; owned: boolean } {
  const t = expectTensor(name, v, { dtypes: ['f32', 'f16', 'bf16'], ndim: 3, layout: '[tokens, heads, D]' });
  if (t.dtype !== 'f32') return { t: t.to('f32'), owned: true };
  if (!t.isContiguous) return { t: t.contiguous(), owned: true };
  return { t, owned: false };
}

function prep(q: unknown, k: unknown, v: unknown, opts: AttentionOptions | undefined) {
  const o = checkOptions('options', opts);
  const causal = o.causal === undefined ? false : checkBoolean('causal', o.causal);
  const scale = o.scale === undefined ? undefined : checkNumber('scale', o.scale);
  const tq = expectTensor('q', q, { dtypes: ['f32', 'f16', 'bf16'], ndim: 3, layout: '[tokens, heads, D]' });
  const tk = expectTensor('k', k, { dtypes: ['f32', 'f16', 'bf16'], ndim: 3, layout: '[tokens, heads, D]' });
  const tv = expectTensor('v', v, { dtypes: ['f32', 'f16', 'bf16'], ndim: 3, layout: '[tokens, heads, D]' });
  const [Lq, Hq, D] = tq.shape as [number, number, number];
  const [Lk, Hkv, Dk] = tk.shape as [number, number, number];
  if (Dk !== D || tv.shape[2] !== D) throw new RangeError(`Expected q, k and v with one head size D = ${D} but received k [${tk.shape.join(', ')}] and v [${tv.shape.join(', ')}]`);
  if (tv.shape[0] !== Lk || tv.shape[1] !== Hkv) throw new RangeError(`Expected v of the shape of k [${tk.shape.join(', ')}] but received [${tv.shape.join(', ')}]`);
  if (Hkv < 1 || Hq % Hkv !== 0) throw new RangeError(`Expected the query heads (${Hq}) to be a multiple of the key/value heads (${Hkv})`);
  const owned: Tensor[] = [];
  const cu = (name: string, val: unknown, dflt: number[]): Owned => {
    if (val === undefined) { const t = Tensor.from(new Int32Array(dflt)); owned.push(t); return { tensor: t, owned: true }; }
    if (!(val instanceof Int32Array) && !(val instanceof Tensor)) throw typeError(name, 'an Int32Array or an i32 Tensor', val);
    const r = indexTensor(name, val);
    if (r.owned) owned.push(r.tensor);
    return r;
  };
  try {
    const cq = cu('cuSeqlensQ', o.cuSeqlensQ, [0, Lq]);
    const ck = cu('cuSeqlensK', o.cuSeqlensK ?? (Lk === Lq && o.cuSeqlensQ !== undefined ? o.cuSeqlensQ : undefined), [0, Lk]);
    const a = f32('q', tq), b = f32('k', tk), c = f32('v', tv);
    for (const x of [a, b, c]) if (x.owned) owned.push(x.t);
    return { q: a.t, k: b.t, v: c.t, cq: cq.tensor, ck: ck.tensor, causal, scale, owned, Lq, Hq, D };
  } catch (e) {
    for (const t of owned) t.dispose();
    throw e;
  }
}

function wrap(h: Fwd, p: ReturnType<typeof prep>): AttentionResult {
  return { out: Tensor._wrap(h.out, 'f32', [p.Lq, p.Hq, p.D]), lse: Tensor._wrap(h.lse, 'f32', [p.Lq, p.Hq]) };
}

/**
 * softmax(q k^T * scale) v per segment and head, without a score matrix (FlashAttention-2 tiling,
 * online softmax, SIMD, threads over (segment, head, query tile)). q [totalQ, Hq, D], k and v
 * [totalK, Hkv, D] with Hq a multiple of Hkv (grouped-query); f16/bf16 inputs are computed in f32.
 */
export async function attention(q: Tensor, k: Tensor, v: Tensor, opts?: AttentionOptions): Promise<AttentionResult> {
  const p = prep(q, k, v, opts);
  try {
    return wrap(await native.attention(p.q._desc('q'), p.k._desc('k'), p.v._desc('v'), p.cq._desc('cuSeqlensQ'), p.ck._desc('cuSeqlensK'), p.causal, p.scale, true), p);
  } finally { for (const t of p.owned) t.dispose(); }
}

/** The synchronous form of attention(). */
export function attentionSync(q: Tensor, k: Tensor, v: Tensor, opts?: AttentionOptions): AttentionResult {
  const p = prep(q, k, v, opts);
  try {
    return wrap(native.attention(p.q._desc('q'), p.k._desc('k'), p.v._desc('v'), p.cq._desc('cuSeqlensQ'), p.ck._desc('cuSeqlensK'), p.causal, p.scale, false) as Fwd, p);
  } finally { for (const t of p.owned) t.dispose(); }
}

function prepBwd(q: unknown, k: unknown, v: unknown, out: unknown, lse: unknown, dOut: unknown, opts: AttentionOptions | undefined) {
  const p = prep(q, k, v, opts);
  try {
    const o = f32('out', out), d = f32('dOut', dOut);
    if (o.owned) p.owned.push(o.t);
    if (d.owned) p.owned.push(d.t);
    const l = expectTensor('lse', lse, { dtypes: ['f32'], ndim: 2, layout: '[totalQ, Hq]' });
    return { ...p, out: o.t, dOut: d.t, lse: l.isContiguous ? l : (() => { const c = l.contiguous(); p.owned.push(c); return c; })() };
  } catch (e) {
    for (const t of p.owned) t.dispose();
    throw e;
  }
}

function wrapBwd(h: Bwd, p: ReturnType<typeof prepBwd>): AttentionGrads {
  return { dq: Tensor._wrap(h.dq, 'f32', p.q.shape), dk: Tensor._wrap(h.dk, 'f32', p.k.shape), dv: Tensor._wrap(h.dv, 'f32', p.v.shape) };
}

/**
 * Gradients of attention() given dOut: recomputes the probabilities from lse (FA2), owns each key
 * tile's dK/dV rows per thread (no atomics). Returns f32 dq, dk, dv of the shapes of q, k, v.
 */
export async function attentionBackward(q: Tensor, k: Tensor, v: Tensor, out: Tensor, lse: Tensor, dOut: Tensor, opts?: AttentionOptions): Promise<AttentionGrads> {
  const p = prepBwd(q, k, v, out, lse, dOut, opts);
  try {
    return wrapBwd(await native.attentionBackward(p.q._desc('q'), p.k._desc('k'), p.v._desc('v'), p.out._desc('out'), p.lse._desc('lse'), p.dOut._desc('dOut'), p.cq._desc('cuSeqlensQ'), p.ck._desc('cuSeqlensK'), p.causal, p.scale, true), p);
  } finally { for (const t of p.owned) t.dispose(); }
}

/** The synchronous form of attentionBackward(). */
export function attentionBackwardSync(q: Tensor, k: Tensor, v: Tensor, out: Tensor, lse: Tensor, dOut: Tensor, opts?: AttentionOptions): AttentionGrads {
  const p = prepBwd(q, k, v, out, lse, dOut, opts);
  try {
    return wrapBwd(native.attentionBackward(p.q._desc('q'), p.k._desc('k'), p.v._desc('v'), p.out._desc('out'), p.lse._desc('lse'), p.dOut._desc('dOut'), p.cq._desc('cuSeqlensQ'), p.ck._desc('cuSeqlensK'), p.causal, p.scale, false) as Bwd, p);
  } finally { for (const t of p.owned) t.dispose(); }
}
