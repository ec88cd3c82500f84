// Qwen2.5-VL operators against float64 references written here, at every SIMD level the CPU has
// (scalar, AVX2, AVX-512), with row counts on both sides of the GEMV/GEMM switch and lengths
// that leave vector tails; and their argument errors.
import { test } from 'uvu';
import * as assert from 'uvu/assert';

import { backend, setSimdLevel, type SimdLevel } from '../src/backend.js';
import {
  embeddingSync, gelu, geluSync, linear, linearSync, rmsNormSync, ropeSync, swigluSync, attentionJob,
} from '../src/model/qwen_ops.js';
import { Tensor } from '../src/tensor.js';
import { assertRel, randomF32, rejectsLike, throwsLike } from './helpers.js';

const f32 = (t: Tensor) => t.data as Float32Array;
const LEVELS: SimdLevel[] = (['scalar', 'avx2', 'avx512'] as SimdLevel[]).filter((l) => {
  const prev = setSimdLevel(l); const got = setSimdLevel(prev); return got === l;
});
/** The values a weight of this dtype really holds (what the kernels must multiply by). */
function stored(w: Float32Array, dt: 'f32' | 'bf16' | 'f16'): { t: Tensor; vals: Float32Array } {
  const t = Tensor.from(w, [w.length], dt);
  const back = t.to('f32');
  const vals = f32(back).slice();
  back.dispose();
  return { t, vals };
}

test('linear: bf16/f16/f32 weights, GEMV and GEMM paths, tails, bias, every SIMD level', () => {
  for (const level of LEVELS) {
    const prev = setSimdLevel(level);
    for (const dt of ['bf16', 'f16', 'f32'] as const) {
      for (const [T, K, N] of [[1, 37, 5], [3, 130, 33], [4, 64, 17], [5, 96, 40], [8, 50, 21], [9, 45, 70], [33, 200, 130]] as const) {
        const x = randomF32(T * K, T * 7 + K), wv = randomF32(N * K, N + K, 0.5), bv = randomF32(N, 3 * N, 0.5);
        const w = stored(wv, dt), b = stored(bv, dt);
        const xt = Tensor.from(x, [T, K]);
        const y = linearSync(xt, w.t.reshape([N, K]), b.t);
        const want = new Float64Array(T * N);
        for (let t = 0; t < T; t++) for (let n = 0; n < N; n++) {
          let s = b.vals[n]!;
          for (let k = 0; k < K; k++) s += x[t * K + k]! * w.vals[n * K + k]!;
          want[t * N + n] = s;
        }
        assertRel(f32(y), want, 2e-6 * Math.sqrt(K), `linear ${level} ${dt} T${T} K${K} N${N}`);
        for (const t of [y, xt, w.t, b.t]) t.dispose();
      }
    }
    setSimdLevel(prev);
  }
});

test('linear: the Promise form equals the Sync form; errors name the argument', async () => {
  const x = Tensor.from(randomF32(6 * 20, 1), [6, 20]), w = Tensor.from(randomF32(7 * 20, 2), [7, 20], 'bf16');
  const a = await linear(x, w), b = linearSync(x, w);
  assert.equal(Array.from(f32(a)), Array.from(f32(b)));
  throwsLike(() => linearSync(x, Tensor.zeros([7, 21], 'bf16')), RangeError, /weight of shape \[N, 20\]/);
  throwsLike(() => linearSync(x, Tensor.zeros([7, 20], 'i32')), TypeError, /dtype f32 or bf16 or f16 for weight but received i32/);
  throwsLike(() => linearSync(x, w, Tensor.zeros([6])), RangeError, /bias of shape \[7\]/);
  await rejectsLike(linear(Tensor.zeros([3]), w), RangeError, /2 dimensions \[T, K\] for x/);
});

test('rmsNorm, swiglu, gelu, embedding vs float64', () => {
  for (const level of LEVELS) {
    const prev = setSimdLevel(level);
    const T = 5, C = 37;
    const x = randomF32(T * C, 11), wv = randomF32(C, 12);
    const w = stored(wv, 'bf16');
    const y = rmsNormSync(Tensor.from(x, [T, C]), w.t, 1e-6);
    const want = new Float64Array(T * C);
    for (let t = 0; t < T; t++) {
      let ss = 0;
      for (let c = 0; c < C; c++) ss += x[t * C + c]! ** 2;
      const r = 1 / Math.sqrt(ss / C + 1e-6);
      for (let c = 0; c < C; c++) want[t * C + c] = x[t * C + c]! * r * w.vals[c]!;
    }
    assertRel(f32(y), want, 1e-6, `rmsNorm ${level}`);
    const g = randomF32(T * C, 13, 3), u = randomF32(T * C, 14);
    const s = swigluSync(Tensor.from(g, [T, C]), Tensor.from(u, [T, C]));
    assertRel(f32(s), Array.from(g, (v, i) => (v / (1 + Math.exp(-v))) * u[i]!), 1e-6, `swiglu ${level}`);
    const erf = (z: number) => { // Maclaurin series: exact to ~1e-12 in double for |z| < 3.5
      let sum = 0, term = z; for (let n = 0; n < 200; n++) { sum += term / (2 * n + 1); term *= -z * z / (n + 1); } return (2 / Math.sqrt(Math.PI)) * sum;
    };
    const gx = randomF32(T * C, 16, 1.5);
    const ge = geluSync(Tensor.from(gx, [T, C]));
    assertRel(f32(ge), Array.from(gx, (v) => 0.5 * v * (1 + erf(v / Math.SQRT2))), 1e-6, `gelu ${level}`);
    const V = 11, tab = stored(randomF32(V * C, 15), 'f16');
    const ids = Int32Array.from([3, 0, 10, 3]);
    const e = embeddingSync(Tensor.from(ids), tab.t.reshape([V, C]));
    const we = new Float64Array(ids.length * C);
    ids.forEach((id, i) => { for (let c = 0; c < C; c++) we[i * C + c] = tab.vals[id * C + c]!; });
    assertRel(f32(e), we, 1e-7, `embedding ${level}`);
    throwsLike(() => embeddingSync(Tensor.from(Int32Array.from([11])), tab.t.reshape([V, C])), RangeError, /token ids in \[0, 11\) for ids but received 11 at index 0/);
    setSimdLevel(prev);
  }
});

test('gelu Promise form', async () => {
  const g = Tensor.from(randomF32(40, 3));
  assert.equal(Array.from(f32(await gelu(g))), Array.from(f32(geluSync(g))));
});

test('rope: M-RoPE sections and 2-D vision rotary vs float64', () => {
  const T = 6, H = 3, D = 12;
  const x = randomF32(T * H * D, 21);
  const secs = [2, 3, 1];
  const pos = Int32Array.from({ length: 3 * T }, (_, i) => (i * 7919) % 1000);
  const inv = Float32Array.from({ length: D / 2 }, (_, j) => 1 / Math.pow(1e6, (2 * j) / D));
  const xt = Tensor.from(x, [T, H, D]);
  ropeSync(xt, Tensor.from(pos, [3, T]), Tensor.from(inv), Tensor.from(Int32Array.from(secs)));
  const want = new Float64Array(x.length);
  const stream = secs.flatMap((n, s) => new Array<number>(n).fill(s));
  for (let t = 0; t < T; t++) for (let h = 0; h < H; h++) for (let j = 0; j < D / 2; j++) {
    const a = pos[stream[j]! * T + t]! * inv[j]!;
    const i0 = (t * H + h) * D + j, i1 = i0 + D / 2;
    want[i0] = x[i0]! * Math.cos(a) - x[i1]! * Math.sin(a);
    want[i1] = x[i1]! * Math.cos(a) + x[i0]! * Math.sin(a);
  }
  assertRel(f32(xt), want, 2e-6, 'rope');
  throwsLike(() => ropeSync(xt, Tensor.from(pos, [3, T]), Tensor.from(inv), Tensor.from(Int32Array.from([2, 3, 2]))), RangeError, /sections summing to 6/);
  throwsLike(() => ropeSync(xt, Tensor.from(pos.subarray(0, 2 * T), [2, T]), Tensor.from(inv), Tensor.from(Int32Array.from([2, 3, 1]))), RangeError, /sections of shape \[2\]/);
});

test('attention: varlen, GQA, causal (bottom-right) and full, vs float64', () => {
  for (const level of LEVELS) {
    const prev = setSimdLevel(level);
    const Hq = 4, Hkv = 2, D = 19;
    const cuQ = [0, 3, 3, 8], cuK = [0, 5, 7, 12];
    const Tq = 8, Tk = 12;
    const q = randomF32(Tq * Hq * D, 31), k = randomF32(Tk * Hkv * D, 32), v = randomF32(Tk * Hkv * D, 33);
    for (const causal of [false, true]) {
      const out = attentionJob(Tensor.from(q, [Tq, Hq, D]), Tensor.from(k, [Tk, Hkv, D]), Tensor.from(v, [Tk, Hkv, D]),
        Tensor.from(Int32Array.from(cuQ)), Tensor.from(Int32Array.from(cuK)), causal, 0.3).run(false) as Tensor;
      const want = new Float64Array(Tq * Hq * D);
      for (let s = 0; s < 3; s++) {
        const lq = cuQ[s + 1]! - cuQ[s]!, lk = cuK[s + 1]! - cuK[s]!;
        for (let i = 0; i < lq; i++) for (let h = 0; h < Hq; h++) {
          const hk = Math.floor(h / (Hq / Hkv));
          const end = causal ? Math.min(lk, i + lk - lq + 1) : lk;
          const sc: number[] = [];
          for (let j = 0; j < end; j++) {
            let d = 0;
            for (let e = 0; e < D; e++) d += q[((cuQ[s]! + i) * Hq + h) * D + e]! * k[((cuK[s]! + j) * Hkv + hk) * D + e]!;
            sc.push(d * 0.3);
          }
          const m = Math.max(...sc);
          const p = sc.map((z) => Math.exp(z - m));
          const z = p.reduce((a, b) => a + b, 0);
          for (let e = 0; e < D; e++) {
            let acc = 0;
            for (let j = 0; j < end; j++) acc += (p[j]! / z) * v[((cuK[s]! + j) * Hkv + hk) * D + e]!;
            want[((cuQ[s]! + i) * Hq + h) * D + e] = acc;
          }
        }
      }
      assertRel(f32(out), want, 2e-6, `attention ${level} causal=${causal}`);
    }
    setSimdLevel(prev);
  }
  throwsLike(() => attentionJob(Tensor.zeros([4, 3, 8]), Tensor.zeros([4, 2, 8]), Tensor.zeros([4, 2, 8]), Tensor.from(Int32Array.from([0, 4])), Tensor.from(Int32Array.from([0, 4])), false, 1).run(false),
    RangeError, /Hkv dividing Hq = 3/);
  throwsLike(() => attentionJob(Tensor.zeros([4, 2, 8]), Tensor.zeros([4, 2, 8]), Tensor.zeros([4, 2, 8]), Tensor.from(Int32Array.from([0, 3])), Tensor.from(Int32Array.from([0, 4])), false, 1).run(false),
    RangeError, /last cuSeqlensQ to be 4/);
});

test('levels covered', () => {
  assert.ok(LEVELS.includes('scalar'));
  console.log(`  SIMD levels tested: ${LEVELS.join(', ')} (CPU best: ${backend().bestKernels})`);
});

test.run();
