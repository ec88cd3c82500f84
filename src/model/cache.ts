// The key/value cache of a batch, for decoding: every layer's K and V in two tensors
// [layers, B, maxLen, Hkv, D] f32 that the native model appends to, and which keys are real.
import { Tensor } from '../tensor.js';

export class KVCache {
  /** Tokens cached so far (the same for every row). */
  past = 0;
  readonly k: Tensor;
  readonly v: Tensor;
  /** 1 where a cached key is a real token (padding excluded), [B, maxLen]. */
  readonly keyMask: Tensor;
  /** Per row: next M-RoPE position = cache position + delta (the reference's rope_deltas). */
  ropeDeltas: number[];
  constructor(readonly batch: number, readonly maxLen: number, readonly layers: number, readonly kvHeads: number, readonly headDim: number) {
    this.k = Tensor.empty([layers, batch, maxLen, kvHeads, headDim]);
    this.v = Tensor.empty([layers, batch, maxLen, kvHeads, headDim]);
    this.keyMask = Tensor.zeros([batch, maxLen], 'u8');
    this.ropeDeltas = new Array<number>(batch).fill(0);
  }
  /** A cache of `n` rows, each a copy of row `row` of this one (n samples sharing one prefill). */
  expand(row: number, n: number): KVCache {
    const c = new KVCache(n, this.maxLen, this.layers, this.kvHeads, this.headDim);
    const per = this.maxLen * this.kvHeads * this.headDim;
    const used = this.past * this.kvHeads * this.headDim;
    for (const [src, dst] of [[this.k, c.k], [this.v, c.v]] as const) {
      const s = src.data as Float32Array, d = dst.data as Float32Array;
      for (let l = 0; l < this.layers; l++) {
        const from = s.subarray((l * this.batch + row) * per, (l * this.batch + row) * per + used);
        for (let i = 0; i < n; i++) d.set(from, (l * n + i) * per);
      }
    }
    const km = (this.keyMask.data as Uint8Array).subarray(row * this.maxLen, (row + 1) * this.maxLen);
    for (let i = 0; i < n; i++) (c.keyMask.data as Uint8Array).set(km, i * this.maxLen);
    c.past = this.past;
    c.ropeDeltas = new Array<number>(n).fill(this.ropeDeltas[row] ?? 0);
    return c;
  }
  dispose(): void {
    this.k.dispose(); this.v.dispose(); this.keyMask.dispose();
  }
  [Symbol.dispose](): void { this.dispose(); }
}
