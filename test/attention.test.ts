// Fused attention against a float64 materialised-softmax reference: odd lengths, several segments
// (one empty), grouped-query heads, causal with Lq < Lk, head sizes 16..128, forward and backward,
// finite differences, every SIMD level, errors.
import { test } from 'uvu';
import * as assert from 'uvu/assert';

import { backend, setSimdLevel } from '../src/backend.js';
import { attention, attentionBackward, attentionBackwardSync, attentionSync } from '../src/kernels/attention.js';
import { Tensor } from '../src/tensor.js';
import { assertRel, randomF32, throwsLike } from './helpers.js';

interface Case { cuQ: number[]; cuK: number[]; Hq: number; Hkv: number; D: number; causal: boolean; scale?: number }

function reference(c: Case, q: Float32Array, k: Float32Array, v: Float32Array, dOut: Float32Array) {
  const { Hq, Hkv, D } = c;
  const Tq = c.cuQ[c.cuQ.length - 1]!, Tk = c.cuK[c.cuK.length - 1]!;
  const scale = c.scale ?? 1 / Math.sqrt(D);
  const out = new Float64Array(Tq * Hq * D), lse = new Float64Array(Tq * Hq);
  const dq = new Float64Array(Tq * Hq * D), dk = new Float64Array(Tk * Hkv * D), dv = new Float64Array(Tk * Hkv * D);
  for (let b = 0; b + 1 < c.cuQ.length; b++) {
    const q0 = c.cuQ[b]!, Lq = c.cuQ[b + 1]! - q0, k0 = c.cuK[b]!, Lk = c.cuK[b + 1]! - k0;
    for (let h = 0; h < Hq; h++) {
      const g = Math.floor(h / (Hq / Hkv));
      for (let i = 0; i < Lq; i++) {
        const lim = c.causal ? Math.max(0, Math.min(Lk, i + Lk - Lq + 1)) : Lk;
        const qi = ((q0 + i) * Hq + h) * D;
        if (lim === 0) { lse[(q0 + i) * Hq + h] = -Infinity; continue; }
        const s = new Float64Array(lim);
        let m = -Infinity;
        for (let j = 0; j < lim; j++) {
          const kj = ((k0 + j) * Hkv + g) * D;
          let d = 0; for (let t = 0; t < D; t++) d += q[qi + t]! * k[kj + t]!;
          s[j] = d * scale; m = Math.max(m, s[j]!);
        }
        let l = 0; for (let j = 0; j < lim; j++) { s[j] = Math.exp(s[j]! - m); l += s[j]!; }
        lse[(q0 + i) * Hq + h] = m + Math.log(l);
        const dp = new Float64Array(lim);
        let dsum = 0;
        for (let j = 0; j < lim; j++) {
          const p = s[j]! / l, vj = ((k0 + j) * Hkv + g) * D;
          let d = 0;
          for (let t = 0; t < D; t++) { out[qi + t] += p * v[vj + t]!; dv[vj + t] += p * dOut[qi + t]!; d += dOut[qi + t]! * v[vj + t]!; }
          dp[j] = d; dsum += p * d;
        }
        for (let j = 0; j < lim; j++) {
          const ds = (s[j]! / l) * (dp[j]! - dsum), kj = ((k0 + j) * Hkv + g) * D;
          for (let t = 0; t < D; t++) { dq[qi + t] += scale * ds * k[kj + t]!; dk[kj + t] += scale * ds * q[qi + t]!; }
        }
      }
    }
  }
  return { out, lse, dq, dk, dv };
}

/**
 * Relative error against the scale of all three gradients of the call: a gradient that is
 * exactly 0 in float64 (one visible key: p = 1) comes out at rounding level, not exactly 0.
 */
function assertClose(got: ArrayLike<number>, want: ArrayLike<number>, tol: number, what: string, scale: number): void {
  let num = 0, den = scale;
  for (let i = 0; i < want.length; i++) { num = Math.max(num, Math.abs(got[i]! - want[i]!)); den = Math.max(den, Math.abs(want[i]!)); }
  assert.ok(got.length === want.length && num / den < tol, `${what}: relative error ${(num / den).toExponential(3)} >= ${tol}`);
}

const LEVELS = (['scalar', 'avx2', 'avx512'] as const).filter((l) => l === 'scalar' || (l === 'avx2' ? backend().simd.avx2 : backend().simd.avx512f));

function check(c: Case, what: string, levels: readonly string[] = LEVELS, seed = 1): void {
  const Tq = c.cuQ[c.cuQ.length - 1]!, Tk = c.cuK[c.cuK.length - 1]!;
  const q = randomF32(Tq * c.Hq * c.D, seed, 1), k = randomF32(Tk * c.Hkv * c.D, seed + 1, 1);
  const v = randomF32(Tk * c.Hkv * c.D, seed + 2), dO = randomF32(Tq * c.Hq * c.D, seed + 3);
  const ref = reference(c, q, k, v, dO);
  const gscale = Math.max(1e-30, ...[ref.dq, ref.dk, ref.dv].map((a) => a.reduce((m, x) => Math.max(m, Math.abs(x)), 0)));
  const was = backend().kernels;
  try {
    for (const level of levels) {
      setSimdLevel(level as 'scalar');
      using tq = Tensor.from(q, [Tq, c.Hq, c.D]);
      using tk = Tensor.from(k, [Tk, c.Hkv, c.D]);
      using tv = Tensor.from(v, [Tk, c.Hkv, c.D]);
      using td = Tensor.from(dO, [Tq, c.Hq, c.D]);
      const opts = { cuSeqlensQ: new Int32Array(c.cuQ), cuSeqlensK: new Int32Array(c.cuK), causal: c.causal, ...(c.scale ? { scale: c.scale } : {}) };
      const r = attentionSync(tq, tk, tv, opts);
      assertRel(r.out.data, ref.out, 1e-5, `${what} ${level} out`);
      const lse = r.lse.toArray();
      for (let i = 0; i < lse.length; i++) if (ref.lse[i] === -Infinity) assert.is(lse[i], -Infinity, `${what} lse[${i}] of a query without keys`);
      assertRel(lse.map((x, i) => (ref.lse[i] === -Infinity ? 0 : x)), ref.lse.map((x) => (x === -Infinity ? 0 : x)), 1e-5, `${what} ${level} lse`);
      const g = attentionBackwardSync(tq, tk, tv, r.out, r.lse, td, opts);
      assertClose(g.dq.data, ref.dq, 1e-4, `${what} ${level} dq`, gscale);
      assertClose(g.dk.data, ref.dk, 1e-4, `${what} ${level} dk`, gscale);
      assertClose(g.dv.data, ref.dv, 1e-4, `${what} ${level} dv`, gscale);
      for (const t of [r.out, r.lse, g.dq, g.dk, g.dv]) t.dispose();
    }
  } finally { setSimdLevel(was); }
}

test('odd single-segment lengths 1, 7, 63, 65, 129 (D 64) and 1000 (D 16), bidirectional and causal', () => {
  for (const L of [1, 7, 63, 65, 129]) for (const causal of [false, true]) check({ cuQ: [0, L], cuK: [0, L], Hq: 2, Hkv: 2, D: 64, causal }, `L${L} causal ${causal}`);
  // the long case at the best level this CPU has (it checked nothing on CPUs without AVX-512)
  check({ cuQ: [0, 1000], cuK: [0, 1000], Hq: 1, Hkv: 1, D: 16, causal: true }, 'L1000', [LEVELS[LEVELS.length - 1]!]);
});

test('keys beyond one packed chunk (1024): online softmax state carried across chunks', () => {
  const top = LEVELS[LEVELS.length - 1]!;
  check({ cuQ: [0, 1100], cuK: [0, 1100], Hq: 1, Hkv: 1, D: 16, causal: false }, 'L1100', [top, 'scalar']);
  check({ cuQ: [0, 70], cuK: [0, 2100], Hq: 2, Hkv: 1, D: 16, causal: true }, 'Lq 70, Lk 2100 causal', [top]);
});

test('head sizes 16, 64, 72, 80, 128 with grouped-query heads (Hq 4, Hkv 2 and 1)', () => {
  for (const D of [16, 64, 72, 80, 128]) check({ cuQ: [0, 70], cuK: [0, 70], Hq: 4, Hkv: D === 80 ? 1 : 2, D, causal: D % 2 === 0 }, `D${D}`);
});

test('several segments of unequal length with an empty one (windows), and causal with Lq < Lk (a KV cache)', () => {
  check({ cuQ: [0, 64, 64, 100, 229], cuK: [0, 64, 64, 100, 229], Hq: 3, Hkv: 3, D: 80, causal: false }, 'windows');
  check({ cuQ: [0, 5, 6, 6, 70], cuK: [0, 40, 141, 150, 220], Hq: 4, Hkv: 2, D: 72, causal: true }, 'decode Lq < Lk');
  check({ cuQ: [0, 9], cuK: [0, 0], Hq: 2, Hkv: 1, D: 16, causal: false }, 'no keys at all');
  check({ cuQ: [0, 30], cuK: [0, 20], Hq: 2, Hkv: 1, D: 16, causal: true, scale: 0.3 }, 'Lq > Lk causal: early queries see nothing');
});

test('finite differences of a tiny case agree with the backward', () => {
  const Tq = 3, Tk = 4, H = 2, D = 5;
  const q = randomF32(Tq * H * D, 7), k = randomF32(Tk * H * D, 8), v = randomF32(Tk * H * D, 9), w = randomF32(Tq * H * D, 10);
  const opts = { causal: true };
  const f = (qq: Float32Array, kk: Float32Array, vv: Float32Array) => {
    const o = attentionSync(Tensor.from(qq, [Tq, H, D]), Tensor.from(kk, [Tk, H, D]), Tensor.from(vv, [Tk, H, D]), opts).out.toArray();
    return o.reduce((s, x, i) => s + x * w[i]!, 0);
  };
  const tq = Tensor.from(q, [Tq, H, D]), tk = Tensor.from(k, [Tk, H, D]), tv = Tensor.from(v, [Tk, H, D]);
  const r = attentionSync(tq, tk, tv, opts);
  const g = attentionBackwardSync(tq, tk, tv, r.out, r.lse, Tensor.from(w, [Tq, H, D]), opts);
  const e = 1e-2;
  const fd = (x: Float32Array, which: number) => Array.from({ length: x.length }, (_, i) => {
    const p = x.slice(), m = x.slice(); p[i] += e; m[i] -= e;
    const args = (y: Float32Array) => (which === 0 ? f(y, k, v) : which === 1 ? f(q, y, v) : f(q, k, y));
    return (args(p) - args(m)) / (2 * e);
  });
  assertRel(g.dq.data, fd(q, 0), 2e-3, 'dq vs finite differences');
  assertRel(g.dk.data, fd(k, 1), 2e-3, 'dk vs finite differences');
  assertRel(g.dv.data, fd(v, 2), 2e-3, 'dv vs finite differences');
});

test('f16 and bf16 inputs are computed in f32; async forms equal the sync forms', async () => {
  const L = 50, H = 2, D = 32;
  using q = Tensor.from(randomF32(L * H * D, 1), [L, H, D]);
  using k = Tensor.from(randomF32(L * H * D, 2), [L, H, D]);
  using v = Tensor.from(randomF32(L * H * D, 3), [L, H, D]);
  for (const dt of ['f16', 'bf16'] as const) {
    using qh = q.to(dt), kh = k.to(dt), vh = v.to(dt);
    const a = attentionSync(qh, kh, vh), b = attentionSync(qh.to('f32'), kh.to('f32'), vh.to('f32'));
    assert.equal(a.out.toArray(), b.out.toArray(), dt);
  }
  const s = attentionSync(q, k, v, { causal: true });
  const p = await attention(q, k, v, { causal: true });
  assert.equal(p.out.toArray(), s.out.toArray());
  const gs = attentionBackwardSync(q, k, v, s.out, s.lse, s.out, { causal: true });
  const gp = await attentionBackward(q, k, v, s.out, s.lse, s.out, { causal: true });
  assert.equal(gp.dk.toArray(), gs.dk.toArray());
});

test('bad shapes and inconsistent cuSeqlens are RangeErrors; wrong types are TypeErrors', () => {
  using q = Tensor.zeros([10, 4, 16]);
  using k = Tensor.zeros([12, 3, 16]);
  using k2 = Tensor.zeros([12, 2, 16]);
  using k8 = Tensor.zeros([12, 2, 8]);
  throwsLike(() => attentionSync(q, k, k), RangeError, /multiple of the key\/value heads/);
  throwsLike(() => attentionSync(q, k8, k8), RangeError, /head size D = 16/);
  throwsLike(() => attentionSync(q, k2, k), RangeError, /v of the shape of k/);
  throwsLike(() => attentionSync(q, k2, k2, { cuSeqlensQ: new Int32Array([0, 4, 10]), cuSeqlensK: new Int32Array([0, 12]) }), RangeError, /one length/);
  throwsLike(() => attentionSync(q, k2, k2, { cuSeqlensQ: new Int32Array([0, 4, 9]), cuSeqlensK: new Int32Array([0, 6, 12]) }), RangeError, /cuSeqlensQ\[2\] = 10/);
  throwsLike(() => attentionSync(q, k2, k2, { cuSeqlensQ: new Int32Array([0, 6, 4, 10]), cuSeqlensK: new Int32Array([0, 6, 6, 12]) }), RangeError, /non-decreasing cuSeqlensQ/);
  throwsLike(() => attentionSync(q, k2, k2, { cuSeqlensQ: new Int32Array([1, 10]), cuSeqlensK: new Int32Array([0, 12]) }), RangeError, /cuSeqlensQ\[0\] = 0/);
  throwsLike(() => attentionSync(q, k2, k2, { cuSeqlensQ: [0, 10] as never }), TypeError, /cuSeqlensQ/);
  throwsLike(() => attentionSync(q.to('i32') as Tensor, k2, k2), TypeError, /dtype/);
  throwsLike(() => attentionSync(Tensor.zeros([10, 64]), k2, k2), RangeError, /3 dimensions .* for q/);
  const r = attentionSync(q, k2, k2);
  throwsLike(() => attentionBackwardSync(q, k2, k2, r.out, Tensor.zeros([10, 3]), r.out), RangeError, /lse of shape \[10, 4\]/);
  throwsLike(() => attentionBackwardSync(q, k2, k2, r.out, r.lse, Tensor.zeros([10, 4, 8])), RangeError, /head size|dOut/);
});

const gpu = backend().cuda.devices.length > 0;
(gpu ? test : test.skip)('CUDA forward and backward equal the CPU (runs where a GPU exists)', () => {
  const c = { cuQ: new Int32Array([0, 30, 100]), cuK: new Int32Array([0, 45, 160]) };
  using q = Tensor.from(randomF32(100 * 4 * 64, 1), [100, 4, 64]);
  using k = Tensor.from(randomF32(160 * 2 * 64, 2), [160, 2, 64]);
  using v = Tensor.from(randomF32(160 * 2 * 64, 3), [160, 2, 64]);
  const opts = { cuSeqlensQ: c.cuQ, cuSeqlensK: c.cuK, causal: true };
  const cpu = attentionSync(q, k, v, opts);
  using qg = q.to('cuda'), kg = k.to('cuda'), vg = v.to('cuda');
  const g = attentionSync(qg, kg, vg, opts);
  assertRel(g.out.to('cpu').data, cpu.out.data, 1e-5, 'cuda out');
  const gc = attentionBackwardSync(q, k, v, cpu.out, cpu.lse, cpu.out, opts);
  const gg = attentionBackwardSync(qg, kg, vg, g.out, g.lse, g.out, opts);
  assertRel(gg.dq.to('cpu').data, gc.dq.data, 1e-4, 'cuda dq');
  assertRel(gg.dk.to('cpu').data, gc.dk.data, 1e-4, 'cuda dk');
});

test.run();
