// The network's ops one call at a time (native/ops through addon/ops.cc): for tests and
// experiments; the model runs them natively. Synchronous; f32 activations, weights f32/bf16/f16.
import { native, type StorageHandle, type TensorDesc } from '../native.js';
import { Tensor } from '../tensor.js';

type H = StorageHandle;
declare module '../native.js' {
  interface Binding {
    opLinear(x: TensorDesc, w: TensorDesc, b: TensorDesc | null): H;
    opLinearBackward(dy: TensorDesc, x: TensorDesc, w: TensorDesc): { dx: H; dw: H; db: H };
    opLora(x: TensorDesc, A: TensorDesc, B: TensorDesc, scale: number): { y: H; t: H };
    opLoraBackward(dy: TensorDesc, x: TensorDesc, t: TensorDesc, A: TensorDesc, B: TensorDesc, scale: number): { dx: H; dA: H; dB: H };
    opRmsNorm(x: TensorDesc, w: TensorDesc | null, eps: number): { y: H; rstd: H };
    opRmsNormBackward(dy: TensorDesc, x: TensorDesc, rstd: TensorDesc, w: TensorDesc | null): { dx: H; dw: H };
    opRope(x: TensorDesc, pos: TensorDesc, invFreq: TensorDesc, sections: TensorDesc, inverse: boolean): H;
    opSwiglu(g: TensorDesc, u: TensorDesc): H;
    opSwigluBackward(dy: TensorDesc, g: TensorDesc, u: TensorDesc): { dg: H; du: H };
    opGelu(x: TensorDesc): H;
    opGeluBackward(dy: TensorDesc, x: TensorDesc): H;
    opEmbedding(ids: TensorDesc, table: TensorDesc): H;
    opEmbeddingBackward(dy: TensorDesc, ids: TensorDesc, V: number): H;
  }
}
const f = (h: H, shape: readonly number[]) => Tensor._wrap(h, 'f32', shape);
const d = (t: Tensor | null | undefined, name: string) => (t ? t._desc(name) : null);

/** y [T, N] = x [T, K] @ w [N, K]^T + b. */
export function linear(x: Tensor, w: Tensor, b?: Tensor | null): Tensor {
  return f(native.opLinear(x._desc('x'), w._desc('weight'), d(b, 'bias')), [x.shape[0]!, w.shape[0]!]);
}
/** dx = dy w, dw = dy^T x, db = column sums of dy. */
export function linearBackward(dy: Tensor, x: Tensor, w: Tensor): { dx: Tensor; dw: Tensor; db: Tensor } {
  const r = native.opLinearBackward(dy._desc('dy'), x._desc('x'), w._desc('weight'));
  return { dx: f(r.dx, x.shape), dw: f(r.dw, [w.shape[0]!, x.shape[1]!]), db: f(r.db, [w.shape[0]!]) };
}
/** LoRA term y = scale (x A^T) B^T and t = x A^T. */
export function lora(x: Tensor, A: Tensor, B: Tensor, scale: number): { y: Tensor; t: Tensor } {
  const r = native.opLora(x._desc('x'), A._desc('A'), B._desc('B'), scale);
  return { y: f(r.y, [x.shape[0]!, B.shape[0]!]), t: f(r.t, [x.shape[0]!, A.shape[0]!]) };
}
export function loraBackward(dy: Tensor, x: Tensor, t: Tensor, A: Tensor, B: Tensor, scale: number): { dx: Tensor; dA: Tensor; dB: Tensor } {
  const r = native.opLoraBackward(dy._desc('dy'), x._desc('x'), t._desc('t'), A._desc('A'), B._desc('B'), scale);
  return { dx: f(r.dx, x.shape), dA: f(r.dA, A.shape), dB: f(r.dB, B.shape) };
}
/** RMSNorm over the last dimension (weight null: ones); rstd per row. */
export function rmsNorm(x: Tensor, w: Tensor | null, eps: number): { y: Tensor; rstd: Tensor } {
  const r = native.opRmsNorm(x._desc('x'), d(w, 'weight'), eps);
  return { y: f(r.y, x.shape), rstd: f(r.rstd, [x.shape[0]!]) };
}
export function rmsNormBackward(dy: Tensor, x: Tensor, rstd: Tensor, w: Tensor | null): { dx: Tensor; dw: Tensor } {
  const r = native.opRmsNormBackward(dy._desc('dy'), x._desc('x'), rstd._desc('rstd'), d(w, 'weight'));
  return { dx: f(r.dx, x.shape), dw: f(r.dw, [x.shape[1]!]) };
}
/** x [T, H, D] rotated (inverse: by minus the angles, the backward); positions i32 [S, T], sections i32 [S]. */
export function rope(x: Tensor, positions: Tensor, invFreq: Tensor, sections: Tensor, inverse = false): Tensor {
  return f(native.opRope(x._desc('x'), positions._desc('positions'), invFreq._desc('invFreq'), sections._desc('sections'), inverse), x.shape);
}
export function swiglu(g: Tensor, u: Tensor): Tensor { return f(native.opSwiglu(g._desc('gate'), u._desc('up')), g.shape); }
export function swigluBackward(dy: Tensor, g: Tensor, u: Tensor): { dg: Tensor; du: Tensor } {
  const r = native.opSwigluBackward(dy._desc('dy'), g._desc('gate'), u._desc('up'));
  return { dg: f(r.dg, g.shape), du: f(r.du, g.shape) };
}
export function gelu(x: Tensor): Tensor { return f(native.opGelu(x._desc('x')), x.shape); }
export function geluBackward(dy: Tensor, x: Tensor): Tensor { return f(native.opGeluBackward(dy._desc('dy'), x._desc('x')), x.shape); }
/** Rows of table [V, C] for ids i32 [T] (-1: left zero). */
export function embedding(ids: Tensor, table: Tensor): Tensor { return f(native.opEmbedding(ids._desc('ids'), table._desc('table')), [ids.shape[0]!, table.shape[1]!]); }
export function embeddingBackward(dy: Tensor, ids: Tensor, V: number): Tensor { return f(native.opEmbeddingBackward(dy._desc('dy'), ids._desc('ids'), V), [V, dy.shape[1]!]); }
