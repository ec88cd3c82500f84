// The loss of a micro-batch in which some completions carry no loss at all: those cut at
// maxCompletionLength under maskTruncatedCompletions, and those without a reward. They are masked
// the way TRL's completion mask does it (mask_truncated_completions):
// - their tokens add nothing to the loss or the gradient;
// - 'bnpo' divides by the kept tokens of the micro-batch;
// - 'dapo' divides by the kept tokens of the whole step (the caller's activeTokens);
// - 'grpo' and 'dr_grpo' still count every completion in B, so a masked completion adds a zero to
//   their mean.
// The metrics (KL, clipping, ratio) are means over the kept tokens. Other token weights (the
// entropy quantile, TW-GRPO's weights) scale the gradient afterwards and do not change a
// normaliser, as in TRL.
import { cdpoLoss, type CdpoMetrics, type CdpoOptions } from '../kernels/cdpo.js';

export interface MaskedLossInputs extends CdpoOptions {
  logprobs: Float32Array;
  advantages: Float32Array;
  seqOffsets: Int32Array;
  oldLogprobs?: Float32Array;
  refLogprobs?: Float32Array;
  biasLogprobs?: Float32Array;
}

export interface MaskedLossResult {
  loss: number;
  /** [N] dLoss/dLogprobs, 0 on the masked completions' tokens. */
  dLogprobs: Float32Array;
  /** Over the kept tokens; null when every completion is masked. */
  metrics: CdpoMetrics | null;
}

/** keep[i]: completion i carries loss. */
export async function maskedCdpoLoss(a: MaskedLossInputs, keep: readonly boolean[]): Promise<MaskedLossResult> {
  const off = a.seqOffsets, B = off.length - 1, N = a.logprobs.length;
  if (keep.length !== B) throw new RangeError(`Expected ${B} entries for keep (one per completion) but received ${keep.length}`);
  const { logprobs, advantages, seqOffsets, oldLogprobs, refLogprobs, biasLogprobs, ...opts } = a;
  if (keep.every(Boolean)) {
    const r = await cdpoLoss({ ...a });
    try {
      return { loss: r.loss, dLogprobs: (r.dLogprobs.data as Float32Array).slice(), metrics: r.metrics };
    } finally { r.dLogprobs.dispose(); }
  }
  const dLogprobs = new Float32Array(N);
  const kept = [...keep.keys()].filter((i) => keep[i]);
  if (kept.length === 0) return { loss: 0, dLogprobs, metrics: null };
  // The kept completions, packed.
  const idx: number[] = [], subOff = [0];
  for (const i of kept) {
    for (let t = off[i]!; t < off[i + 1]!; t++) idx.push(t);
    subOff.push(idx.length);
  }
  const pick = (x: Float32Array | undefined) => (x ? Float32Array.from(idx, (t) => x[t]!) : undefined);
  const sub: Parameters<typeof cdpoLoss>[0] = {
    ...opts, logprobs: pick(logprobs)!, advantages: Float32Array.from(kept, (i) => advantages[i]!), seqOffsets: Int32Array.from(subOff),
  };
  const o = pick(oldLogprobs), rf = pick(refLogprobs), bs = pick(biasLogprobs);
  if (o) sub.oldLogprobs = o;
  if (rf) sub.refLogprobs = rf;
  if (bs) sub.biasLogprobs = bs;
  // dr_grpo's default normaliser: the longest completion of the whole micro-batch, as unmasked.
  if (opts.lossType === 'dr_grpo' && opts.maxCompletionLength === undefined) {
    let longest = 1;
    for (let i = 0; i < B; i++) longest = Math.max(longest, off[i + 1]! - off[i]!);
    sub.maxCompletionLength = longest;
  }
  const r = await cdpoLoss(sub);
  try {
    // grpo and dr_grpo average over all B completions: the kept ones' share is B' / B.
    const type = opts.lossType ?? 'grpo';
    const f = type === 'grpo' || type === 'dr_grpo' ? kept.length / B : 1;
    const d = r.dLogprobs.data as Float32Array;
    idx.forEach((t, j) => { dLogprobs[t] = d[j]! * f; });
    return { loss: r.loss * f, dLogprobs, metrics: r.metrics };
  } finally { r.dLogprobs.dispose(); }
}
