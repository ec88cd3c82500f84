// Log-prob gathering against float64 references: from logits and fused with the LM head,
// forward, backward, finite differences, bf16/f16 weights, every SIMD level, errors, memory.
import { test } from 'uvu';
import * as assert from 'uvu/assert';

import { memoryStats, resetPeakMemory, setSimdLevel, backend } from '../src/backend.js';
import { gatherLogprobs, gatherLogprobsSync, gatherLogprobsBackwardSync, linearLogprobs, linearLogprobsSync,
  linearLogprobsBackward, linearLogprobsBackwardSync, linearLogprobsWithGrad, linearLogprobsWithGradSync } from '../src/kernels/gather.js';
import { Tensor } from '../src/tensor.js';
import { assertRel, bf16Round, bf16RoundAll, randomF32, relErr, rng, throwsLike, rejectsLike } from './helpers.js';

type Ref = { logp: Float64Array; lse: Float64Array; ent: Float64Array };

/** float64 log-softmax of logits rows z = x / T (x: [N, V] row-major). */
function refFromLogits(x: ArrayLike<number>, N: number, V: number, tg: Int32Array, T: number): Ref {
  const logp = new Float64Array(N), lse = new Float64Array(N), ent = new Float64Array(N);
  for (let r = 0; r < N; r++) {
    let m = -Infinity;
    for (let v = 0; v < V; v++) m = Math.max(m, x[r * V + v]! / T);
    if (m === -Infinity) { logp[r] = -Infinity; lse[r] = -Infinity; ent[r] = 0; continue; }
    let s = 0, t = 0;
    for (let v = 0; v < V; v++) { const z = x[r * V + v]! / T; const e = Math.exp(z - m); s += e; if (e > 0) t += e * z; }
    lse[r] = m + Math.log(s);
    logp[r] = x[r * V + tg[r]!]! / T - lse[r]!;
    ent[r] = lse[r]! - t / s;
  }
  return { logp, lse, ent };
}

/** float64 dLogits of sum_r g_r logp_r. */
function refGrad(x: ArrayLike<number>, N: number, V: number, tg: Int32Array, T: number, lse: Float64Array, g: ArrayLike<number>): Float64Array {
  const d = new Float64Array(N * V);
  for (let r = 0; r < N; r++) {
    for (let v = 0; v < V; v++) d[r * V + v] = (g[r]! / T) * ((v === tg[r] ? 1 : 0) - Math.exp(x[r * V + v]! / T - lse[r]!));
  }
  return d;
}

/** float64 logits (hidden @ W^T + b) for the fused tests. */
function refLogits(h: ArrayLike<number>, w: ArrayLike<number>, b: ArrayLike<number> | null, N: number, H: number, V: number): Float64Array {
  const z = new Float64Array(N * V);
  for (let r = 0; r < N; r++) {
    for (let v = 0; v < V; v++) {
      let s = b ? b[v]! : 0;
      for (let k = 0; k < H; k++) s += h[r * H + k]! * w[v * H + k]!;
      z[r * V + v] = s;
    }
  }
  return z;
}

function targetsFor(N: number, V: number, seed: number): Int32Array {
  const r = rng(seed);
  const t = new Int32Array(N);
  for (let i = 0; i < N; i++) t[i] = Math.floor(r() * V);
  if (N > 0) t[0] = 0;
  if (N > 1) t[N - 1] = V - 1;
  return t;
}

const LEVELS = (['scalar', 'avx2', 'avx512'] as const).filter((l) => l === 'scalar' || (l === 'avx2' ? backend().simd.avx2 : backend().simd.avx512f));

function atLevels(fn: (level: string) => void): void {
  const was = backend().kernels;
  try { for (const l of LEVELS) { setSimdLevel(l); fn(l); } } finally { setSimdLevel(was); }
}

test('gatherLogprobs matches float64 for V in {5, 1000, 50257, 151936}, T != 1, targets at 0 and V-1, N = 1, at every SIMD level', () => {
  const cases = [[7, 5, 1], [33, 1000, 0.7], [3, 50257, 1.3], [2, 151936, 1], [1, 1000, 2]] as const;
  atLevels((level) => {
    for (const [N, V, T] of cases) {
      const x = randomF32(N * V, N * 7 + V, 3);
      const tg = targetsFor(N, V, V);
      const ref = refFromLogits(x, N, V, tg, T);
      using xt = Tensor.from(x, [N, V]);
      const r = gatherLogprobsSync(xt, tg, { temperature: T, entropy: true });
      assertRel(r.logprobs.data, ref.logp, 1e-6, `${level} N${N} V${V} logprobs`);
      assertRel(r.lse.data, ref.lse, 1e-6, `${level} N${N} V${V} lse`);
      assertRel(r.entropy!.data, ref.ent, 1e-5, `${level} N${N} V${V} entropy`);
      r.logprobs.dispose(); r.lse.dispose(); r.entropy!.dispose();
    }
  });
});

test('rows whose max rises from chunk to chunk (the single-pass shift is redone) and large offsets', () => {
  const N = 3, V = 9000;
  const x = new Float32Array(N * V);
  for (let v = 0; v < V; v++) { x[v] = v * 0.02; x[V + v] = (V - v) * 0.03; x[2 * V + v] = 1000 + Math.sin(v); }
  const tg = new Int32Array([V - 1, 0, 17]);
  const ref = refFromLogits(x, N, V, tg, 1);
  atLevels((level) => {
    using xt = Tensor.from(x, [N, V]);
    const r = gatherLogprobsSync(xt, tg, { entropy: true });
    assertRel(r.logprobs.data, ref.logp, 1e-6, `${level} logprobs`);
    assertRel(r.lse.data, ref.lse, 1e-6, `${level} lse`);
    assertRel(r.entropy!.data, ref.ent, 1e-5, `${level} entropy`);
  });
});

test('rows of -inf: an all -inf row gives -inf (not NaN) and entropy 0; -inf entries count as p = 0', () => {
  const V = 37;
  const x = randomF32(3 * V, 5);
  for (let v = 0; v < V; v++) x[v] = -Infinity;        // row 0: all -inf
  for (let v = 0; v < V; v += 3) x[V + v] = -Infinity; // row 1: masked entries
  const tg = new Int32Array([4, 1, 2]);
  const ref = refFromLogits(x, 3, V, tg, 1);
  atLevels((level) => {
    using xt = Tensor.from(x, [3, V]);
    const r = gatherLogprobsSync(xt, tg, { entropy: true });
    const lp = r.logprobs.toArray(), ls = r.lse.toArray(), en = r.entropy!.toArray();
    assert.is(lp[0], -Infinity, level); assert.is(ls[0], -Infinity, level); assert.is(en[0], 0, level);
    assertRel([lp[1]!, lp[2]!], [ref.logp[1]!, ref.logp[2]!], 1e-6, `${level} masked rows`);
    assertRel([en[1]!, en[2]!], [ref.ent[1]!, ref.ent[2]!], 1e-5, `${level} masked entropy`);
    // The gradient of an all -inf row is 0, the masked entries get 0.
    const d = gatherLogprobsBackwardSync(xt, tg, r.lse, Tensor.from(new Float32Array([1, 1, 1]))).toArray();
    for (let v = 0; v < V; v++) assert.is(Math.abs(d[v]!), 0, 'all -inf row');
    for (let v = 0; v < V; v += 3) assert.is(Math.abs(d[V + v]!), 0, 'masked entry');
    assert.ok(d.every((e) => !Number.isNaN(e)), 'no NaN');
  });
});

test('gatherLogprobsBackward matches float64 (T = 0.8), in place into the logits buffer too', () => {
  const N = 19, V = 1003, T = 0.8;
  const x = randomF32(N * V, 11, 2);
  const tg = targetsFor(N, V, 3);
  const g = randomF32(N, 12);
  const ref = refFromLogits(x, N, V, tg, T);
  const want = refGrad(x, N, V, tg, T, ref.lse, g);
  atLevels((level) => {
    using xt = Tensor.from(x, [N, V]);
    const r = gatherLogprobsSync(xt, tg, { temperature: T });
    using gt = Tensor.from(g);
    using d = gatherLogprobsBackwardSync(xt, tg, r.lse, gt, { temperature: T });
    assertRel(d.data, want, 1e-5, `${level} dLogits`);
    const same = gatherLogprobsBackwardSync(xt, tg, r.lse, gt, { temperature: T, out: xt });
    assert.is(same, xt, 'out is returned');
    assertRel(xt.data, want, 1e-5, `${level} in place`);
  });
});

test('finite differences of gatherLogprobs agree with its backward', () => {
  const N = 3, V = 9, T = 1.5;
  const x = randomF32(N * V, 21);
  const tg = new Int32Array([0, 4, 8]);
  const g = new Float32Array([0.7, -1.1, 0.4]);
  using xt = Tensor.from(x, [N, V]);
  const r = gatherLogprobsSync(xt, tg, { temperature: T });
  const d = gatherLogprobsBackwardSync(xt, tg, r.lse, Tensor.from(g), { temperature: T }).toArray();
  const f = (xx: Float32Array) => { const o = gatherLogprobsSync(Tensor.from(xx, [N, V]), tg, { temperature: T }).logprobs.toArray(); return o.reduce((s, v, i) => s + v * g[i]!, 0); };
  const fd = new Float64Array(N * V);
  const h = 1e-2;
  for (let i = 0; i < N * V; i++) {
    const p = x.slice(), m = x.slice();
    p[i] += h; m[i] -= h;
    fd[i] = (f(p) - f(m)) / (2 * h);
  }
  assertRel(d, fd, 1e-3, 'finite differences');
});

function fusedCase(N: number, H: number, V: number, seed: number, withBias: boolean) {
  const h = randomF32(N * H, seed, 1);
  const w = randomF32(V * H, seed + 1, 0.3);
  const b = withBias ? randomF32(V, seed + 2) : null;
  const tg = targetsFor(N, V, seed + 3);
  return { h, w, b, tg };
}

test('linearLogprobs (fused LM head) matches float64: token blocks and vocabulary chunks with remainders, bias, T, entropy', () => {
  for (const [N, H, V, T, bias] of [[300, 40, 1000, 0.7, true], [1, 16, 5, 1, false], [5, 24, 50257, 1.2, false]] as const) {
    const c = fusedCase(N, H, V, N + V, bias);
    const z = refLogits(c.h, c.w, c.b, N, H, V);
    const ref = refFromLogits(z, N, V, c.tg, T);
    atLevels((level) => {
      using ht = Tensor.from(c.h, [N, H]);
      using wt = Tensor.from(c.w, [V, H]);
      using bt = c.b ? Tensor.from(c.b) : Tensor.zeros([V]);
      for (const tile of [undefined, { tokens: 128, vocab: 96 }]) {
        const r = linearLogprobsSync(ht, wt, c.tg, { temperature: T, entropy: true, tile, ...(bias ? { bias: bt } : {}) });
        const what = `${level} N${N} V${V} tile ${tile ? 'small' : 'default'}`;
        assertRel(r.logprobs.data, ref.logp, 1e-5, `${what} logprobs`);
        assertRel(r.lse.data, ref.lse, 1e-5, `${what} lse`);
        assertRel(r.entropy!.data, ref.ent, 1e-4, `${what} entropy`);
      }
    });
  }
});

test('linearLogprobs with bf16 and f16 weights matches float64 on the same rounded values', () => {
  const N = 70, H = 32, V = 777;
  const c = fusedCase(N, H, V, 5, false);
  for (const dt of ['bf16', 'f16'] as const) {
    using w32 = Tensor.from(c.w, [V, H]);
    using wh = w32.to(dt);
    const wr = wh.to('f32').toArray();  // the values the kernel sees
    const ref = refFromLogits(refLogits(c.h, wr, null, N, H, V), N, V, c.tg, 1);
    using ht = Tensor.from(c.h, [N, H]);
    const r = linearLogprobsSync(ht, wh, c.tg);
    assertRel(r.logprobs.data, ref.logp, 1e-5, `${dt} logprobs`);
    const g = randomF32(N, 8);
    const bw = linearLogprobsBackwardSync(ht, wh, c.tg, r.lse, Tensor.from(g));
    const want = fusedGradRef(c.h, wr, null, c.tg, g, N, H, V, 1);
    assertRel(bw.dHidden.data, want.dh, 1e-4, `${dt} dHidden`);
    assertRel(bw.dWeight.data, want.dw, 1e-4, `${dt} dWeight`);
  }
});

test("precision 'bf16' (the head's GEMMs with bf16 products) matches float64 on the bf16-rounded operands: f32, bf16 and f16 weights, forward and both backward forms", () => {
  const N = 70, H = 32, V = 777, T = 0.9;
  const c = fusedCase(N, H, V, 15, false);
  const g = randomF32(N, 16);
  const hr = bf16RoundAll(c.h);
  atLevels((level) => {
    using ht = Tensor.from(c.h, [N, H]);
    using gt = Tensor.from(g);
    for (const dt of ['f32', 'bf16', 'f16'] as const) {
      using w32 = Tensor.from(c.w, [V, H]);
      using wt = w32.to(dt);
      const wr = bf16RoundAll(wt.to('f32').toArray());  // what the products see
      const z = refLogits(hr, wr, null, N, H, V);
      const ref = refFromLogits(z, N, V, c.tg, T);
      // The backward's GEMMs round dZ too: dHidden = bf16(dZ) bf16(W), dWeight = bf16(dZ)^T bf16(h).
      const dz = refGrad(z, N, V, c.tg, T, ref.lse, g).map(bf16Round);
      const dh = new Float64Array(N * H), dw = new Float64Array(V * H);
      for (let r = 0; r < N; r++) for (let v = 0; v < V; v++) {
        const e = dz[r * V + v]!;
        for (let k = 0; k < H; k++) { dh[r * H + k] += e * wr[v * H + k]!; dw[v * H + k] += e * hr[r * H + k]!; }
      }
      const what = `${level} ${dt} weight`;
      for (const tile of [undefined, { tokens: 32, vocab: 100 }]) {
        const f = linearLogprobsSync(ht, wt, c.tg, { temperature: T, precision: 'bf16', tile });
        assertRel(f.logprobs.data, ref.logp, 1e-5, `${what} logprobs`);
        assertRel(f.lse.data, ref.lse, 1e-5, `${what} lse`);
        const b = linearLogprobsBackwardSync(ht, wt, c.tg, f.lse, gt, { temperature: T, precision: 'bf16', tile });
        assertRel(b.dHidden.data, dh, 1e-4, `${what} dHidden`);
        assertRel(b.dWeight!.data, dw, 1e-4, `${what} dWeight`);
        // The same through the one-call form (one pass for f32, the two calls otherwise).
        const o = linearLogprobsWithGradSync(ht, wt, c.tg, gt, { temperature: T, precision: 'bf16' });
        assertRel(o.logprobs.data, ref.logp, 1e-5, `${what} logprobs (with grad)`);
        assertRel(o.dHidden.data, dh, 1e-4, `${what} dHidden (with grad)`);
        assertRel(o.dWeight!.data, dw, 1e-4, `${what} dWeight (with grad)`);
        for (const t of [f.logprobs, f.lse, b.dHidden, b.dWeight!, o.logprobs, o.lse, o.dHidden, o.dWeight!]) t.dispose();
      }
      if (dt === 'f32') {
        // The rounding is real: against the f32 head the error is that of bf16 operands.
        const f = linearLogprobsSync(ht, wt, c.tg, { temperature: T, precision: 'bf16' });
        const e = relErr(f.logprobs.data, refFromLogits(refLogits(c.h, c.w, null, N, H, V), N, V, c.tg, T).logp);
        assert.ok(e > 1e-4 && e < 1e-2, `${level} bf16 against the f32 head: relative error ${e}`);
        f.logprobs.dispose(); f.lse.dispose();
      }
    }
    throwsLike(() => linearLogprobsSync(ht, ht, c.tg, { precision: 'f64' as 'bf16' }), RangeError, /one of 'f32', 'bf16' for precision but received 'f64'/);
  });
});

function fusedGradRef(h: Float32Array, w: ArrayLike<number>, b: ArrayLike<number> | null, tg: Int32Array, g: Float32Array, N: number, H: number, V: number, T: number) {
  const z = refLogits(h, w, b, N, H, V);
  const ref = refFromLogits(z, N, V, tg, T);
  const dz = refGrad(z, N, V, tg, T, ref.lse, g);
  const dh = new Float64Array(N * H), dw = new Float64Array(V * H), db = new Float64Array(V);
  for (let r = 0; r < N; r++) {
    for (let v = 0; v < V; v++) {
      const e = dz[r * V + v]!;
      db[v] += e;
      for (let k = 0; k < H; k++) { dh[r * H + k] += e * w[v * H + k]!; dw[v * H + k] += e * h[r * H + k]!; }
    }
  }
  return { dh, dw, db };
}

test('linearLogprobsBackward matches float64 (dHidden, dWeight, dBias), accumulates into a given dWeight', () => {
  const N = 300, H = 24, V = 600, T = 0.9;
  const c = fusedCase(N, H, V, 41, true);
  const g = randomF32(N, 42);
  const want = fusedGradRef(c.h, c.w, c.b, c.tg, g, N, H, V, T);
  atLevels((level) => {
    using ht = Tensor.from(c.h, [N, H]);
    using wt = Tensor.from(c.w, [V, H]);
    using bt = Tensor.from(c.b!);
    using gt = Tensor.from(g);
    const f = linearLogprobsSync(ht, wt, c.tg, { temperature: T, bias: bt });
    for (const tile of [undefined, { tokens: 128, vocab: 100 }]) {
      const r = linearLogprobsBackwardSync(ht, wt, c.tg, f.lse, gt, { temperature: T, bias: bt, tile });
      const what = `${level} tile ${tile ? 'small' : 'default'}`;
      assertRel(r.dHidden.data, want.dh, 1e-4, `${what} dHidden`);
      assertRel(r.dWeight.data, want.dw, 1e-4, `${what} dWeight`);
      assertRel(r.dBias!.data, want.db, 1e-4, `${what} dBias`);
    }
    // Accumulation: a given dWeight of ones gets the gradient added.
    using acc = Tensor.from(new Float32Array(V * H).fill(1), [V, H]);
    const r2 = linearLogprobsBackwardSync(ht, wt, c.tg, f.lse, gt, { temperature: T, bias: bt, dWeight: acc, tile: { tokens: 100, vocab: 64 } });
    assert.is(r2.dWeight, acc);
    assertRel(acc.data, want.dw.map((v) => v + 1), 1e-4, `${level} accumulated dWeight`);
    // accumulate: false writes over the given buffer (NaN here) instead of adding
    acc.data.fill(NaN);
    const r3 = linearLogprobsBackwardSync(ht, wt, c.tg, f.lse, gt, { temperature: T, bias: bt, dWeight: acc, accumulate: false, tile: { tokens: 100, vocab: 64 } });
    assert.is(r3.dWeight, acc);
    assertRel(acc.data, want.dw, 1e-4, `${level} overwritten dWeight`);
    assert.throws(() => linearLogprobsBackwardSync(ht, wt, c.tg, f.lse, gt, { dWeight: acc, accumulate: 'no' as unknown as boolean }), /boolean for options.accumulate but received 'no'/);
  });
});

test('linearLogprobsWithGrad (forward and backward in one pass) matches float64: in place in dWeight, tiles kept and recomputed, frozen head, accumulation', () => {
  // [N, H, V]: N <= H (the logits tiles live in dWeight's rows) and N > H (token blocks, a tile cache).
  for (const [N, H, V, T] of [[20, 24, 600, 0.9], [300, 24, 600, 1.1], [1, 8, 5, 1]] as const) {
    const c = fusedCase(N, H, V, 50 + N, false);
    const g = randomF32(N, 51 + N);
    const z = refLogits(c.h, c.w, null, N, H, V);
    const ref = refFromLogits(z, N, V, c.tg, T);
    const want = fusedGradRef(c.h, c.w, null, c.tg, g, N, H, V, T);
    atLevels((level) => {
      using ht = Tensor.from(c.h, [N, H]);
      using wt = Tensor.from(c.w, [V, H]);
      using gt = Tensor.from(g);
      // Default tiles; small tiles with a cache of 0, 2 and all tiles (recomputed, mixed, kept).
      const knobs = [{}, { _tokenBlock: 7, _vocabChunk: 64, _cacheBytes: 0 }, { _tokenBlock: 7, _vocabChunk: 64, _cacheBytes: 2 * 7 * 64 * 4 },
        { _tokenBlock: 1000, _vocabChunk: 50, _cacheBytes: 1 << 26 }];
      for (const k of knobs) {
        const what = `${level} N ${N} knobs ${JSON.stringify(k)}`;
        const r = linearLogprobsWithGradSync(ht, wt, c.tg, gt, { temperature: T, ...k } as object);
        assertRel(r.logprobs.data, ref.logp, 1e-5, `${what} logprobs`);
        assertRel(r.lse.data, ref.lse, 1e-5, `${what} lse`);
        assertRel(r.dHidden.data, want.dh, 1e-4, `${what} dHidden`);
        assertRel(r.dWeight!.data, want.dw, 1e-4, `${what} dWeight`);
        // Written over a given buffer (NaN: nothing of it may be read), then added to it.
        using acc = Tensor.from(new Float32Array(V * H).fill(NaN), [V, H]);
        const r2 = linearLogprobsWithGradSync(ht, wt, c.tg, gt, { temperature: T, dWeight: acc, accumulate: false, ...k } as object);
        assert.is(r2.dWeight, acc);
        assertRel(acc.data, want.dw, 1e-4, `${what} overwritten dWeight`);
        assertRel(r2.dHidden.data, want.dh, 1e-4, `${what} dHidden (dWeight given)`);
        const r3 = linearLogprobsWithGradSync(ht, wt, c.tg, gt, { temperature: T, dWeight: acc, ...k } as object);
        assertRel(acc.data, want.dw.map((v) => 2 * v), 1e-4, `${what} accumulated dWeight`);
        assertRel(r3.logprobs.data, ref.logp, 1e-5, `${what} logprobs (accumulating)`);
        // A frozen head: no weight gradient, the same dHidden.
        const r4 = linearLogprobsWithGradSync(ht, wt, c.tg, gt, { temperature: T, weightGrad: false, ...k } as object);
        assert.is(r4.dWeight, undefined);
        assertRel(r4.dHidden.data, want.dh, 1e-4, `${what} dHidden (frozen head)`);
        for (const t of [r.logprobs, r.lse, r.dHidden, r.dWeight!, r2.logprobs, r2.lse, r2.dHidden, r3.logprobs, r3.lse, r3.dHidden, r4.logprobs, r4.lse, r4.dHidden]) t.dispose();
      }
    });
  }
});

test('linearLogprobsWithGrad: the two-call form where one pass does not apply (bias, bf16 weight) gives the same; async; errors', async () => {
  const N = 30, H = 16, V = 200, T = 0.8;
  const c = fusedCase(N, H, V, 61, true);
  const g = randomF32(N, 62);
  const want = fusedGradRef(c.h, c.w, c.b, c.tg, g, N, H, V, T);
  using ht = Tensor.from(c.h, [N, H]);
  using wt = Tensor.from(c.w, [V, H]);
  using bt = Tensor.from(c.b!);
  using gt = Tensor.from(g);
  const r = linearLogprobsWithGradSync(ht, wt, c.tg, gt, { temperature: T, bias: bt });
  assertRel(r.dHidden.data, want.dh, 1e-4, 'bias: dHidden');
  assertRel(r.dWeight!.data, want.dw, 1e-4, 'bias: dWeight');
  assertRel(r.dBias!.data, want.db, 1e-4, 'bias: dBias');
  // bf16 weight: the same as the two calls on it.
  using wb = wt.to('bf16');
  const f = linearLogprobsSync(ht, wb, c.tg, { temperature: T });
  const b = linearLogprobsBackwardSync(ht, wb, c.tg, f.lse, gt, { temperature: T });
  const rb = linearLogprobsWithGradSync(ht, wb, c.tg, gt, { temperature: T });
  assert.equal(rb.logprobs.toArray(), f.logprobs.toArray());
  assert.equal(rb.dHidden.toArray(), b.dHidden.toArray());
  // async: equal to sync, inputs may be disposed while it runs.
  const c2 = fusedCase(N, H, V, 63, false);
  const h2 = Tensor.from(c2.h, [N, H]), w2 = Tensor.from(c2.w, [V, H]), g2 = Tensor.from(g);
  const s = linearLogprobsWithGradSync(h2, w2, c2.tg, g2);
  const p = linearLogprobsWithGrad(h2, w2, c2.tg, g2);
  h2.dispose(); w2.dispose(); g2.dispose();
  const a = await p;
  assert.equal(a.logprobs.toArray(), s.logprobs.toArray());
  assert.equal(a.dHidden.toArray(), s.dHidden.toArray());
  assert.equal(a.dWeight!.toArray(), s.dWeight!.toArray());
  // Errors name the argument; a dWeight that is the weight itself is refused (it is written while read).
  throwsLike(() => linearLogprobsWithGradSync(ht, wt, c.tg, Tensor.from(new Float32Array(N - 1))), RangeError, /dLogprobs/);
  throwsLike(() => linearLogprobsWithGradSync(ht, wt, c.tg, gt, { dWeight: wt }), RangeError, /dWeight/);
  throwsLike(() => linearLogprobsWithGradSync(ht, wt, c.tg, gt, { dWeight: Tensor.zeros([V, H + 1]) }), RangeError, /dWeight of shape \[200, 16\]/);
  throwsLike(() => linearLogprobsWithGradSync(ht, wt, new Int32Array(N).fill(V), gt), RangeError, /targets/);
  await rejectsLike(linearLogprobsWithGrad(ht, wt, c.tg, gt, { weightGrad: false, dWeight: Tensor.zeros([V, H]) }), TypeError, /weightGrad/);
});

test('finite differences of linearLogprobs agree with its backward (hidden and weight)', () => {
  const N = 3, H = 4, V = 7, T = 1.3;
  const c = fusedCase(N, H, V, 77, false);
  const g = new Float32Array([1, -0.5, 0.8]);
  const f = (hh: Float32Array, ww: Float32Array) => {
    const o = linearLogprobsSync(Tensor.from(hh, [N, H]), Tensor.from(ww, [V, H]), c.tg, { temperature: T }).logprobs.toArray();
    return o.reduce((s, v, i) => s + v * g[i]!, 0);
  };
  const fwd = linearLogprobsSync(Tensor.from(c.h, [N, H]), Tensor.from(c.w, [V, H]), c.tg, { temperature: T });
  const bw = linearLogprobsBackwardSync(Tensor.from(c.h, [N, H]), Tensor.from(c.w, [V, H]), c.tg, fwd.lse, Tensor.from(g), { temperature: T });
  const e = 1e-2;
  const fdH = Array.from({ length: N * H }, (_, i) => { const p = c.h.slice(), m = c.h.slice(); p[i] += e; m[i] -= e; return (f(p, c.w) - f(m, c.w)) / (2 * e); });
  const fdW = Array.from({ length: V * H }, (_, i) => { const p = c.w.slice(), m = c.w.slice(); p[i] += e; m[i] -= e; return (f(c.h, p) - f(c.h, m)) / (2 * e); });
  assertRel(bw.dHidden.data, fdH, 2e-3, 'dHidden vs finite differences');
  assertRel(bw.dWeight.data, fdW, 2e-3, 'dWeight vs finite differences');
});

test('the fused forward and backward never hold the logits: peak extra memory is small whatever N', () => {
  const N = 2048, H = 32, V = 20000;  // the logits would be 164 MB
  const c = fusedCase(N, H, V, 99, false);
  using ht = Tensor.from(c.h, [N, H]);
  using wt = Tensor.from(c.w, [V, H]);
  resetPeakMemory();
  const base = memoryStats().liveBytes;
  const f = linearLogprobsSync(ht, wt, c.tg);
  const bw = linearLogprobsBackwardSync(ht, wt, c.tg, f.lse, Tensor.from(new Float32Array(N).fill(1)));
  const outputs = (N * H + V * H + 4 * N) * 4;
  const extra = memoryStats().peakBytes - base - outputs;
  assert.ok(extra < 16 * 2 ** 20, `extra ${(extra / 2 ** 20).toFixed(1)} MiB`);
  assert.ok(Number.isFinite(bw.dHidden.toArray()[0]!));
});

test('async forms equal the sync forms and keep inputs alive when disposed early', async () => {
  const N = 40, H = 16, V = 300;
  const c = fusedCase(N, H, V, 3, false);
  const ht = Tensor.from(c.h, [N, H]), wt = Tensor.from(c.w, [V, H]);
  const want = linearLogprobsSync(ht, wt, c.tg).logprobs.toArray();
  const p = linearLogprobs(ht, wt, c.tg);
  ht.dispose(); wt.dispose();
  assert.equal((await p).logprobs.toArray(), want);
  using ht2 = Tensor.from(c.h, [N, H]);
  using wt2 = Tensor.from(c.w, [V, H]);
  const f = await linearLogprobs(ht2, wt2, Tensor.from(c.tg));
  const b1 = linearLogprobsBackwardSync(ht2, wt2, c.tg, f.lse, f.logprobs);
  const b2 = await linearLogprobsBackward(ht2, wt2, c.tg, f.lse, f.logprobs);
  assert.equal(b2.dHidden.toArray(), b1.dHidden.toArray());
  using x = Tensor.from(c.h, [N, H]);
  assert.equal((await gatherLogprobs(x, new Int32Array(N))).logprobs.toArray(), gatherLogprobsSync(x, new Int32Array(N)).logprobs.toArray());
});

test('bad input: target out of range names its index; dtype, shape, temperature, lse errors', async () => {
  using x = Tensor.from(randomF32(12, 1), [3, 4]);
  throwsLike(() => gatherLogprobsSync(x, new Int32Array([0, 4, 1])), RangeError, /targets\[1\] = 4/);
  throwsLike(() => gatherLogprobsSync(x, new Int32Array([0, -1, 1])), RangeError, /targets\[1\] = -1/);
  await rejectsLike(gatherLogprobs(x, new Int32Array([0, 1, 9])), RangeError, /targets\[2\] = 9/);
  throwsLike(() => gatherLogprobsSync(x, new Int32Array([0, 1])), RangeError, /3 elements for targets/);
  throwsLike(() => gatherLogprobsSync(x, new Float32Array([0, 1, 2]) as never), TypeError, /targets/);
  throwsLike(() => gatherLogprobsSync(x, new Int32Array(3), { temperature: 0 }), RangeError, /temperature/);
  throwsLike(() => gatherLogprobsSync(x.to('f16'), new Int32Array(3)), TypeError, /dtype f32 for logits/);
  throwsLike(() => gatherLogprobsSync(x.transpose(), new Int32Array(4)), TypeError, /contiguous/);
  throwsLike(() => gatherLogprobsBackwardSync(x, new Int32Array(3), Tensor.zeros([2]), Tensor.zeros([3])), RangeError, /3 elements for lse/);
  using h = Tensor.zeros([3, 5]);
  using w = Tensor.zeros([7, 4]);
  throwsLike(() => linearLogprobsSync(h, w, new Int32Array(3)), RangeError, /weight of shape \[V, 5\]/);
  using w2 = Tensor.zeros([7, 5]);
  throwsLike(() => linearLogprobsSync(h, w2, new Int32Array([0, 7, 0])), RangeError, /targets\[1\] = 7/);
  throwsLike(() => linearLogprobsSync(h, w2.to('i32'), new Int32Array(3)), TypeError, /weight/);
  throwsLike(() => linearLogprobsBackwardSync(h, w2, new Int32Array(3), Tensor.zeros([3]), Tensor.zeros([3]), { dWeight: Tensor.zeros([7, 4]) }), RangeError, /dWeight of shape \[7, 5\]/);
});

const gpu = backend().cuda.devices.length > 0;
(gpu ? test : test.skip)('CUDA: gather and the fused LM head equal the CPU results (runs where a GPU exists)', () => {
  const N = 70, H = 32, V = 5000;
  const c = fusedCase(N, H, V, 123, true);
  using ht = Tensor.from(c.h, [N, H]);
  using wt = Tensor.from(c.w, [V, H]);
  using bt = Tensor.from(c.b!);
  const cpu = linearLogprobsSync(ht, wt, c.tg, { bias: bt, entropy: true });
  using hg = ht.to('cuda'), wg = wt.to('cuda'), bg = bt.to('cuda');
  const g = linearLogprobsSync(hg, wg, c.tg, { bias: bg, entropy: true });
  assertRel(g.logprobs.to('cpu').data, cpu.logprobs.data, 1e-5, 'cuda fused logprobs');
  const gb = linearLogprobsBackwardSync(hg, wg, c.tg, g.lse, g.logprobs, { bias: bg });
  const cb = linearLogprobsBackwardSync(ht, wt, c.tg, cpu.lse, cpu.logprobs, { bias: bt });
  assertRel(gb.dHidden.to('cpu').data, cb.dHidden.data, 1e-4, 'cuda dHidden');
  assertRel(gb.dWeight.to('cpu').data, cb.dWeight.data, 1e-4, 'cuda dWeight');
  using lg = Tensor.from(randomF32(N * V, 5), [N, V]);
  using lgg = lg.to('cuda');
  const a = gatherLogprobsSync(lg, c.tg), b = gatherLogprobsSync(lgg, c.tg);
  assertRel(b.logprobs.to('cpu').data, a.logprobs.data, 1e-6, 'cuda gather');
});

test.run();
