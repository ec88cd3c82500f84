// The CDPO loss and the GRPO family: against a float64 reference of docs/algorithm.md written
// here (every loss type x importance-sampling level x optional old/ref/bias log-probs), against
// PyTorch autograd (ties of the min, clamp bounds), finite differences, group advantages, errors.
import { test } from 'uvu';
import * as assert from 'uvu/assert';

import { backend, setNumThreads, setSimdLevel } from '../src/backend.js';
import { cdpoLoss, cdpoLossSync, groupAdvantages, groupAdvantagesSync, linearCdpo, linearCdpoSync, type CdpoLossArgs, type CdpoOptions, type LinearCdpoArgs } from '../src/kernels/cdpo.js';
import { linearLogprobsBackwardSync, linearLogprobsSync } from '../src/kernels/gather.js';
import { Tensor } from '../src/tensor.js';
import { maskedCdpoLoss } from '../src/train/masked.js';
import { reference, type Case } from './cdpo_ref.js';
import { assertRel, rejectsLike, relErr, rng, throwsLike } from './helpers.js';
import { noPython, runPython, skip } from './skip.js';

/** The f32 view of a tensor (Tensor.data is typed by dtype only when the dtype is static). */
const f32 = (t: Tensor) => t.data as Float32Array;

// ---- float64 reference: test/cdpo_ref.ts ----

function args(c: Case): CdpoLossArgs {
  return {
    logprobs: Tensor.from(c.lp), oldLogprobs: c.old && Tensor.from(c.old), refLogprobs: c.ref && Tensor.from(c.ref),
    biasLogprobs: c.bias && Tensor.from(c.bias), advantages: Tensor.from(c.adv), seqOffsets: c.off, ...c.opts,
  };
}

function disposeArgs(a: CdpoLossArgs): void {
  for (const v of [a.logprobs, a.oldLogprobs, a.refLogprobs, a.biasLogprobs, a.advantages]) if (v instanceof Tensor) v.dispose();
}

const scalarRel = (got: number, want: number) => (got === want ? 0 : Math.abs(got - want) / Math.max(Math.abs(want), 1e-300));

function check(c: Case, what: string): { loss: number; grad: Float32Array } {
  const want = reference(c);
  const a = args(c);
  try {
    const r = cdpoLossSync(a);
    try {
      assert.ok(scalarRel(r.loss, want.loss) < 1e-6, `${what}: loss ${r.loss} vs ${want.loss} (rel ${scalarRel(r.loss, want.loss).toExponential(2)})`);
      assertRel(f32(r.dLogprobs), want.grad, 1e-5, `${what}: gradient`);
      for (const k of ['klRef', 'klBias', 'clipLow', 'clipHigh', 'ratioMean'] as const) {
        const g = r.metrics[k], w = want[k];
        if (w === null) assert.is(g, null, `${what}: ${k}`);
        else assert.ok(g !== null && scalarRel(g, w) < 1e-6 || (g === 0 && w === 0), `${what}: ${k} ${g} vs ${w}`);
      }
      assert.is(r.metrics.tokens, c.lp.length, `${what}: tokens`);
      return { loss: r.loss, grad: f32(r.dLogprobs).slice() };
    } finally { r.dLogprobs.dispose(); }
  } finally { disposeArgs(a); }
}

// ---- random cases ----

/** Completion lengths (one of length 1, one of 0 when allowEmpty), log-probs, old log-probs near them
 * (ratios on both sides of the clip range), ref/bias log-probs with some log-ratios beyond +-11. */
function makeCase(seed: number, lens: number[], opts: CdpoOptions, has: { old: boolean; ref: boolean; bias: boolean }): Case {
  const r = rng(seed);
  const off = new Int32Array(lens.length + 1);
  lens.forEach((l, i) => { off[i + 1] = off[i]! + l; });
  const N = off[lens.length]!;
  const lp = new Float32Array(N), old = new Float32Array(N), ref = new Float32Array(N), bias = new Float32Array(N);
  for (let t = 0; t < N; t++) {
    lp[t] = -4 * r() * r();
    old[t] = lp[t]! + (r() - 0.5) * 0.9;               // ratios ~ [0.64, 1.57]: both clip sides bind
    ref[t] = lp[t]! + (r() - 0.5) * 2;
    bias[t] = lp[t]! + (r() - 0.5) * 3;
    if (t % 7 === 3) ref[t] = lp[t]! + (r() < 0.5 ? -14 : 13);   // beyond the clamp
    if (t % 5 === 2) bias[t] = lp[t]! + (r() < 0.5 ? -20 : 12);
  }
  const adv = new Float32Array(lens.length);
  for (let i = 0; i < lens.length; i++) adv[i] = i % 4 === 1 ? 0 : (r() - 0.5) * 3;  // some advantages exactly 0
  return { lp, old: has.old ? old : undefined, ref: has.ref ? ref : undefined, bias: has.bias ? bias : undefined, adv, off, opts };
}

const LOSS_TYPES = ['grpo', 'bnpo', 'dr_grpo', 'dapo'] as const;
const LEVELS = ['token', 'sequence'] as const;
// The CPU per-token math has a scalar form (cdpo_math.h, shared with CUDA), an AVX2 and an AVX-512 form.
const SIMD = (['scalar', 'avx2', 'avx512'] as const).filter((l) =>
  l === 'scalar' || (l === 'avx2' && backend().simd.avx2 && backend().simd.fma) || (l === 'avx512' && backend().bestKernels === 'avx512'));

for (const simd of SIMD) test(`[${simd}] every lossType x importance sampling x old/ref/bias present or not matches the float64 reference`, () => {
  const prev = setSimdLevel(simd);
  try { matrix(); } finally { setSimdLevel(prev); }
});

function matrix(): void {
  let seed = 100, n = 0;
  for (const lossType of LOSS_TYPES) for (const importanceSampling of LEVELS) for (let m = 0; m < 8; m++) {
    const has = { old: (m & 1) > 0, ref: (m & 2) > 0, bias: (m & 4) > 0 };
    const opts: CdpoOptions = { lossType, importanceSampling, ...(has.ref ? { betaRef: 0.04 } : {}) };
    // lengths include 1 and 0 (an empty completion counts in B, contributes nothing)
    const c = makeCase(seed++, [5, 1, 9, 0, 3, 12, 1, 7], opts, has);
    check(c, `${lossType}/${importanceSampling}/old=${has.old},ref=${has.ref},bias=${has.bias}`);
    n++;
  }
  assert.is(n, 64);
}

test('masked completions (maskTruncatedCompletions, no reward): no loss, TRL\'s normalisers, metrics over the kept tokens; every lossType x importance sampling', async () => {
  let seed = 700;
  for (const lossType of LOSS_TYPES) for (const importanceSampling of LEVELS) for (const keep of [[true, false, true, true, false, true, true, false], [false, false, false, true, false, false, false, false]]) {
    const lens = [5, 1, 9, 0, 3, 12, 1, 7];
    const keptTokens = lens.reduce((a, l, i) => a + (keep[i] ? l : 0), 0);
    // dapo: the whole step's kept tokens, more than this micro-batch's
    const opts: CdpoOptions = { lossType, importanceSampling, betaRef: 0.04, betaBias: 0.1, ...(lossType === 'dapo' ? { activeTokens: keptTokens + 9 } : {}) };
    const c = { ...makeCase(seed++, lens, opts, { old: true, ref: true, bias: true }), keep };
    const want = reference(c);
    const toF32 = (x: ArrayLike<number> | undefined) => Float32Array.from(x!);
    const r = await maskedCdpoLoss({ ...opts, logprobs: toF32(c.lp), oldLogprobs: toF32(c.old), refLogprobs: toF32(c.ref), biasLogprobs: toF32(c.bias),
      advantages: toF32(c.adv), seqOffsets: c.off }, keep);
    const what = `${lossType}/${importanceSampling}/keep ${keep.map(Number).join('')}`;
    assert.ok(scalarRel(r.loss, want.loss) < 1e-6, `${what}: loss ${r.loss} vs ${want.loss}`);
    assertRel(r.dLogprobs, want.grad, 1e-5, `${what}: gradient`);
    for (let i = 0; i < keep.length; i++) if (!keep[i]) for (let t = c.off[i]!; t < c.off[i + 1]!; t++) assert.is(r.dLogprobs[t], 0, `${what}: masked token ${t}`);
    for (const k of ['klRef', 'klBias', 'clipLow', 'clipHigh', 'ratioMean'] as const) {
      const g = r.metrics![k]!, w = want[k]!;
      assert.ok(scalarRel(g, w) < 1e-6 || (g === 0 && w === 0), `${what}: ${k} ${g} vs ${w}`);
    }
    // Without masks it is cdpoLoss.
    const plain = await maskedCdpoLoss({ ...opts, logprobs: toF32(c.lp), oldLogprobs: toF32(c.old), refLogprobs: toF32(c.ref), biasLogprobs: toF32(c.bias),
      advantages: toF32(c.adv), seqOffsets: c.off, ...(lossType === 'dapo' ? { activeTokens: c.lp.length + 9 } : {}) }, keep.map(() => true));
    const ref0 = reference({ ...c, keep: undefined, opts: { ...opts, ...(lossType === 'dapo' ? { activeTokens: c.lp.length + 9 } : {}) } });
    assert.ok(scalarRel(plain.loss, ref0.loss) < 1e-6, `${what}: unmasked loss`);
  }
  // Every completion masked: nothing to learn from.
  const c = makeCase(1, [3, 2], {}, { old: false, ref: false, bias: false });
  const none = await maskedCdpoLoss({ logprobs: Float32Array.from(c.lp), advantages: Float32Array.from(c.adv), seqOffsets: c.off }, [false, false]);
  assert.is(none.loss, 0);
  assert.equal(Array.from(none.dLogprobs), [0, 0, 0, 0, 0]);
  assert.is(none.metrics, null);
  await rejectsLike(maskedCdpoLoss({ logprobs: Float32Array.from(c.lp), advantages: Float32Array.from(c.adv), seqOffsets: c.off }, [true]), RangeError, /2 entries for keep/);
});

test('non-default options: betas, clamp, asymmetric eps, delta, maxCompletionLength, activeTokens', () => {
  let seed = 300;
  const variants: CdpoOptions[] = [
    { betaRef: 0.1, betaBias: 0.05, klClamp: 2, epsLow: 0.1, epsHigh: 0.4 },
    { betaRef: 0, betaBias: 0, epsLow: 0.3, epsHigh: 0.05 },
    { delta: 1.3 },                                   // caps the unclipped ratio (two-sided clipping)
    { delta: 1.1, epsHigh: 0.5 },                     // delta below 1 + epsHigh: the cap binds first
    { lossType: 'dr_grpo', maxCompletionLength: 40 },
    { lossType: 'dapo', activeTokens: 500 },
    { lossType: 'dr_grpo', importanceSampling: 'sequence', maxCompletionLength: 12, delta: 1.2 },
  ];
  for (const opts of variants) {
    const c = makeCase(seed++, [4, 12, 1, 6, 9, 2], { betaRef: 0.02, ...opts }, { old: true, ref: true, bias: true });
    check(c, JSON.stringify(opts));
  }
});

for (const simd of SIMD) test(`[${simd}] a ratio exactly on a clip boundary: clamp passes the gradient at its bounds, a tie of the min splits it`, () => {
  const prev = setSimdLevel(simd);
  try { boundaries(); } finally { setSimdLevel(prev); }
});

function boundaries(): void {
  // eps 0: clamp(rho, 1, 1) with rho exactly 1 (old = logprobs); each min branch gets half, both pass: full gradient.
  const lens = [3, 1, 4];
  for (const old of [true, false]) for (const importanceSampling of LEVELS) {
    const c = makeCase(7, lens, { epsLow: 0, epsHigh: 0, importanceSampling }, { old, ref: false, bias: false });
    if (c.old) c.old.set(c.lp);
    const { grad } = check(c, `eps 0, old=${old}, ${importanceSampling}`);
    // independent of the reference: the gradient of -A*rho is -A * w (grpo, w = 1 / (B * len))
    for (let i = 0; i < lens.length; i++) for (let t = c.off[i]!; t < c.off[i + 1]!; t++) {
      const want = -c.adv[i]! / (lens.length * lens[i]!) ;
      assert.ok(Math.abs(grad[t]! - want) <= 1e-7 * Math.abs(want) + 1e-12, `token ${t}: ${grad[t]} vs ${want}`);
    }
  }
  // delta exactly at rho = 1: clamp(max = 1) passes the gradient at its bound too
  const d = makeCase(8, lens, { delta: 1 }, { old: false, ref: false, bias: false });
  check(d, 'delta = rho = 1');
  // a log-ratio exactly at the KL clamp: d = ref - lp = 11 and -11 exactly (gradient passes), 11.5 (blocked)
  const k = makeCase(9, [3], { betaRef: 0.5, betaBias: 0.25 }, { old: false, ref: true, bias: true });
  k.lp.set([-12, -1, -2]);
  k.ref!.set([-1, -12, 9.5]);
  k.bias!.set([-1, -12, -13.5]);
  check(k, 'log-ratio at the clamp');
}

test('advantages of 0 and no KL terms: loss 0 and zero gradient; completions of length 1 only', () => {
  const c = makeCase(11, [1, 1, 1, 1], {}, { old: true, ref: false, bias: false });
  c.adv.fill(0);
  const { loss, grad } = check(c, 'zero advantages');
  assert.is(loss, 0);
  for (const g of grad) assert.is(Math.abs(g), 0);
  for (const lossType of LOSS_TYPES) for (const importanceSampling of LEVELS) {
    check(makeCase(12, [1, 1, 1, 1, 1], { lossType, importanceSampling }, { old: true, ref: true, bias: true }), `length 1 ${lossType} ${importanceSampling}`);
  }
});

test('16 completions x 768 tokens (many work chunks), sequence and token level, every SIMD level; deterministic across thread counts', () => {
  const lens = Array.from({ length: 16 }, (_, i) => 768 - 37 * i);
  for (const simd of SIMD) for (const importanceSampling of LEVELS) {
    const prevSimd = setSimdLevel(simd), prev = setNumThreads(2);
    try {
      const c = makeCase(21, lens, { importanceSampling, betaRef: 0.01 }, { old: true, ref: true, bias: true });
      const one = check(c, `large ${simd} ${importanceSampling}`);
      setNumThreads(1);
      const a = args(c);
      const r = cdpoLossSync(a);
      assert.is(r.loss, one.loss, 'same loss bits on 1 thread');
      assert.equal(f32(r.dLogprobs), one.grad, 'same gradient on 1 thread');
      r.dLogprobs.dispose(); disposeArgs(a);
    } finally { setNumThreads(prev); setSimdLevel(prevSimd); }
  }
});

test('the scalar and SIMD forms agree to rounding', () => {
  for (const importanceSampling of LEVELS) {
    const c = makeCase(23, [40, 1, 77, 8, 9], { importanceSampling, betaRef: 0.02, delta: 1.25 }, { old: true, ref: true, bias: true });
    const got = SIMD.map((l) => { const prev = setSimdLevel(l); try { return check(c, `${l} ${importanceSampling}`); } finally { setSimdLevel(prev); } });
    for (let k = 1; k < got.length; k++) {
      assert.ok(scalarRel(got[k]!.loss, got[0]!.loss) < 1e-12, `${SIMD[k]} loss ${got[k]!.loss} vs ${got[0]!.loss}`);
      assertRel(got[k]!.grad, got[0]!.grad, 1e-6, `${SIMD[k]} gradient`);
    }
  }
});

test('finite differences of the native loss match its gradient', () => {
  // central differences on the f32 inputs; data kept away from the kinks (clip bounds, KL clamp)
  let seed = 500;
  for (const importanceSampling of LEVELS) for (const lossType of ['grpo', 'dapo'] as const) {
    const c = makeCase(seed++, [4, 1, 6], { importanceSampling, lossType, betaRef: 0.3, betaBias: 0.2, epsLow: 0.6, epsHigh: 0.9, klClamp: 30 }, { old: true, ref: true, bias: true });
    const a = args(c);
    const base = cdpoLossSync(a);
    const g = f32(base.dLogprobs).slice();
    base.dLogprobs.dispose();
    const lp = a.logprobs as Tensor;
    const fd = new Float64Array(c.lp.length);
    for (let t = 0; t < c.lp.length; t++) {
      const x = c.lp[t]!, h = 1e-3;
      f32(lp)[t] = x + h; const up = f32(lp)[t]!;
      const rp = cdpoLossSync(a); rp.dLogprobs.dispose();
      f32(lp)[t] = x - h; const dn = f32(lp)[t]!;
      const rm = cdpoLossSync(a); rm.dLogprobs.dispose();
      f32(lp)[t] = x;
      fd[t] = (rp.loss - rm.loss) / (up - dn);
    }
    disposeArgs(a);
    assertRel(g, fd, 2e-4, `finite differences ${importanceSampling} ${lossType}`);
  }
});

test('the Promise form equals the sync form; Float32Array inputs and strided views are accepted', async () => {
  const c = makeCase(31, [6, 2, 5], { betaRef: 0.05 }, { old: true, ref: true, bias: true });
  const want = reference(c);
  const r = await cdpoLoss({ logprobs: c.lp, oldLogprobs: c.old, refLogprobs: c.ref, biasLogprobs: c.bias, advantages: c.adv, seqOffsets: c.off, betaRef: 0.05 });
  assert.ok(scalarRel(r.loss, want.loss) < 1e-6);
  assertRel(f32(r.dLogprobs), want.grad, 1e-5, 'async, typed arrays');
  r.dLogprobs.dispose();
  // logprobs as every other element of a longer tensor
  const wide = new Float32Array(2 * c.lp.length);
  c.lp.forEach((v, i) => { wide[2 * i] = v; wide[2 * i + 1] = 99; });
  using w = Tensor.from(wide);
  using offs = Tensor.from(c.off);
  const s = cdpoLossSync({ logprobs: w.slice(0, 0, wide.length, 2), oldLogprobs: c.old, refLogprobs: c.ref, biasLogprobs: c.bias, advantages: c.adv, seqOffsets: offs, betaRef: 0.05 });
  assert.is(s.loss, r.loss);
  // out: the gradient written into a given tensor
  using out = Tensor.zeros([c.lp.length]);
  const o = cdpoLossSync({ ...c.opts, logprobs: c.lp, oldLogprobs: c.old, refLogprobs: c.ref, biasLogprobs: c.bias, advantages: c.adv, seqOffsets: c.off, betaRef: 0.05, out });
  assert.is(o.dLogprobs, out);
  assert.equal(f32(out), f32(s.dLogprobs));
  throwsLike(() => cdpoLossSync({ logprobs: c.lp, advantages: c.adv, seqOffsets: c.off, out: Tensor.zeros([2]) }), RangeError, /out of shape \[13\]/, 'out shape');
  s.dLogprobs.dispose();
});

test('errors name the argument, the expectation and what was received; an empty batch is a RangeError', async () => {
  const c = makeCase(41, [3, 2], {}, { old: true, ref: true, bias: true });
  const base = { logprobs: c.lp, oldLogprobs: c.old, refLogprobs: c.ref, biasLogprobs: c.bias, advantages: c.adv, seqOffsets: c.off };
  throwsLike(() => cdpoLossSync({ logprobs: new Float32Array(0), advantages: new Float32Array(0), seqOffsets: new Int32Array([0]) }), RangeError, /at least one completion.*seqOffsets.*length 1/, 'empty batch');
  await rejectsLike(cdpoLoss({ logprobs: new Float32Array(0), advantages: new Float32Array(0), seqOffsets: new Int32Array([0]) }), RangeError, /at least one completion/, 'empty batch (async)');
  throwsLike(() => cdpoLossSync({ ...base, seqOffsets: new Int32Array([0, 3, 4]) }), RangeError, /seqOffsets\[2\] = 5 .*received 4/, 'offsets end');
  throwsLike(() => cdpoLossSync({ ...base, seqOffsets: new Int32Array([1, 3, 5]) }), RangeError, /seqOffsets\[0\] = 0/, 'offsets start');
  throwsLike(() => cdpoLossSync({ ...base, seqOffsets: new Int32Array([0, 4, 3, 5]), advantages: new Float32Array(3) }), RangeError, /non-decreasing/, 'offsets order');
  throwsLike(() => cdpoLossSync({ ...base, advantages: new Float32Array(3) }), RangeError, /2 elements.*advantages.*\[3\]/, 'advantages length');
  throwsLike(() => cdpoLossSync({ ...base, refLogprobs: new Float32Array(4) }), RangeError, /5 elements.*refLogprobs.*\[4\]/, 'ref length');
  throwsLike(() => cdpoLossSync({ ...base, logprobs: [1, 2] as never }), TypeError, /Tensor or a Float32Array for logprobs but received an array/, 'logprobs type');
  throwsLike(() => cdpoLossSync({ ...base, oldLogprobs: Tensor.zeros([5], 'bf16') }), TypeError, /dtype f32 for oldLogprobs but received bf16/, 'dtype');
  throwsLike(() => cdpoLossSync({ ...base, seqOffsets: new Float32Array([0, 3, 5]) as never }), TypeError, /Int32Array or an i32 Tensor for seqOffsets/, 'offsets type');
  throwsLike(() => cdpoLossSync({ ...base, lossType: 'ppo' as never }), RangeError, /one of 'grpo', 'bnpo', 'dr_grpo', 'dapo' for lossType but received 'ppo'/, 'lossType');
  throwsLike(() => cdpoLossSync({ ...base, importanceSampling: 'seq' as never }), RangeError, /importanceSampling/, 'importanceSampling');
  throwsLike(() => cdpoLossSync({ ...base, epsLow: 1.5 }), RangeError, /\[0, 1\] for epsLow but received 1.5/, 'epsLow');
  throwsLike(() => cdpoLossSync({ ...base, epsHigh: -0.1 }), RangeError, /epsHigh but received -0.1/, 'epsHigh');
  throwsLike(() => cdpoLossSync({ ...base, betaBias: Number.NaN }), TypeError, /a number for betaBias but received NaN/, 'betaBias NaN');
  throwsLike(() => cdpoLossSync({ ...base, betaRef: -1 }), RangeError, /betaRef but received -1/, 'betaRef');
  throwsLike(() => cdpoLossSync({ ...base, klClamp: 0 }), RangeError, /\(0, Infinity\] for klClamp but received 0/, 'klClamp');
  throwsLike(() => cdpoLossSync({ ...base, delta: 0 }), RangeError, /delta but received 0/, 'delta');
  throwsLike(() => cdpoLossSync({ ...base, lossType: 'dr_grpo', maxCompletionLength: 2 }), RangeError, /integer >= 3 for maxCompletionLength but received 2/, 'maxCompletionLength');
  throwsLike(() => cdpoLossSync({ ...base, lossType: 'dapo', activeTokens: 4.5 }), TypeError, /integer for activeTokens/, 'activeTokens');
  throwsLike(() => cdpoLossSync({ ...base, refLogprobs: undefined, betaRef: 0.1 }), TypeError, /refLogprobs .* when betaRef > 0/, 'ref needed');
  throwsLike(() => cdpoLossSync({ ...base, biasLogprobs: undefined, betaBias: 0.01 }), TypeError, /biasLogprobs .* when betaBias > 0/, 'bias needed');
  throwsLike(() => cdpoLossSync(null as never), TypeError, /options object for args/, 'args');
  const d = Tensor.from(c.lp); d.dispose();
  throwsLike(() => cdpoLossSync({ ...base, logprobs: d }), TypeError, /live Tensor for logprobs/, 'disposed');
  // without biasLogprobs the push term is off by default: plain GRPO
  const plain = makeCase(42, [3, 2], {}, { old: true, ref: false, bias: false });
  check(plain, 'no bias model: betaBias defaults to 0');
});

// ---- fused with the LM head ----

/** float64 LM head: log-probs of the targets and the softmax, for the reference of linearCdpo. */
function lmHead(h: Float32Array, w: Float32Array, tg: Int32Array, N: number, H: number, V: number, T: number) {
  const logp = new Float64Array(N), probs = new Float64Array(N * V);
  for (let n = 0; n < N; n++) {
    let mx = -Infinity;
    for (let v = 0; v < V; v++) {
      let z = 0;
      for (let k = 0; k < H; k++) z += h[n * H + k]! * w[v * H + k]!;
      probs[n * V + v] = z / T;
      mx = Math.max(mx, z / T);
    }
    let se = 0;
    for (let v = 0; v < V; v++) se += Math.exp(probs[n * V + v]! - mx);
    const lse = mx + Math.log(se);
    logp[n] = probs[n * V + tg[n]!]! - lse;
    for (let v = 0; v < V; v++) probs[n * V + v] = Math.exp(probs[n * V + v]! - lse);
  }
  return { logp, probs };
}

/** float64 reference of linearCdpo: LM head, the loss on its log-probs, and the chain rule back through log_softmax and the matmul. */
function linearReference(c: Case, h: Float32Array, w: Float32Array, tg: Int32Array, H: number, V: number, T: number) {
  const N = tg.length;
  const { logp, probs } = lmHead(h, w, tg, N, H, V, T);
  const r = reference({ ...c, lp: logp as unknown as Float32Array });
  const dH = new Float64Array(N * H), dW = new Float64Array(V * H);
  for (let n = 0; n < N; n++) {
    for (let v = 0; v < V; v++) {
      const dz = r.grad[n]! * ((v === tg[n] ? 1 : 0) - probs[n * V + v]!) / T;
      if (dz === 0) continue;
      for (let k = 0; k < H; k++) { dH[n * H + k] += dz * w[v * H + k]!; dW[v * H + k] += dz * h[n * H + k]!; }
    }
  }
  return { ...r, logp, dH, dW };
}

function linearCase(seed: number, lens: number[], H: number, V: number, opts: CdpoOptions & { temperature?: number }, has: { old: boolean; ref: boolean; bias: boolean }) {
  const c = makeCase(seed, lens, opts, has);
  const N = c.lp.length, r = rng(seed + 1);
  const h = new Float32Array(N * H).map(() => (r() - 0.5) * 2);
  const w = new Float32Array(V * H).map(() => (r() - 0.5) * 0.6);
  const tg = new Int32Array(N).map(() => Math.floor(r() * V));
  // old / ref / bias log-probs near the policy's: ratios on both sides of the clip range
  const { logp } = lmHead(h, w, tg, N, H, V, opts.temperature ?? 1);
  for (const [arr, s] of [[c.old, 0.9], [c.ref, 2], [c.bias, 3]] as const) if (arr) for (let t = 0; t < N; t++) arr[t] = logp[t]! + (r() - 0.5) * s;
  if (c.ref) c.ref[1] = logp[1]! + 14;  // beyond the clamp
  return { c, h, w, tg };
}

for (const simd of SIMD) test(`[${simd}] linearCdpo matches the float64 reference (loss, logprobs, dHidden, dWeight), every lossType x IS level`, () => {
  const prev = setSimdLevel(simd);
  try {
    let seed = 900;
    for (const lossType of LOSS_TYPES) for (const importanceSampling of LEVELS) {
      const H = 24, V = 97, temperature = lossType === 'bnpo' ? 0.7 : 1;
      const opts = { lossType, importanceSampling, betaRef: 0.05, delta: 1.4 };
      const { c, h, w, tg } = linearCase(seed++, [5, 1, 9, 0, 3], H, V, { ...opts, temperature }, { old: true, ref: true, bias: true });
      const want = linearReference(c, h, w, tg, H, V, temperature);
      using hidden = Tensor.from(h, [tg.length, H]);
      using weight = Tensor.from(w, [V, H]);
      const a = args(c);
      const r = linearCdpoSync({ ...a, hidden, weight, targets: tg, temperature, logprobs: undefined } as unknown as LinearCdpoArgs);
      const what = `linear ${simd} ${lossType} ${importanceSampling}`;
      assertRel(f32(r.logprobs), want.logp, 1e-5, `${what}: logprobs`);
      assert.ok(scalarRel(r.loss, want.loss) < 1e-5, `${what}: loss ${r.loss} vs ${want.loss}`);
      assertRel(f32(r.dHidden), want.dH, 1e-5, `${what}: dHidden`);
      assertRel(f32(r.dWeight), want.dW, 1e-5, `${what}: dWeight`);
      // the same call's loss equals cdpoLoss on the returned log-probs exactly (same f32 inputs, same math)
      const l = cdpoLossSync({ ...a, logprobs: r.logprobs });
      assert.is(r.loss, l.loss, `${what}: loss = cdpoLoss(logprobs)`);
      assert.equal(r.metrics, l.metrics, `${what}: metrics`);
      for (const t of [r.dHidden, r.dWeight, r.logprobs, l.dLogprobs]) t.dispose();
      disposeArgs(a);
    }
  } finally { setSimdLevel(prev); }
});

test('linearCdpo tiling: token blocks, vocabulary chunks, cached tiles (none, some, all), the two-pass mode and the in-place tiles agree', () => {
  const V = 61, lens = [3, 7, 1, 12, 5, 2];
  let seed = 950;
  // H 16 < N 30: token blocks and a tile cache; H 40 >= N: every logits tile kept in dWeight's rows
  // (the block and cache knobs do not apply there; the vocabulary chunks do)
  for (const H of [16, 40]) for (const importanceSampling of LEVELS) {
    const opts = { importanceSampling, betaRef: 0.05 } as CdpoOptions;
    const { c, h, w, tg } = linearCase(seed++, lens, H, V, opts, { old: true, ref: true, bias: true });
    const N = tg.length;
    const want = linearReference(c, h, w, tg, H, V, 1);
    using hidden = Tensor.from(h, [N, H]);
    using weight = Tensor.from(w, [V, H]);
    const a = args(c);
    // [tokens per block, vocabulary rows per tile, tiles kept from the forward (at least 1)]: one tile;
    // 7-row tiles (the last one 5 rows) with 1 / 3 / all 9 kept; blocks of 5 and 1 tokens (several
    // blocks: the two-pass mode at sequence level)
    const tilings: [number, number, number][] = [[N, V, 0], [N, 7, 0], [N, 7, 3], [N, 7, 9], [5, 16, 2], [1, 7, 9], [8, 61, 1]];
    const results = tilings.map(([tokens, vocab, cached]) => {
      const _cacheBytes = cached * Math.min(tokens, N) * Math.min(vocab, V) * 4;
      const r = linearCdpoSync({ ...a, hidden, weight, targets: tg, logprobs: undefined, _tokenBlock: tokens, _vocabChunk: vocab, _cacheBytes } as unknown as LinearCdpoArgs);
      const what = `H ${H} ${importanceSampling} tiling ${tokens}x${vocab} cached ${cached}`;
      assertRel(f32(r.logprobs), want.logp, 1e-5, `${what}: logprobs`);
      assert.ok(scalarRel(r.loss, want.loss) < 1e-5, `${what}: loss ${r.loss} vs ${want.loss}`);
      assertRel(f32(r.dHidden), want.dH, 1e-5, `${what}: dHidden`);
      assertRel(f32(r.dWeight), want.dW, 1e-5, `${what}: dWeight`);
      const out = { loss: r.loss };
      r.dHidden.dispose(); r.dWeight.dispose(); r.logprobs.dispose();
      return out;
    });
    for (const r of results.slice(1)) assert.ok(scalarRel(r.loss, results[0]!.loss) < 1e-6, 'loss independent of the tiling');
    disposeArgs(a);
  }
});

test('linearCdpo: dWeight accumulates into a given tensor; async equals sync; N = 0; errors', async () => {
  const H = 8, V = 33;
  const { c, h, w, tg } = linearCase(970, [4, 2, 6], H, V, {}, { old: true, ref: false, bias: true });
  const N = tg.length;
  using hidden = Tensor.from(h, [N, H]);
  using weight = Tensor.from(w, [V, H]);
  const a = args(c);
  const base = { ...a, hidden, weight, targets: tg, logprobs: undefined } as unknown as LinearCdpoArgs;
  const s = linearCdpoSync(base);
  const sW = f32(s.dWeight).slice();
  const r = await linearCdpo(base);
  assert.is(r.loss, s.loss, 'async loss');
  assert.equal(f32(r.dWeight), f32(s.dWeight), 'async dWeight');
  assert.equal(f32(r.dHidden), f32(s.dHidden), 'async dHidden');
  // accumulation: start from ones, add the gradient twice
  using acc = Tensor.from(new Float32Array(V * H).fill(1), [V, H]);
  const r1 = linearCdpoSync({ ...base, dWeight: acc });
  assert.is(r1.dWeight, acc, 'the given tensor is returned');
  await linearCdpo({ ...base, dWeight: acc });
  const want = Float64Array.from(f32(s.dWeight), (g) => 1 + 2 * g);
  assertRel(f32(acc), want, 1e-6, 'dWeight = 1 + 2 g');
  // accumulate: false overwrites whatever the buffer held (NaN here), both with the in-place tiles
  // (N <= H) and without; the result equals a fresh dWeight
  for (const [HH, lens] of [[8, [4, 2, 6]], [16, [4, 2, 6]]] as const) {
    const k = linearCase(975 + HH, [...lens], HH, V, {}, { old: true, ref: true, bias: true });
    using hh = Tensor.from(k.h, [k.tg.length, HH]);
    using ww = Tensor.from(k.w, [V, HH]);
    const ka = args(k.c);
    const kb = { ...ka, hidden: hh, weight: ww, targets: k.tg, logprobs: undefined } as unknown as LinearCdpoArgs;
    const fresh = linearCdpoSync(kb);
    using junk = Tensor.from(new Float32Array(V * HH).fill(NaN), [V, HH]);
    const o = await linearCdpo({ ...kb, dWeight: junk, accumulate: false });
    assert.is(o.dWeight, junk);
    assert.is(o.loss, fresh.loss, `H ${HH}: overwrite loss`);
    assertRel(f32(junk), f32(fresh.dWeight), 1e-6, `H ${HH}: overwritten dWeight = fresh dWeight`);
    assertRel(f32(o.dHidden), f32(fresh.dHidden), 1e-6, `H ${HH}: dHidden`);
    assertRel(f32(junk), linearReference(k.c, k.h, k.w, k.tg, HH, V, 1).dW, 1e-5, `H ${HH}: dWeight vs float64`);
    for (const t of [fresh.dHidden, fresh.dWeight, fresh.logprobs, o.dHidden, o.logprobs]) t.dispose();
    disposeArgs(ka);
  }
  throwsLike(() => linearCdpoSync({ ...base, dWeight: acc, accumulate: 1 as unknown as boolean }), TypeError, /boolean for accumulate but received 1 of type number/, 'accumulate type');
  for (const t of [s.dHidden, s.dWeight, s.logprobs, r.dHidden, r.dWeight, r.logprobs, r1.dHidden, r1.logprobs]) t.dispose();
  // inputs disposed while the call runs: the native job holds its own references
  {
    const hh = Tensor.from(h, [N, H]), ww = Tensor.from(w, [V, H]), aa = args(c);
    const pending = linearCdpo({ ...aa, hidden: hh, weight: ww, targets: tg, logprobs: undefined } as unknown as LinearCdpoArgs);
    hh.dispose(); ww.dispose(); disposeArgs(aa);
    const d = await pending;
    assert.is(d.loss, s.loss, 'disposed mid-flight');
    assert.equal(f32(d.dWeight), sW);
    d.dHidden.dispose(); d.dWeight.dispose(); d.logprobs.dispose();
  }
  // no tokens: one empty completion
  {
    using h0 = Tensor.zeros([0, H]);
    const z = linearCdpoSync({ hidden: h0, weight, targets: new Int32Array(0), advantages: new Float32Array([1]), seqOffsets: new Int32Array([0, 0]) });
    assert.is(z.loss, 0);
    assert.equal(z.dHidden.shape, [0, H]);
    assert.ok(f32(z.dWeight).every((v) => v === 0), 'zero dWeight');
    z.dHidden.dispose(); z.dWeight.dispose(); z.logprobs.dispose();
  }
  throwsLike(() => linearCdpoSync({ ...base, targets: tg.map((t, i) => (i === 3 ? V : t)) }), RangeError, /token ids in \[0, 33\) for targets but targets\[3\] = 33/, 'target range');
  throwsLike(() => linearCdpoSync({ ...base, targets: new Int32Array(N + 1) }), RangeError, /12 elements for targets but received 13/, 'targets length');
  throwsLike(() => linearCdpoSync({ ...base, weight: Tensor.zeros([V, H + 1]) }), RangeError, /weight of shape \[V, 8\].*\[33, 9\]/, 'H mismatch');
  throwsLike(() => linearCdpoSync({ ...base, hidden: Tensor.zeros([N]) }), RangeError, /2 dimensions \[N, H\] for hidden/, 'hidden ndim');
  throwsLike(() => linearCdpoSync({ ...base, temperature: 0 }), RangeError, /a finite number >= 1e-6 .* for temperature but received 0/, 'temperature');
  throwsLike(() => linearCdpoSync({ ...base, temperature: 1e-50 }), RangeError, /for temperature but received 1e-50/, 'temperature 1e-50 (0 in float32)');
  throwsLike(() => linearCdpoSync({ ...base, dWeight: Tensor.zeros([V, 2]) }), RangeError, /dWeight of shape \[33, 8\]/, 'dWeight shape');
  throwsLike(() => linearCdpoSync({ ...base, seqOffsets: new Int32Array([0, 4, 6, 11]) }), RangeError, /seqOffsets\[3\] = 12/, 'offsets vs N');
  throwsLike(() => linearCdpoSync({ ...base, weight: Tensor.zeros([V, H], 'bf16') }), TypeError, /dtype f32 for weight but received bf16/, 'weight dtype');
  throwsLike(() => linearCdpoSync({ hidden: Tensor.zeros([0, H]), weight, targets: new Int32Array(0), advantages: new Float32Array(0), seqOffsets: new Int32Array([0]) }), RangeError, /at least one completion/, 'empty batch');
  disposeArgs(a);
});

(backend().cuda.devices.length > 0 ? test : test.skip)('CUDA: cdpoLoss and linearCdpo on a device equal the CPU results (runs only where a GPU exists)', () => {
  const toCuda = (a: Float32Array, shape?: number[]) => { using t = Tensor.from(a, shape); return t.to('cuda'); };
  for (const importanceSampling of LEVELS) for (const lossType of LOSS_TYPES) {
    const c = makeCase(990, [5, 1, 9, 0, 3, 700], { importanceSampling, lossType, betaRef: 0.05, delta: 1.3 }, { old: true, ref: true, bias: true });
    const want = reference(c);
    const dev = { logprobs: toCuda(c.lp), oldLogprobs: toCuda(c.old!), refLogprobs: toCuda(c.ref!), biasLogprobs: toCuda(c.bias!), advantages: toCuda(c.adv), seqOffsets: c.off, ...c.opts };
    const r = cdpoLossSync(dev);
    assert.is(r.dLogprobs.device, 'cuda');
    assert.ok(scalarRel(r.loss, want.loss) < 1e-6, `cuda loss ${r.loss} vs ${want.loss}`);
    using g = r.dLogprobs.to('cpu');
    assertRel(f32(g), want.grad, 1e-5, `cuda gradient ${importanceSampling} ${lossType}`);
    r.dLogprobs.dispose();
    for (const t of [dev.logprobs, dev.oldLogprobs, dev.refLogprobs, dev.biasLogprobs, dev.advantages]) t.dispose();
  }
  const H = 24, V = 97;
  for (const cacheTokens of [undefined, 5]) {
    const { c, h, w, tg } = linearCase(995, [5, 1, 9, 0, 3], H, V, { betaRef: 0.05 }, { old: true, ref: true, bias: true });
    const want = linearReference(c, h, w, tg, H, V, 1);
    const N = tg.length;
    const r = linearCdpoSync({ hidden: toCuda(h, [N, H]), weight: toCuda(w, [V, H]), targets: tg, oldLogprobs: toCuda(c.old!), refLogprobs: toCuda(c.ref!),
      biasLogprobs: toCuda(c.bias!), advantages: toCuda(c.adv), seqOffsets: c.off, ...c.opts, ...(cacheTokens ? { _cacheBytes: cacheTokens * V * 4 } : {}) } as LinearCdpoArgs);
    using dh = r.dHidden.to('cpu');
    using dw = r.dWeight.to('cpu');
    assert.ok(scalarRel(r.loss, want.loss) < 1e-5, `cuda linear loss ${r.loss} vs ${want.loss}`);
    assertRel(f32(dh), want.dH, 1e-5, 'cuda dHidden');
    assertRel(f32(dw), want.dW, 1e-5, 'cuda dWeight');
    r.dHidden.dispose(); r.dWeight.dispose(); r.logprobs.dispose();
  }
});

test('linearCdpo: PyTorch autograd through matmul + log_softmax + gather + the loss; finite differences', () => {
  const H = 12, V = 41, T = 0.8;
  // against autograd with delta and the default clip range; finite differences with the kinks (clip bounds,
  // delta, KL clamp) moved away from the data
  const kinks = { betaRef: 0.1, delta: 1.3, temperature: T }, smooth = { betaRef: 0.1, epsLow: 0.6, epsHigh: 0.9, klClamp: 30, temperature: T };
  const cases = [kinks, smooth].flatMap((o, j) => LEVELS.map((importanceSampling, k) => linearCase(1100 + 2 * j + k, [4, 1, 7], H, V, { importanceSampling, ...o }, { old: true, ref: true, bias: true })));
  const results = cases.map(({ c, h, w, tg }) => {
    using hidden = Tensor.from(h, [tg.length, H]);
    using weight = Tensor.from(w, [V, H]);
    const a = args(c);
    const base = { ...a, hidden, weight, targets: tg, temperature: T, logprobs: undefined } as unknown as LinearCdpoArgs;
    const r = linearCdpoSync(base);
    const out = { loss: r.loss, dH: f32(r.dHidden).slice(), dW: f32(r.dWeight).slice() };
    r.dHidden.dispose(); r.dWeight.dispose(); r.logprobs.dispose();
    if (c.opts.delta !== undefined) { disposeArgs(a); return out; }
    // central differences on a few entries of hidden and weight (f32 inputs; loss in double)
    const fd = (t: Tensor, i: number) => {
      const d = f32(t), x = d[i]!, e = 1e-2;
      d[i] = x + e; const up = d[i]!; const rp = linearCdpoSync(base);
      d[i] = x - e; const dn = d[i]!; const rm = linearCdpoSync(base);
      d[i] = x;
      for (const q of [rp, rm]) { q.dHidden.dispose(); q.dWeight.dispose(); q.logprobs.dispose(); }
      return (rp.loss - rm.loss) / (up - dn);
    };
    for (const i of [0, 7, 5 * H + 3, tg.length * H - 1]) {
      const g = fd(hidden, i);
      assert.ok(Math.abs(g - out.dH[i]!) <= 2e-3 * Math.max(...out.dH.map(Math.abs)), `FD dHidden[${i}] ${g} vs ${out.dH[i]}`);
    }
    for (const i of [tg[0]! * H, tg[2]! * H + 5, 3 * H + 1, V * H - 1]) {
      const g = fd(weight, i);
      assert.ok(Math.abs(g - out.dW[i]!) <= 2e-3 * Math.max(...out.dW.map(Math.abs)), `FD dWeight[${i}] ${g} vs ${out.dW[i]}`);
    }
    disposeArgs(a);
    return out;
  });
  const json = JSON.stringify(cases.map(({ c, h, w, tg }) => ({ h: Array.from(h), w: Array.from(w), tg: Array.from(tg), H, T, old: Array.from(c.old!), ref: Array.from(c.ref!), bias: Array.from(c.bias!), adv: Array.from(c.adv), off: Array.from(c.off), opts: c.opts })));
  const out = runPython(['-c', TORCH_SCRIPT], ['torch'], { input: json });
  if (out === null) return skip(noPython(['torch']));
  const torch = JSON.parse(out) as { loss: number; dh: number[]; dw: number[] }[];
  results.forEach((got, i) => {
    assert.ok(scalarRel(got.loss, torch[i]!.loss) < 1e-5, `torch linear ${i}: loss ${got.loss} vs ${torch[i]!.loss}`);
    assertRel(got.dH, torch[i]!.dh, 1e-5, `torch linear ${i}: dHidden`);
    assertRel(got.dW, torch[i]!.dw, 1e-5, `torch linear ${i}: dWeight`);
  });
});

// The unfused sequence of the log-prob family (src/kernels/gather.ts).
const lp = { linearLogprobsSync, linearLogprobsBackwardSync };

test("linearCdpo equals linearLogprobs + cdpoLoss + linearLogprobsBackward (< 1e-5; precision 'bf16' on both sides < 1e-4)", () => {
  const H = 32, V = 1000, T = 0.9;
  let seed = 1200;
  for (const importanceSampling of LEVELS) for (const lossType of ['grpo', 'dapo'] as const) for (const precision of ['f32', 'bf16'] as const) {
    const { c, h, w, tg } = linearCase(seed++, [7, 1, 20, 4], H, V, { importanceSampling, lossType, betaRef: 0.05, temperature: T }, { old: true, ref: true, bias: true });
    const N = tg.length;
    using hidden = Tensor.from(h, [N, H]);
    using weight = Tensor.from(w, [V, H]);
    const a = args(c);
    const fused = linearCdpoSync({ ...a, hidden, weight, targets: tg, temperature: T, precision, logprobs: undefined } as unknown as LinearCdpoArgs);
    const f = lp.linearLogprobsSync(hidden, weight, tg, { temperature: T, precision });
    const l = cdpoLossSync({ ...a, logprobs: f.logprobs });
    const b = lp.linearLogprobsBackwardSync(hidden, weight, tg, f.lse, l.dLogprobs, { temperature: T, precision });
    const what = `unfused ${importanceSampling} ${lossType} ${precision}`;
    // bf16: the fused pass and the backward each round their own dZ to bf16 (a value a rounding
    // apart in f32 may round to different bf16 neighbours).
    const tol = precision === 'bf16' ? 1e-4 : 1e-5;
    assertRel(f32(fused.logprobs), f32(f.logprobs), 1e-5, `${what}: logprobs`);
    assert.ok(scalarRel(fused.loss, l.loss) < 1e-5, `${what}: loss ${fused.loss} vs ${l.loss}`);
    assertRel(f32(fused.dHidden), f32(b.dHidden), tol, `${what}: dHidden`);
    assertRel(f32(fused.dWeight), f32(b.dWeight), tol, `${what}: dWeight`);
    for (const t of [fused.dHidden, fused.dWeight, fused.logprobs, f.logprobs, f.lse, l.dLogprobs, b.dHidden, b.dWeight]) t.dispose();
    disposeArgs(a);
  }
});

// ---- group advantages ----

function advRef(r: ArrayLike<number>, G: number, scale: 'group' | 'batch' | 'none', eps: number): Float64Array {
  const B = r.length, out = new Float64Array(B);
  const mean = (a: number[]) => a.reduce((s, v) => s + v, 0) / a.length;
  const std = (a: number[]) => { const m = mean(a); return Math.sqrt(a.reduce((s, v) => s + (v - m) ** 2, 0) / (a.length - 1)); };
  const all = Array.from(r);
  for (let g = 0; g < B; g += G) {
    const grp = all.slice(g, g + G);
    if (grp.every((v) => v === grp[0])) continue;
    const m = mean(grp), s = scale === 'group' ? std(grp) + eps : scale === 'batch' ? std(all) + eps : 1;
    for (let j = 0; j < G; j++) out[g + j] = (grp[j]! - m) / s;
  }
  return out;
}

test('groupAdvantages: group / batch / none scaling against float64; equal groups give exactly 0', async () => {
  const rewards = Float32Array.from([0, 1, 2, 0.5, 1, 1, 1, 1, 2, 0, 0, 1.5, 0.1, 0.1, 0.1, 0.1]);
  for (const scale of ['group', 'batch', 'none'] as const) for (const eps of [1e-4, 0]) {
    using a = groupAdvantagesSync(rewards, 4, { scale, eps });
    assert.equal(a.shape, [16]);
    assertRel(f32(a), advRef(rewards, 4, scale, eps), 1e-6, `${scale} eps ${eps}`);
    for (const g of [4, 12]) assert.is(f32(a)[g + 1], 0, 'equal group: exactly 0, not NaN');
  }
  using one = await groupAdvantages([3, -1, 2], 1);
  assert.equal(Array.from(f32(one)), [0, 0, 0], 'groups of one');
  using t = Tensor.from(rewards);
  using b = await groupAdvantages(t, 8);
  assertRel(f32(b), advRef(rewards, 8, 'group', 1e-4), 1e-6, 'tensor input, G = 8');
  throwsLike(() => groupAdvantagesSync(rewards, 3), RangeError, /multiple of groupSize \(3\).*received 16/);
  throwsLike(() => groupAdvantagesSync(rewards, 0), RangeError, /integer >= 1 for groupSize but received 0/);
  throwsLike(() => groupAdvantagesSync(rewards, 4, { scale: 'std' as never }), RangeError, /one of 'group', 'batch', 'none' for scale/);
  throwsLike(() => groupAdvantagesSync(rewards, 4, { eps: -1 }), RangeError, /eps but received -1/);
  throwsLike(() => groupAdvantagesSync([1, Number.NaN], 2), RangeError, /finite rewards but rewards\[1\] is NaN/);
  throwsLike(() => groupAdvantagesSync([], 1), RangeError, /at least one reward/);
  throwsLike(() => groupAdvantagesSync('x' as never, 1), TypeError, /rewards but received 'x'/);
  await rejectsLike(groupAdvantages(rewards, 5), RangeError, /multiple of groupSize/);
});

// ---- PyTorch autograd ----

const TORCH_SCRIPT = String.raw`
import json, sys, torch
out = []
for c in json.load(sys.stdin):
    if c.get('h') is not None:  # linearCdpo: log-probs from an LM head
        H = c['H']
        h = torch.tensor(c['h'], dtype=torch.float64).reshape(-1, H).requires_grad_()
        w = torch.tensor(c['w'], dtype=torch.float64).reshape(-1, H).requires_grad_()
        logits = h @ w.t() / c['T']
        lp = torch.log_softmax(logits, dim=-1).gather(1, torch.tensor(c['tg']).long().unsqueeze(1)).squeeze(1)
    else:
        h = None
        lp = torch.tensor(c['lp'], dtype=torch.float64, requires_grad=True)
    off, adv, o = c['off'], torch.tensor(c['adv'], dtype=torch.float64), c['opts']
    B, N = len(off) - 1, lp.shape[0]
    lens = [off[i + 1] - off[i] for i in range(B)]
    seg = torch.tensor(sum([[i] * lens[i] for i in range(B)], []), dtype=torch.long)
    old = torch.tensor(c['old'], dtype=torch.float64) if c.get('old') is not None else lp.detach()
    log_ratio = lp - old
    if o.get('importanceSampling') == 'sequence':
        sums = torch.zeros(B, dtype=torch.float64).index_add(0, seg, log_ratio)
        logw = (sums / torch.tensor(lens, dtype=torch.float64).clamp(min=1))[seg]
    else:
        logw = log_ratio
    coef_1 = torch.exp(logw)
    coef_2 = torch.clamp(coef_1, 1 - o.get('epsLow', 0.2), 1 + o.get('epsHigh', 0.28))
    if o.get('delta') is not None:
        coef_1 = torch.clamp(coef_1, max=o['delta'])
    A = adv[seg]
    loss_t = -torch.min(coef_1 * A, coef_2 * A)
    C = o.get('klClamp', 11.0)
    def k3(q):
        d = torch.clamp(torch.tensor(q, dtype=torch.float64) - lp, -C, C)
        return torch.exp(d) - d - 1
    if c.get('ref') is not None:
        loss_t = loss_t + o.get('betaRef', 0.0) * k3(c['ref'])
    if c.get('bias') is not None:
        loss_t = loss_t - o.get('betaBias', 0.01) * k3(c['bias'])
    t = o.get('lossType', 'grpo')
    if t == 'grpo':
        per_seq = torch.zeros(B, dtype=torch.float64).index_add(0, seg, loss_t)
        loss = (per_seq / torch.tensor(lens, dtype=torch.float64).clamp(min=1)).mean()
    elif t == 'bnpo':
        loss = loss_t.sum() / max(N, 1)
    elif t == 'dr_grpo':
        loss = loss_t.sum() / (B * o.get('maxCompletionLength', max(lens)))
    else:
        loss = loss_t.sum() / o.get('activeTokens', max(N, 1))
    loss.backward()
    if h is not None:
        out.append({'loss': loss.item(), 'dh': h.grad.flatten().tolist(), 'dw': w.grad.flatten().tolist()})
    else:
        out.append({'loss': loss.item(), 'grad': lp.grad.tolist()})
print(json.dumps(out))
`;

test('PyTorch autograd agrees: loss, gradient through both min branches, ties and clamp bounds', () => {
  const cases: Case[] = [];
  let seed = 700;
  for (const lossType of LOSS_TYPES) for (const importanceSampling of LEVELS) {
    cases.push(makeCase(seed++, [5, 1, 8, 3], { lossType, importanceSampling, betaRef: 0.05, delta: 1.4 }, { old: true, ref: true, bias: true }));
  }
  const tie = makeCase(seed++, [3, 1, 4], { epsLow: 0, epsHigh: 0 }, { old: true, ref: false, bias: false });
  tie.old!.set(tie.lp);
  cases.push(tie);
  cases.push(makeCase(seed++, [3, 1, 4], { delta: 1 }, { old: false, ref: false, bias: false }));
  cases.push(makeCase(seed++, [2, 6], { importanceSampling: 'sequence', epsLow: 0, epsHigh: 0 }, { old: false, ref: false, bias: true }));
  const k = makeCase(seed++, [3], { betaRef: 0.5, betaBias: 0.25 }, { old: false, ref: true, bias: true });
  k.lp.set([-12, -1, -2]); k.ref!.set([-1, -12, 9.5]); k.bias!.set([-1, -12, -13.5]);
  cases.push(k);
  const json = JSON.stringify(cases.map((c) => ({ lp: Array.from(c.lp), old: c.old && Array.from(c.old), ref: c.ref && Array.from(c.ref), bias: c.bias && Array.from(c.bias), adv: Array.from(c.adv), off: Array.from(c.off), opts: c.opts })));
  const out = runPython(['-c', TORCH_SCRIPT], ['torch'], { input: json });
  if (out === null) return skip(noPython(['torch']));
  const torch = JSON.parse(out) as { loss: number; grad: number[] }[];
  cases.forEach((c, i) => {
    const a = args(c);
    const got = cdpoLossSync(a);
    const what = `torch case ${i} ${JSON.stringify(c.opts)}`;
    assert.ok(scalarRel(got.loss, torch[i]!.loss) < 1e-6, `${what}: loss ${got.loss} vs ${torch[i]!.loss}`);
    assert.ok(relErr(f32(got.dLogprobs), torch[i]!.grad) < 1e-5, `${what}: gradient rel ${relErr(f32(got.dLogprobs), torch[i]!.grad)}`);
    // the float64 reference of this file agrees with autograd too
    assert.ok(relErr(reference(c).grad, torch[i]!.grad) < 1e-12, `${what}: JS reference vs autograd`);
    got.dLogprobs.dispose(); disposeArgs(a);
  });
});

test.run();
