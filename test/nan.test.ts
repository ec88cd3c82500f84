// NaN in, NaN out (issue 14, item 11): a NaN input reaches exactly the outputs that a float64
// reference (autograd's formulas) makes NaN, at every SIMD level, and the rest stay what they are
// without it. Before, the kernels' max and exp clamps dropped NaN: gatherLogprobs treated a NaN
// logit as -inf, attention with a NaN key returned finite rows, cdpoLoss gave a finite loss and
// zero gradient, linearLogprobs with a NaN weight a finite value; a temperature of 1e-50 passed
// the > 0 check and made NaN of finite logits.
import { test } from 'uvu';
import * as assert from 'uvu/assert';

import {
  attentionBackwardSync, attentionSync, cdpoLossSync, gatherLogprobsBackwardSync, gatherLogprobsSync, linearCdpoSync,
  linearLogprobsBackwardSync, linearLogprobsSync, setSimdLevel, Tensor, type SimdLevel,
} from '../src/index.js';
import { randomF32, throwsLike } from './helpers.js';

const LEVELS = (['scalar', 'avx2', 'avx512'] as SimdLevel[]).filter((l) => { const p = setSimdLevel(l); return setSimdLevel(p) === l; });
function atLevels(fn: (level: SimdLevel) => void): void {
  for (const level of LEVELS) {
    const prev = setSimdLevel(level);
    try { fn(level); } finally { setSimdLevel(prev); }
  }
}
const arr = (t: Tensor) => Array.from(t.toArray() as Float32Array);
const nanAt = (a: ArrayLike<number>) => Array.from(a, (x) => Number.isNaN(x));

/** NaN exactly where `want` is NaN, and relative agreement elsewhere. */
function sameNaNs(got: ArrayLike<number>, want: ArrayLike<number>, tol: number, what: string): void {
  assert.equal(nanAt(got), nanAt(want), `${what}: NaN positions`);
  let den = 1e-30, num = 0;
  for (let i = 0; i < want.length; i++) {
    if (Number.isNaN(want[i]!)) continue;
    if (want[i] === got[i]) continue;
    den = Math.max(den, Math.abs(want[i]!));
    num = Math.max(num, Math.abs(got[i]! - want[i]!));
  }
  assert.ok(num / den < tol, `${what}: relative error ${num / den}`);
}

/** float64 log_softmax rows: [logp of the target, lse, entropy] per row (NaN rows stay NaN). */
function gatherRef(x: Float32Array, N: number, V: number, tg: Int32Array, T = 1) {
  const lp: number[] = [], lse: number[] = [], ent: number[] = [], p: number[][] = [];
  for (let r = 0; r < N; r++) {
    const z = Array.from(x.subarray(r * V, (r + 1) * V), (v) => v / T);
    const m = z.some(Number.isNaN) ? NaN : Math.max(...z);
    const s = z.reduce((a, v) => a + Math.exp(v - m), 0);
    const l = m + Math.log(s);
    lse.push(l); lp.push(z[tg[r]!]! - l);
    const pr = z.map((v) => Math.exp(v - l));
    p.push(pr);
    ent.push(-pr.reduce((a, q, i) => a + (q > 0 ? q * (z[i]! - l) : Number.isNaN(q) ? NaN : 0), 0));
  }
  return { lp, lse, ent, p };
}

test('gatherLogprobs and its backward: a NaN logit makes its row NaN (forward, entropy, gradient); other rows unchanged', () => {
  const N = 6, V = 5000;  // beyond one 2048-value chunk of the row kernels
  const x = randomF32(N * V, 1, 3);
  const tg = Int32Array.from([3, 4100, 17, 0, 2500, 9]);
  x[0 * V + 2200] = NaN;                 // a later chunk, not the target
  x[1 * V + 4100] = NaN;                 // the target itself
  x.fill(-Infinity, 2 * V, 3 * V); x[2 * V + 4500] = NaN;  // all -inf but one NaN: the max comes out -inf
  x.fill(-Infinity, 3 * V, 4 * V); x[3 * V] = 1;         // a valid one-hot row stays finite
  const g = randomF32(N, 2); g[4] = 0; g[5] = NaN;       // an upstream NaN makes its row NaN
  const want = gatherRef(x, N, V, tg);
  // dLogits = g (onehot - p): 0 * NaN is NaN (autograd); a zero g on a clean row gives zeros
  const wantD = new Float64Array(N * V);
  for (let r = 0; r < N; r++) for (let v = 0; v < V; v++) wantD[r * V + v] = g[r]! * ((v === tg[r] ? 1 : 0) - want.p[r]![v]!);
  atLevels((level) => {
    using logits = Tensor.from(x, [N, V]);
    const r = gatherLogprobsSync(logits, tg, { entropy: true });
    sameNaNs(arr(r.logprobs), want.lp, 1e-5, `${level} logprobs`);
    sameNaNs(arr(r.lse), want.lse, 1e-6, `${level} lse`);
    sameNaNs(arr(r.entropy!), want.ent, 1e-4, `${level} entropy`);
    using dl = Tensor.from(g);
    using d = gatherLogprobsBackwardSync(logits, tg, r.lse, dl);
    sameNaNs(arr(d), wantD, 1e-5, `${level} dLogits`);
    r.logprobs.dispose(); r.lse.dispose(); r.entropy!.dispose();
  });
});

test('linearLogprobs: a NaN weight row makes every token NaN, a NaN hidden row only its token; the backward follows', () => {
  const N = 5, H = 8, V = 300;
  const h = randomF32(N * H, 3), w = randomF32(V * H, 4);
  const tg = Int32Array.from([1, 299, 150, 7, 42]);
  atLevels((level) => {
    for (const dtype of ['f32', 'bf16'] as const) {
      const wn = w.slice(); wn[200 * H + 3] = NaN;
      using weight = Tensor.from(wn, [V, H], dtype);
      using hidden = Tensor.from(h, [N, H]);
      const r = linearLogprobsSync(hidden, weight, tg, { _tile: [2, 64] } as never);
      assert.ok(arr(r.logprobs).every(Number.isNaN), `${level} ${dtype}: a NaN weight reaches every token`);
      r.logprobs.dispose(); r.lse.dispose();
      const hn = h.slice(); hn[2 * H + 5] = NaN;
      using clean = Tensor.from(w, [V, H], dtype);
      using hidden2 = Tensor.from(hn, [N, H]);
      const r2 = linearLogprobsSync(hidden2, clean, tg);
      assert.equal(nanAt(arr(r2.logprobs)), [false, false, true, false, false], `${level} ${dtype}: only token 2`);
      using g = Tensor.from(randomF32(N, 5));
      const b = linearLogprobsBackwardSync(hidden2, clean, tg, r2.lse, g);
      const dH = arr(b.dHidden);
      for (let t = 0; t < N; t++) assert.is(dH.slice(t * H, (t + 1) * H).some(Number.isNaN), t === 2, `${level} ${dtype}: dHidden row ${t}`);
      assert.ok(arr(b.dWeight).some(Number.isNaN), `${level} ${dtype}: dWeight sees the NaN token`);
      r2.logprobs.dispose(); r2.lse.dispose(); b.dHidden.dispose(); b.dWeight.dispose();
    }
  });
});

test('attention: a NaN key or value reaches exactly the queries that see it; a NaN query only its row; backward too', () => {
  const T = 150, H = 2, D = 16;
  const q = randomF32(T * H * D, 6), k = randomF32(T * H * D, 7), v = randomF32(T * H * D, 8);
  const j = 70;  // a key in the second 64-key tile
  atLevels((level) => {
    using tq = Tensor.from(q, [T, H, D]);
    using tv = Tensor.from(v, [T, H, D]);
    using tk = Tensor.from(k, [T, H, D]);
    const clean = attentionSync(tq, tk, tv, { causal: true });
    const kn = k.slice(); kn[(j * H + 1) * D + 4] = NaN;  // head 1 only
    using tkn = Tensor.from(kn, [T, H, D]);
    const r = attentionSync(tq, tkn, tv, { causal: true });
    const out = arr(r.out), lse = arr(r.lse), out0 = arr(clean.out), lse0 = arr(clean.lse);
    for (let i = 0; i < T; i++) for (let hh = 0; hh < H; hh++) {
      const sees = hh === 1 && i >= j;
      const row = out.slice((i * H + hh) * D, (i * H + hh + 1) * D);
      assert.is(row.every(Number.isNaN), sees, `${level}: out row ${i} head ${hh}`);
      assert.is(Number.isNaN(lse[i * H + hh]!), sees, `${level}: lse ${i} head ${hh}`);
      if (!sees) assert.equal(row, out0.slice((i * H + hh) * D, (i * H + hh + 1) * D), `${level}: unaffected row ${i} head ${hh}`);
      if (!sees) assert.is(lse[i * H + hh], lse0[i * H + hh]);
    }
    // backward: dq of the rows that saw the NaN key is NaN. dQ = dS K multiplies the masked
    // zeros of dS by the NaN key row, as autograd's dense dS @ K does for every row; the tiled
    // kernel does it within the 64-query tile that holds the key (rows 64..69), and rows of the
    // earlier query tile stay finite.
    using dO = Tensor.from(randomF32(T * H * D, 9), [T, H, D]);
    const g = attentionBackwardSync(tq, tkn, tv, r.out, r.lse, dO, { causal: true });
    const dq = arr(g.dq);
    for (let i = 0; i < T; i++) {
      const nan = dq.slice((i * H + 1) * D, (i * H + 2) * D).some(Number.isNaN);
      if (i >= j) assert.ok(nan, `${level}: dq row ${i} saw the NaN key`);
      if (i < 64) assert.not.ok(nan, `${level}: dq row ${i} (another query tile)`);
    }
    assert.ok(dq.slice(0, D).every(Number.isFinite), `${level}: head 0 of row 0`);
    // the first query sees only key 0: a NaN there must not be dropped by the max (all else -inf)
    const k0 = k.slice(); k0[0] = NaN;
    using tk0 = Tensor.from(k0, [T, H, D]);
    const r0 = attentionSync(tq, tk0, tv, { causal: true });
    assert.ok(Number.isNaN(arr(r0.lse)[0]!), `${level}: query 0, its only key NaN`);
    // a NaN value: every query that sees key j (non-causal: all of them) is NaN
    const vn = v.slice(); vn[j * H * D] = NaN;
    using tvn = Tensor.from(vn, [T, H, D]);
    const rv = attentionSync(tq, tk, tvn, { causal: false });
    const ov = arr(rv.out);
    for (let i = 0; i < T; i++) assert.ok(Number.isNaN(ov[(i * H) * D]!), `${level}: v NaN reaches query ${i}`);
    // a NaN query: its row only
    const qn = q.slice(); qn[(5 * H) * D] = NaN;
    using tqn = Tensor.from(qn, [T, H, D]);
    const rq = attentionSync(tqn, tk, tv, { causal: false });
    const lq = arr(rq.lse);
    assert.equal(nanAt(lq), Array.from({ length: T * H }, (_, x) => x === 5 * H), `${level}: only query 5 head 0`);
    // the decode form (one query row against a cache) too
    const rd = attentionSync(Tensor.from(qn.slice(5 * H * D, 6 * H * D), [1, H, D]), tkn, tv, { causal: true });
    assert.ok(arr(rd.lse).every(Number.isNaN), `${level}: decode row`);
    for (const t of [clean.out, clean.lse, r.out, r.lse, g.dq, g.dk, g.dv, r0.out, r0.lse, rv.out, rv.lse, rq.out, rq.lse, rd.out, rd.lse]) t.dispose();
  });
});

test('cdpoLoss: a NaN log-prob (on- and off-policy), reference, bias or advantage makes the loss NaN and the gradient NaN where autograd has it', () => {
  const off = new Int32Array([0, 3, 7]);
  const base = () => ({ logprobs: Float32Array.from([-1, -2, -0.5, -1.5, -0.7, -3, -1]), advantages: Float32Array.from([0.5, -0.5]), seqOffsets: off });
  atLevels((level) => {
    // on-policy, token level: ratio exp(logp - stop_gradient(logp)) is NaN at the NaN token only
    const a = base(); a.logprobs[1] = NaN;
    const r = cdpoLossSync(a);
    assert.ok(Number.isNaN(r.loss), `${level}: on-policy loss`);
    assert.equal(nanAt(arr(r.dLogprobs)), [false, true, false, false, false, false, false], `${level}: on-policy gradient`);
    r.dLogprobs.dispose();
    // sequence level: the completion's ratio is NaN, so all its tokens are
    const s = cdpoLossSync({ ...a, importanceSampling: 'sequence' });
    assert.equal(nanAt(arr(s.dLogprobs)), [true, true, true, false, false, false, false], `${level}: sequence level`);
    s.dLogprobs.dispose();
    // off-policy
    const o = cdpoLossSync({ ...base(), oldLogprobs: Float32Array.from([-1, -2, NaN, -1.5, -0.7, -3, -1]) });
    assert.ok(Number.isNaN(o.loss), `${level}: NaN old log-prob`);
    assert.equal(nanAt(arr(o.dLogprobs)), [false, false, true, false, false, false, false], `${level}: off-policy gradient`);
    o.dLogprobs.dispose();
    // a NaN reference log-prob under betaRef: k3 and its gradient NaN (autograd: 0 * NaN through the clamp)
    const ref = Float32Array.from([-1, -2, -0.5, -1.5, NaN, -3, -1]);
    const k = cdpoLossSync({ ...base(), refLogprobs: ref, betaRef: 0.1 });
    assert.ok(Number.isNaN(k.loss), `${level}: NaN reference`);
    assert.equal(nanAt(arr(k.dLogprobs)), [false, false, false, false, true, false, false], `${level}: reference gradient`);
    k.dLogprobs.dispose();
    const bias = cdpoLossSync({ ...base(), biasLogprobs: ref });
    assert.ok(Number.isNaN(bias.loss) && Number.isNaN(arr(bias.dLogprobs)[4]!), `${level}: NaN bias log-prob`);
    bias.dLogprobs.dispose();
    const adv = cdpoLossSync({ ...base(), advantages: Float32Array.from([NaN, 1]) });
    assert.ok(Number.isNaN(adv.loss), `${level}: NaN advantage`);
    assert.equal(nanAt(arr(adv.dLogprobs)), [true, true, true, false, false, false, false], `${level}: NaN advantage gradient`);
    adv.dLogprobs.dispose();
    // finite inputs stay finite
    const ok = cdpoLossSync({ ...base(), refLogprobs: Float32Array.from([-1, -2, -0.5, -1.5, -0.1, -3, -1]), betaRef: 0.1 });
    assert.ok(Number.isFinite(ok.loss) && arr(ok.dLogprobs).every(Number.isFinite), `${level}: finite case`);
    ok.dLogprobs.dispose();
  });
});

test('linearCdpo: a NaN weight gives a NaN loss; temperatures that overflow float32 logits are refused everywhere', () => {
  const N = 4, H = 6, V = 50;
  const w = randomF32(V * H, 10); w[33] = NaN;
  using hidden = Tensor.from(randomF32(N * H, 11), [N, H]);
  using weight = Tensor.from(w, [V, H]);
  const targets = Int32Array.from([1, 2, 3, 4]);
  atLevels((level) => {
    const r = linearCdpoSync({ hidden, weight, targets, advantages: Float32Array.from([1, -1]), seqOffsets: new Int32Array([0, 2, 4]) });
    assert.ok(Number.isNaN(r.loss), `${level}: loss`);
    assert.ok(arr(r.logprobs).every(Number.isNaN), `${level}: log-probs`);
    r.dHidden.dispose(); r.dWeight.dispose(); r.logprobs.dispose();
  });
  using logits = Tensor.from(randomF32(2 * V, 12), [2, V]);
  for (const t of [1e-50, 1e-320, 5e-7, 0, -1, Infinity]) {
    throwsLike(() => gatherLogprobsSync(logits, new Int32Array(2), { temperature: t }), RangeError, new RegExp(`>= 1e-6 .*for temperature but received ${String(t).replace('+', '\\+')}`), `gather T=${t}`);
    throwsLike(() => linearLogprobsSync(hidden, weight, targets, { temperature: t }), RangeError, /for temperature/, `linear T=${t}`);
    throwsLike(() => linearCdpoSync({ hidden, weight, targets, temperature: t, advantages: Float32Array.from([1]), seqOffsets: new Int32Array([0, 4]) }), RangeError, /for temperature/, `linearCdpo T=${t}`);
  }
  // at the smallest temperature, ordinary logits stay finite
  const r = gatherLogprobsSync(logits, new Int32Array(2), { temperature: 1e-6 });
  assert.ok(arr(r.logprobs).every((x) => Number.isFinite(x) || x === -Infinity) && arr(r.lse).every(Number.isFinite), 'T = 1e-6');
  r.logprobs.dispose(); r.lse.dispose();
});

test.run();
