// The CDPO loss of the project's algorithm notes in float64, with its gradient derived by hand,
// term by term: the reference of test/cdpo.test.ts (the kernels) and test/rl.test.ts (a trainer step).
import type { CdpoOptions } from '../src/index.js';

export interface Case {
  lp: ArrayLike<number>;
  old?: ArrayLike<number>;
  ref?: ArrayLike<number>;
  bias?: ArrayLike<number>;
  adv: ArrayLike<number>;
  off: Int32Array;
  opts: CdpoOptions;
  /** Per completion: false masks it as TRL's completion mask does (no loss; not counted by bnpo's and dapo's normalisers, still in grpo's and dr_grpo's B). */
  keep?: ArrayLike<boolean>;
}

export interface Ref { loss: number; grad: Float64Array; klRef: number | null; klBias: number | null; clipLow: number; clipHigh: number; ratioMean: number }

/** The loss of cdpo.md in float64 with its gradient derived by hand, term by term, chain rule to every token. */
export function reference(c: Case): Ref {
  const N = c.lp.length, B = c.off.length - 1;
  const o = c.opts;
  const betaRef = o.betaRef ?? 0, betaBias = o.betaBias ?? (c.bias ? 0.01 : 0), C = o.klClamp ?? 11;
  const lo = 1 - (o.epsLow ?? 0.2), hi = 1 + (o.epsHigh ?? 0.28);
  const type = o.lossType ?? 'grpo', seq = o.importanceSampling === 'sequence';
  const lens = Array.from({ length: B }, (_, i) => c.off[i + 1]! - c.off[i]!);
  const maxLen = o.maxCompletionLength ?? Math.max(1, ...lens);
  const kept = (i: number) => !c.keep || c.keep[i]!;
  const Nk = lens.reduce((a, l, i) => a + (kept(i) ? l : 0), 0);
  const active = o.activeTokens ?? Math.max(Nk, 1);
  const grad = new Float64Array(N);
  let loss = 0, klR = 0, klB = 0, cl = 0, ch = 0, rs = 0;
  for (let i = 0; i < B; i++) {
    if (!kept(i)) continue;
    const t0 = c.off[i]!, t1 = c.off[i + 1]!, len = t1 - t0, A = c.adv[i]!;
    // normaliser of this completion's token sum
    const norm = type === 'grpo' ? B * Math.max(len, 1) : type === 'bnpo' ? Math.max(Nk, 1) : type === 'dr_grpo' ? B * maxLen : active;
    let seqLogW = 0;
    if (seq && c.old) { for (let t = t0; t < t1; t++) seqLogW += c.lp[t]! - c.old[t]!; seqLogW /= Math.max(len, 1); }
    for (let t = t0; t < t1; t++) {
      const logW = seq ? seqLogW : c.old ? c.lp[t]! - c.old[t]! : 0;
      const rho = Math.exp(logW);
      // coef_2 = clamp(rho, lo, hi), coef_1 = clamp(rho, max = delta): autograd passes where inside [bounds]
      const c2 = Math.min(Math.max(rho, lo), hi), g2 = rho >= lo && rho <= hi ? 1 : 0;
      const c1 = o.delta !== undefined ? Math.min(rho, o.delta) : rho, g1 = o.delta !== undefined && rho > o.delta ? 0 : 1;
      const p1 = c1 * A, p2 = c2 * A;
      const m = Math.min(p1, p2);
      const dm = p1 < p2 ? A * g1 : p2 < p1 ? A * g2 : 0.5 * A * (g1 + g2);
      let lt = -m;
      const dLdRho = -dm / norm;
      if (seq) { for (let s = t0; s < t1; s++) grad[s] += dLdRho * rho / len; } else { grad[t] += dLdRho * rho; }
      const k3 = (logq: number) => {
        const raw = logq - c.lp[t]!;
        const d = Math.min(Math.max(raw, -C), C);
        const inside = raw >= -C && raw <= C ? 1 : 0;
        return { v: Math.exp(d) - d - 1, dlp: -(Math.exp(d) - 1) * inside };
      };
      if (c.ref) { const k = k3(c.ref[t]!); lt += betaRef * k.v; grad[t] += betaRef * k.dlp / norm; klR += k.v; }
      if (c.bias) { const k = k3(c.bias[t]!); lt -= betaBias * k.v; grad[t] -= betaBias * k.dlp / norm; klB += k.v; }
      loss += lt / norm;
      if (rho < lo && A < 0) cl++;
      if (rho > hi && A > 0) ch++;
      rs += rho;
    }
  }
  // metrics: means over the tokens that carry loss
  const n = Math.max(Nk, 1);
  return { loss, grad, klRef: c.ref ? (Nk ? klR / n : 0) : null, klBias: c.bias ? (Nk ? klB / n : 0) : null, clipLow: Nk ? cl / n : 0, clipHigh: Nk ? ch / n : 0, ratioMean: Nk ? rs / n : 0 };
}

