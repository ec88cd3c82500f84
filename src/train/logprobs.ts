// Scoring sequences with the fused LM head: the hidden states that predict a batch's scored
// tokens, gathered into rows for linearLogprobs / linearCdpo (no [tokens, vocabulary] logits), and
// their gradients scattered back for the network's backward.
import type { Batch } from './examples.js';
import { Tensor } from '../tensor.js';

/** Token p of a row is predicted by the hidden state at p - 1. */
export interface Scored {
  /** Indices into the batch's [B * L] positions of the predicting hidden states. */
  rows: Int32Array;
  /** The scored tokens. */
  targets: Int32Array;
  /** Per batch row: its scored tokens are [offsets[b], offsets[b + 1]) of rows/targets. */
  offsets: Int32Array;
}

/** Every token from `from[b]` (default: the row's continuation start) to the row's end. */
export function scoredTokens(batch: Batch, from?: readonly number[]): Scored {
  const ids = batch.inputIds.data as Int32Array;
  const offsets = new Int32Array(batch.B + 1);
  const rows: number[] = [], targets: number[] = [];
  for (let b = 0; b < batch.B; b++) {
    const s = Math.max(1, from?.[b] ?? batch.starts[b]!);
    for (let p = s; p < batch.lengths[b]!; p++) { rows.push(b * batch.L + p - 1); targets.push(ids[b * batch.L + p]!); }
    offsets[b + 1] = rows.length;
  }
  return { rows: Int32Array.from(rows), targets: Int32Array.from(targets), offsets };
}

/** hidden [B, L, C] rows -> [N, C]. */
export function gatherRows(hidden: Tensor, rows: Int32Array): Tensor {
  const C = hidden.shape[2]!;
  const out = Tensor.empty([rows.length, C]);
  const h = hidden.data as Float32Array, o = out.data as Float32Array;
  for (let i = 0; i < rows.length; i++) o.set(h.subarray(rows[i]! * C, (rows[i]! + 1) * C), i * C);
  return out;
}

/** d [N, C] -> a zero [B, L, C] with the rows put back. */
export function scatterRows(d: Tensor, rows: Int32Array, shape: readonly number[]): Tensor {
  const C = shape[2]!;
  const out = Tensor.zeros(shape);
  const s = d.data as Float32Array, o = out.data as Float32Array;
  for (let i = 0; i < rows.length; i++) o.set(s.subarray(i * C, (i + 1) * C), rows[i]! * C);
  return out;
}
