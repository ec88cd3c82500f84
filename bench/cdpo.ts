// CDPO loss: the loss alone at 16 completions x 768 tokens (tokens/s), against a plain JS float64
// loop in the same process; linearCdpo (the loss fused with the LM head) at N 256, H 896,
// V 151936 against the unfused sequence linearLogprobs + cdpoLoss + linearLogprobsBackward, with
// the peak extra native memory of each (memoryStats().peakBytes after resetPeakMemory()).
import { existsSync } from 'node:fs';

import { memoryStats, resetPeakMemory } from '../src/backend.js';
import { cdpoLossSync, linearCdpoSync, type CdpoInputs } from '../src/kernels/cdpo.js';
import { matmulSync } from '../src/kernels/matmul.js';
import { Tensor } from '../src/tensor.js';
import { compare, record, time, type Ctx } from './util.js';

/** The log-prob family's fused LM head (src/kernels/gather.ts), when it is in the tree: the unfused sequence uses it. */
interface LogprobsModule {
  linearLogprobsSync(hidden: Tensor, weight: Tensor, targets: Int32Array, opts?: { temperature?: number }): { logprobs: Tensor; lse: Tensor };
  linearLogprobsBackwardSync(hidden: Tensor, weight: Tensor, targets: Int32Array, lse: Tensor, dLogprobs: Tensor,
    opts?: { temperature?: number; dWeight?: Tensor; accumulate?: boolean }): { dHidden: Tensor; dWeight: Tensor };
}
async function loadLogprobs(): Promise<LogprobsModule | null> {
  if (!existsSync(new URL('../src/kernels/gather.ts', import.meta.url))) return null;
  const m = await import('../src/kernels/gather.js' as string) as Partial<LogprobsModule>;
  return m.linearLogprobsSync && m.linearLogprobsBackwardSync ? m as LogprobsModule : null;
}

/** Peak native memory above what was live before fn, less `keep` bytes of results; fn's results are disposed. */
function extraBytes(fn: () => Tensor[], keep: number): number {
  const base = memoryStats().liveBytes;
  resetPeakMemory();
  const out = fn();
  const peak = memoryStats().peakBytes;
  for (const t of out) t.dispose();
  return peak - base - keep;
}

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
    const out = Tensor.empty([N]);  // and no per-call gradient allocation (as in a training loop)
    const bytes = N * 4 * 5;  // four f32 inputs and the gradient per token
    for (const is of ['token', 'sequence'] as const) {
      const ms = await time(`cdpoLoss ${is} ${kase}`, () => cdpoLossSync({ logprobs: lp, oldLogprobs: old, refLogprobs: ref, biasLogprobs: bias,
        advantages: adv, seqOffsets: offT, betaRef: 0.01, importanceSampling: is, out }), ctx);
      record(ctx, { suite: 'cdpo', case: kase, impl: `cdpoLoss ${is}`, ms, bytes, note: `${(N / ms / 1e3).toFixed(1)} Mtokens/s, double math` });
    }
    const d = new Float32Array(N), a = [lp.toArray(), old.toArray(), ref.toArray(), bias.toArray()] as Float32Array[];
    const advA = adv.toArray() as Float32Array;
    const ms = await time(`naive JS cdpo ${kase}`, () => naiveLoss(a[0]!, a[1]!, a[2]!, a[3]!, advA, off, d), ctx);
    record(ctx, { suite: 'cdpo', case: kase, impl: 'naive', ms, bytes, note: `${(N / ms / 1e3).toFixed(1)} Mtokens/s, JS float64 loop` });
    compare(ctx, 'cdpo', kase, 'naive', null);
    for (const t of [lp, old, ref, bias, adv, offT, out]) t.dispose();
  }

  // ---- fused with the LM head: N 256, H 896, V 151936 (a Qwen2.5-0.5B head) ----
  {
    const N = 256, H = 896, V = 151936, B = 8, L = N / B;
    const kase = `N ${N} H ${H} V ${V}`;
    const flops = 6 * N * H * V;  // forward logits, dHidden, dWeight
    const hidden = Tensor.randn([N, H], { seed: 11, std: 0.5 }), weight = Tensor.randn([V, H], { seed: 12, std: 0.02 });
    const targets = new Int32Array(N).map((_, i) => (i * 7919 + 13) % V);
    const old = Tensor.randn([N], { seed: 13, std: 0.1 });
    (old.data as Float32Array).forEach((v, i, a) => { a[i] = v - 12; });  // near the policy's log-probs of random logits
    const inputs: CdpoInputs = { oldLogprobs: old, advantages: Tensor.randn([B], { seed: 14 }), seqOffsets: new Int32Array(B + 1).map((_, i) => i * L) };
    // A training loop reuses one gradient buffer (no 544 MB of fresh pages per call, both sides):
    // overwritten by a step's first micro-batch, accumulated into by the others. The two modes
    // run different fused paths: overwriting keeps every logits tile in dWeight's own rows.
    const dWeight = Tensor.zeros([V, H]);
    const keep = (N * H + N) * 4;  // the results that are not dWeight: dHidden, logprobs
    const opts = { minIters: 2 };
    const slow = { ...ctx, timeMs: Math.min(ctx.timeMs, ctx.quick ? 2000 : 6000) };
    const lp = await loadLogprobs();
    const modes = [['overwrite', false, 'every tile kept in dWeight\'s rows until its gradient is written: 3 GEMM volumes'],
      ['accumulate', true, '256x4096 tiles, 15 of 38 kept from the forward (60 MiB): 3.6 GEMM volumes']] as const;
    for (const [mode, accumulate, how] of modes) {
      const mcase = `${kase} dWeight ${mode}`;
      const fused = () => { const r = linearCdpoSync({ hidden, weight, targets, dWeight, accumulate, ...inputs }); return [r.dHidden, r.logprobs]; };
      const ms = await time(`linearCdpo ${mcase}`, fused, slow, opts);
      record(ctx, { suite: 'cdpo', case: mcase, impl: 'linearCdpo', ms, flops, extraBytes: extraBytes(fused, keep),
        note: `fused: ${how}; ${(N / ms * 1e3).toFixed(0)} tokens/s` });
      if (lp) {
        const unfused = () => {
          const f = lp.linearLogprobsSync(hidden, weight, targets);
          const l = cdpoLossSync({ logprobs: f.logprobs, ...inputs });
          const b = lp.linearLogprobsBackwardSync(hidden, weight, targets, f.lse, l.dLogprobs, { dWeight, accumulate });
          return [f.logprobs, f.lse, l.dLogprobs, b.dHidden];
        };
        const mu = await time(`unfused ${mcase}`, unfused, slow, opts);
        record(ctx, { suite: 'cdpo', case: mcase, impl: 'unfused', ms: mu, flops, extraBytes: extraBytes(unfused, keep + N * 8),
          note: `linearLogprobs + cdpoLoss + linearLogprobsBackward; the fused call is ${(mu / ms).toFixed(2)}x faster` });
      } else {
        record(ctx, { suite: 'cdpo', case: mcase, impl: 'unfused', ms: NaN, note: 'skipped: linearLogprobs (src/kernels/gather.ts) not in this tree' });
      }
    }
    // naive: full [N, V] logits (156 MB) by matmul, log-softmax and its backward in JS, two more matmuls
    const naive = () => {
      const z = matmulSync(hidden, weight, { transB: true });
      const zd = z.data as Float32Array, logp = new Float32Array(N), inv = new Float64Array(N);
      for (let n = 0; n < N; n++) {
        let m = -Infinity, s = 0;
        for (let v = n * V; v < (n + 1) * V; v++) m = Math.max(m, zd[v]!);
        for (let v = n * V; v < (n + 1) * V; v++) { const e = Math.exp(zd[v]! - m); zd[v] = e; s += e; }
        logp[n] = Math.log(zd[n * V + targets[n]!]!) - Math.log(s);
        inv[n] = 1 / s;
      }
      const l = cdpoLossSync({ logprobs: logp, ...inputs });
      const g = l.dLogprobs.data as Float32Array;
      for (let n = 0; n < N; n++) {
        for (let v = n * V; v < (n + 1) * V; v++) zd[v] = -g[n]! * zd[v]! * inv[n]!;
        zd[n * V + targets[n]!] += g[n]!;
      }
      const dH = matmulSync(z, weight), dW = matmulSync(z, hidden, { transA: true, out: dWeight });
      void dW;
      return [z, dH, l.dLogprobs];
    };
    const ms = await time(`naive ${kase}`, naive, { ...slow, timeMs: Math.min(slow.timeMs, 3000) }, opts);
    record(ctx, { suite: 'cdpo', case: `${kase} dWeight overwrite`, impl: 'naive', ms, flops, extraBytes: extraBytes(naive, N * H * 4),
      note: 'matmul logits [N, V] + JS log-softmax/backward + 2 matmuls' });
    compare(ctx, 'cdpo', `${kase} dWeight overwrite`, 'naive', null);
    for (const t of [hidden, weight, old, inputs.advantages as Tensor, dWeight]) t.dispose();
  }
}
