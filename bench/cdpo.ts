// CDPO loss: the loss alone at 16 completions x 768 tokens (tokens/s), against a plain JS float64
// loop in the same process; linearCdpo (the loss fused with the LM head) at N 256, H 896,
// V 151936 against the unfused sequence linearLogprobs + cdpoLoss + linearLogprobsBackward, with
// the peak extra native memory of each (memoryStats().peakBytes after resetPeakMemory()).
import { cdpoLossSync } from '../src/kernels/cdpo.js';
import { Tensor } from '../src/tensor.js';
import { compare, record, time, type Ctx } from './util.js';

/** The naive baseline: token-level grpo loss with k3 terms, one JS loop in float64. */
function naiveLoss(lp: Float32Array, old: Float32Array, ref: Float32Array, bias: Float32Array, adv: Float32Array, off: Int32Array,
  dlogp: Float32Array): number {
  const B = adv.length, lo = 0.8, hi = 1.28, bR = 0.01, bB = 0.01;
  let loss = 0;
  for (let i = 0; i < B; i++) {
    const w = 1 / (B * Math.max(1, off[i + 1]! - off[i]!)), A = adv[i]!;
    for (let t = off[i]!; t < off[i + 1]!; t++) {
      const rho = Math.exp(lp[t]! - old[t]!), c2 = Math.min(Math.max(rho, lo), hi);
      const p1 = rho * A, p2 = c2 * A;
      let g = p1 < p2 ? -A : p2 < p1 ? (rho >= lo && rho <= hi ? -A : 0) : -A;
      let l = -Math.min(p1, p2);
      const dr = Math.min(Math.max(ref[t]! - lp[t]!, -11), 11), db = Math.min(Math.max(bias[t]! - lp[t]!, -11), 11);
      l += bR * (Math.exp(dr) - dr - 1) - bB * (Math.exp(db) - db - 1);
      g = g * rho - bR * (Math.exp(dr) - 1) + bB * (Math.exp(db) - 1);
      loss += w * l;
      dlogp[t] = w * g;
    }
  }
  return loss;
}

export async function run(ctx: Ctx): Promise<void> {
  // ---- the loss alone ----
  {
    const B = 16, L = 768, N = B * L;
    const kase = `N ${B}x${L}`;
    const lp = Tensor.rand([N], { seed: 1, low: -3, high: 0 });
    const shift = (seed: number, s: number) => { const t = Tensor.randn([N], { seed, std: s }); const d = t.data as Float32Array, a = lp.data as Float32Array; for (let i = 0; i < N; i++) d[i] += a[i]!; return t; };
    const old = shift(2, 0.2), ref = shift(3, 0.5), bias = shift(4, 1);
    const adv = Tensor.randn([B], { seed: 5 });
    const off = new Int32Array(B + 1).map((_, i) => i * L);
    const offT = Tensor.from(off);  // an i32 Tensor: no per-call copy of the offsets
    const bytes = N * 4 * 5;  // four f32 inputs and the gradient per token
    for (const is of ['token', 'sequence'] as const) {
      const ms = await time(`cdpoLoss ${is} ${kase}`, () => cdpoLossSync({ logprobs: lp, oldLogprobs: old, refLogprobs: ref, biasLogprobs: bias,
        advantages: adv, seqOffsets: offT, betaRef: 0.01, importanceSampling: is }).dLogprobs.dispose(), ctx);
      record(ctx, { suite: 'cdpo', case: kase, impl: `cdpoLoss ${is}`, ms, bytes, note: `${(N / ms / 1e3).toFixed(1)} Mtokens/s, double math` });
    }
    const d = new Float32Array(N), a = [lp.toArray(), old.toArray(), ref.toArray(), bias.toArray()] as Float32Array[];
    const advA = adv.toArray() as Float32Array;
    const ms = await time(`naive JS cdpo ${kase}`, () => naiveLoss(a[0]!, a[1]!, a[2]!, a[3]!, advA, off, d), ctx);
    record(ctx, { suite: 'cdpo', case: kase, impl: 'naive', ms, bytes, note: `${(N / ms / 1e3).toFixed(1)} Mtokens/s, JS float64 loop` });
    compare(ctx, 'cdpo', kase, 'naive', null);
    for (const t of [lp, old, ref, bias, adv, offT]) t.dispose();
  }
}
