// The network's ops (native/ops), forward and backward, against float64 references written here,
// at every SIMD level the CPU has (scalar, AVX2, AVX-512): row counts on both sides of the
// GEMV/GEMM switch, lengths that leave vector tails, bf16/f16/f32 weights; and their errors.
import { test } from 'uvu';
import * as assert from 'uvu/assert';

import { backend, matmulPrecision, setMatmulPrecision, setSimdLevel, type SimdLevel } from '../src/backend.js';
import * as ops from '../src/model/ops.js';
import { Tensor } from '../src/tensor.js';
import { assertRel, bf16Round, randomF32, relErr, throwsLike } from './helpers.js';

const f32 = (t: Tensor) => t.data as Float32Array;
const LEVELS: SimdLevel[] = (['scalar', 'avx2', 'avx512'] as SimdLevel[]).filter((l) => {
  const prev = setSimdLevel(l); const got = setSimdLevel(prev); return got === l;
});
function atLevels(fn: (level: SimdLevel) => void): void {
  for (const level of LEVELS) {
    const prev = setSimdLevel(level);
    try { fn(level); } finally { setSimdLevel(prev); }
  }
}
/** The values a weight of this dtype really holds (what the kernels must multiply by). */
function stored(w: Float32Array, shape: number[], dt: 'f32' | 'bf16' | 'f16'): { t: Tensor; vals: Float32Array } {
  const t = Tensor.from(w, shape, dt);
  const back = t.to('f32');
  const vals = f32(back).slice();
  back.dispose();
  return { t, vals };
}

test('the tests run at every level up to the best this CPU has', () => {
  // Guards the loops below: the levels that setSimdLevel accepts are exactly scalar up to
  // backend().bestKernels (a level that silently fell back would be tested as another).
  const all: SimdLevel[] = ['scalar', 'avx2', 'avx512'];
  assert.equal(LEVELS, all.slice(0, all.indexOf(backend().bestKernels) + 1));
  if (process.arch === 'x64') assert.ok(LEVELS.length >= 2, `levels: ${LEVELS.join(', ')}`);
});

test('linear forward and backward: bf16/f16/f32 weights, GEMV and GEMM paths, tails, bias', () => {
  atLevels((level) => {
    for (const dt of ['bf16', 'f16', 'f32'] as const) {
      for (const [T, K, N] of [[1, 37, 5], [3, 130, 33], [8, 50, 21], [9, 45, 70], [33, 200, 130], [70, 64, 129]] as const) {
        const x = randomF32(T * K, T * 7 + K), w = stored(randomF32(N * K, N + K, 0.5), [N, K], dt), b = stored(randomF32(N, 3 * N, 0.5), [N], dt);
        const xt = Tensor.from(x, [T, K]);
        const y = ops.linear(xt, w.t, b.t);
        const want = new Float64Array(T * N);
        for (let t = 0; t < T; t++) for (let n = 0; n < N; n++) {
          let s = b.vals[n]!;
          for (let k = 0; k < K; k++) s += x[t * K + k]! * w.vals[n * K + k]!;
          want[t * N + n] = s;
        }
        assertRel(f32(y), want, 2e-6, `${level} ${dt} linear ${T}x${K}x${N}`);
        const dy = randomF32(T * N, 5 + N);
        const g = ops.linearBackward(Tensor.from(dy, [T, N]), xt, w.t);
        const dx = new Float64Array(T * K), dw = new Float64Array(N * K), db = new Float64Array(N);
        for (let t = 0; t < T; t++) for (let n = 0; n < N; n++) {
          const d = dy[t * N + n]!;
          db[n] += d;
          for (let k = 0; k < K; k++) { dx[t * K + k] += d * w.vals[n * K + k]!; dw[n * K + k] += d * x[t * K + k]!; }
        }
        assertRel(f32(g.dx), dx, 2e-6, `${level} ${dt} dx`);
        assertRel(f32(g.dw), dw, 2e-6, `${level} ${dt} dw`);
        assertRel(f32(g.db), db, 2e-6, `${level} ${dt} db`);
      }
    }
  });
  throwsLike(() => ops.linear(Tensor.zeros([2, 3]), Tensor.zeros([4, 5])), RangeError, /weight of shape \[N, 3\]/);
  throwsLike(() => ops.linear(Tensor.zeros([2, 3]), Tensor.zeros([4, 3], 'i32')), TypeError, /dtype f32 or bf16 or f16 for weight but received i32/);
});

test("linear under setMatmulPrecision('bf16'): the GEMM path multiplies bf16-rounded operands (x, w, dy), the GEMV path (T <= 8) stays f32", () => {
  assert.is(matmulPrecision(), 'f32');
  assert.is(setMatmulPrecision('bf16'), 'f32');
  try {
    assert.is(backend().gemm.precision, 'bf16');
    atLevels((level) => {
      for (const dt of ['bf16', 'f16', 'f32'] as const) {
        for (const [T, K, N] of [[3, 130, 33], [9, 45, 70], [70, 64, 129]] as const) {
          const x = randomF32(T * K, T * 7 + K), w = stored(randomF32(N * K, N + K, 0.5), [N, K], dt), b = stored(randomF32(N, 3 * N, 0.5), [N], dt);
          const gemm = T > 8;  // kLinearGemvRows (native/ops/linear.h)
          const r = (v: number) => (gemm ? bf16Round(v) : v);
          using xt = Tensor.from(x, [T, K]);
          using y = ops.linear(xt, w.t, b.t);
          const want = new Float64Array(T * N);
          for (let t = 0; t < T; t++) for (let n = 0; n < N; n++) {
            let s = 0;
            for (let k = 0; k < K; k++) s += r(x[t * K + k]!) * r(w.vals[n * K + k]!);
            want[t * N + n] = s + b.vals[n]!;  // the bias is added in f32
          }
          assertRel(f32(y), want, 2e-6, `${level} ${dt} linear ${T}x${K}x${N}`);
          const dy = randomF32(T * N, 5 + N);
          const g = ops.linearBackward(Tensor.from(dy, [T, N]), xt, w.t);
          const dx = new Float64Array(T * K), dw = new Float64Array(N * K), db = new Float64Array(N);
          for (let t = 0; t < T; t++) for (let n = 0; n < N; n++) {
            const d = dy[t * N + n]!, dr = bf16Round(d);
            db[n] += d;
            for (let k = 0; k < K; k++) { dx[t * K + k] += dr * bf16Round(w.vals[n * K + k]!); dw[n * K + k] += dr * bf16Round(x[t * K + k]!); }
          }
          // The backward is always a GEMM: bf16 products at every T.
          assertRel(f32(g.dx), dx, 2e-6, `${level} ${dt} dx ${T}`);
          assertRel(f32(g.dw), dw, 2e-6, `${level} ${dt} dw ${T}`);
          assertRel(f32(g.db), db, 2e-6, `${level} ${dt} db ${T}`);
          if (gemm && dt === 'f32') {
            // ... and it is not the f32 product.
            const exact = new Float64Array(T * N);
            for (let t = 0; t < T; t++) for (let n = 0; n < N; n++) {
              let s = b.vals[n]!;
              for (let k = 0; k < K; k++) s += x[t * K + k]! * w.vals[n * K + k]!;
              exact[t * N + n] = s;
            }
            const e = relErr(f32(y), exact);
            assert.ok(e > 1e-4, `${level} bf16 linear against f32: ${e}`);
          }
          for (const t of [g.dx, g.dw, g.db!]) t.dispose();
        }
      }
    });
  } finally {
    assert.is(setMatmulPrecision('f32'), 'bf16');
  }
  throwsLike(() => setMatmulPrecision('f16' as 'bf16'), RangeError, /one of 'f32', 'bf16' for precision but received 'f16'/);
  assert.is(matmulPrecision(), 'f32');
});

test('LoRA term forward and backward against float64', () => {
  const [T, K, N, r, scale] = [19, 40, 24, 4, 0.75];
  const x = randomF32(T * K, 1), A = randomF32(r * K, 2, 0.3), B = randomF32(N * r, 3, 0.3), dy = randomF32(T * N, 4);
  const at = Tensor.from(A, [r, K]), bt = Tensor.from(B, [N, r]), xt = Tensor.from(x, [T, K]);
  const { y, t } = ops.lora(xt, at, bt, scale);
  const tw = new Float64Array(T * r), yw = new Float64Array(T * N);
  for (let i = 0; i < T; i++) for (let j = 0; j < r; j++) for (let k = 0; k < K; k++) tw[i * r + j] += x[i * K + k]! * A[j * K + k]!;
  for (let i = 0; i < T; i++) for (let n = 0; n < N; n++) for (let j = 0; j < r; j++) yw[i * N + n] += scale * tw[i * r + j]! * B[n * r + j]!;
  assertRel(f32(t), tw, 2e-6, 't');
  assertRel(f32(y), yw, 2e-6, 'y');
  const g = ops.loraBackward(Tensor.from(dy, [T, N]), xt, t, at, bt, scale);
  const u = new Float64Array(T * r), dA = new Float64Array(r * K), dB = new Float64Array(N * r), dx = new Float64Array(T * K);
  for (let i = 0; i < T; i++) for (let j = 0; j < r; j++) for (let n = 0; n < N; n++) u[i * r + j] += scale * dy[i * N + n]! * B[n * r + j]!;
  for (let n = 0; n < N; n++) for (let j = 0; j < r; j++) for (let i = 0; i < T; i++) dB[n * r + j] += scale * dy[i * N + n]! * tw[i * r + j]!;
  for (let j = 0; j < r; j++) for (let k = 0; k < K; k++) for (let i = 0; i < T; i++) dA[j * K + k] += u[i * r + j]! * x[i * K + k]!;
  for (let i = 0; i < T; i++) for (let k = 0; k < K; k++) for (let j = 0; j < r; j++) dx[i * K + k] += u[i * r + j]! * A[j * K + k]!;
  assertRel(f32(g.dB), dB, 2e-6, 'dB');
  assertRel(f32(g.dA), dA, 2e-6, 'dA');
  assertRel(f32(g.dx), dx, 2e-6, 'dx');
});

test('RMSNorm forward and backward (rstd, dx, dw) against float64, bf16 weight and none', () => {
  atLevels((level) => {
    for (const [T, C] of [[1, 7], [5, 33], [130, 96]] as const) {
      for (const dt of ['f32', 'bf16', null] as const) {
        const x = randomF32(T * C, T + C), dy = randomF32(T * C, 2 * T + C), eps = 1e-6;
        const w = dt ? stored(randomF32(C, C, 0.2).map((v) => v + 1), [C], dt) : null;
        const wv = (c: number) => (w ? w.vals[c]! : 1);
        const r = ops.rmsNorm(Tensor.from(x, [T, C]), w?.t ?? null, eps);
        const y = new Float64Array(T * C), rs = new Float64Array(T), dx = new Float64Array(T * C), dw = new Float64Array(C);
        for (let t = 0; t < T; t++) {
          let ss = 0;
          for (let c = 0; c < C; c++) ss += x[t * C + c]! ** 2;
          const rr = 1 / Math.sqrt(ss / C + eps);
          rs[t] = rr;
          let m = 0;
          for (let c = 0; c < C; c++) { y[t * C + c] = x[t * C + c]! * rr * wv(c); m += dy[t * C + c]! * wv(c) * x[t * C + c]!; }
          m /= C;
          for (let c = 0; c < C; c++) {
            dx[t * C + c] = rr * (dy[t * C + c]! * wv(c) - x[t * C + c]! * rr * rr * m);
            dw[c] += dy[t * C + c]! * x[t * C + c]! * rr;
          }
        }
        assertRel(f32(r.y), y, 2e-6, `${level} rms y ${T}x${C}`);
        assertRel(f32(r.rstd), rs, 2e-6, `${level} rstd`);
        const g = ops.rmsNormBackward(Tensor.from(dy, [T, C]), Tensor.from(x, [T, C]), r.rstd, w?.t ?? null);
        assertRel(f32(g.dx), dx, 1e-5, `${level} rms dx`);
        assertRel(f32(g.dw), dw, 1e-5, `${level} rms dw`);
      }
    }
  });
});

test('rotary: M-RoPE sections, 2-D vision streams; the inverse undoes it and is its transpose', () => {
  for (const [T, H, D, sec] of [[7, 3, 16, [2, 3, 3]], [40, 2, 8, [4]], [12, 1, 32, [8, 8]]] as const) {
    const S = sec.length, half = D / 2;
    const x = randomF32(T * H * D, T + D), dy = randomF32(T * H * D, T + 2 * D);
    const pos = Int32Array.from({ length: S * T }, (_, i) => (i * 37) % 1000 + (i % 3) * 50000);
    const inv = Float32Array.from({ length: half }, (_, j) => 1 / Math.pow(10000, (2 * j) / D));
    const stream: number[] = [];
    sec.forEach((c, s) => { for (let i = 0; i < c; i++) stream.push(s); });
    const args = [Tensor.from(pos, [S, T]), Tensor.from(inv), Tensor.from(Int32Array.from(sec))] as const;
    const y = ops.rope(Tensor.from(x, [T, H, D]), ...args);
    const want = new Float64Array(T * H * D);
    for (let t = 0; t < T; t++) for (let h = 0; h < H; h++) for (let j = 0; j < half; j++) {
      const a = pos[stream[j]! * T + t]! * inv[j]!, c = Math.cos(a), s = Math.sin(a), i = (t * H + h) * D;
      want[i + j] = x[i + j]! * c - x[i + j + half]! * s;
      want[i + j + half] = x[i + j + half]! * c + x[i + j]! * s;
    }
    assertRel(f32(y), want, 2e-6, `rope ${T}x${H}x${D}`);
    assertRel(f32(ops.rope(y, ...args, true)), x, 2e-6, 'inverse');
    // <R x, dy> = <x, R^T dy>: the backward is the transpose of the forward.
    const rt = f32(ops.rope(Tensor.from(dy, [T, H, D]), ...args, true));
    let a = 0, b = 0;
    for (let i = 0; i < x.length; i++) { a += f32(y)[i]! * dy[i]!; b += x[i]! * rt[i]!; }
    assert.ok(Math.abs(a - b) < 1e-4 * Math.max(1, Math.abs(a)), `transpose: ${a} vs ${b}`);
  }
  throwsLike(() => ops.rope(Tensor.zeros([2, 1, 8]), Tensor.zeros([1, 2], 'i32'), Tensor.zeros([4]), Tensor.from(Int32Array.from([3]))), RangeError, /sections summing to 4/);
});

test('SwiGLU and GELU forward and backward against float64, vector tails, large |g|', () => {
  atLevels((level) => {
    for (const n of [1, 15, 16, 17, 1000]) {
      const g = randomF32(n, n, 4), u = randomF32(n, n + 1, 2), dy = randomF32(n, n + 2);
      if (n === 1000) { g[0] = 95; g[1] = -95; g[2] = -30; g[3] = 0; }
      const gt = Tensor.from(g, [1, n]), ut = Tensor.from(u, [1, n]);
      const sig = (v: number) => 1 / (1 + Math.exp(-v));
      assertRel(f32(ops.swiglu(gt, ut)), Float64Array.from(g, (v, i) => v * sig(v) * u[i]!), 2e-6, `${level} swiglu ${n}`);
      const b = ops.swigluBackward(Tensor.from(dy, [1, n]), gt, ut);
      assertRel(f32(b.dg), Float64Array.from(g, (v, i) => dy[i]! * u[i]! * sig(v) * (1 + v * (1 - sig(v)))), 2e-6, `${level} dg`);
      assertRel(f32(b.du), Float64Array.from(g, (v, i) => dy[i]! * v * sig(v)), 2e-6, `${level} du`);
      const erf = (z: number) => { // Abramowitz-Stegun 7.1.26 is too coarse; series/continued fraction in float64
        const t = Math.abs(z); let s = 0;
        if (t < 3) { let term = t, k = 0; s = t; while (Math.abs(term) > 1e-17 * Math.abs(s)) { k++; term *= -t * t / k; s += term / (2 * k + 1); } s *= 2 / Math.sqrt(Math.PI); }
        else { let f = 0; for (let k = 60; k >= 1; k--) f = k / 2 / (t + f); s = 1 - Math.exp(-t * t) / Math.sqrt(Math.PI) / (t + f); }
        return z < 0 ? -s : s;
      };
      const x = g.map((v) => v / 2);
      assertRel(f32(ops.gelu(Tensor.from(x, [1, n]))), Float64Array.from(x, (v) => 0.5 * v * (1 + erf(v / Math.SQRT2))), 2e-6, `${level} gelu`);
      assertRel(f32(ops.geluBackward(Tensor.from(dy, [1, n]), Tensor.from(x, [1, n]))),
        Float64Array.from(x, (v, i) => dy[i]! * (0.5 * (1 + erf(v / Math.SQRT2)) + v * Math.exp(-v * v / 2) / Math.sqrt(2 * Math.PI))), 2e-6, `${level} gelu grad`);
    }
  });
});

test('embedding forward (bf16 table widened) and backward (repeated ids add; -1 skipped)', () => {
  const V = 50, C = 24;
  const tab = stored(randomF32(V * C, 9), [V, C], 'bf16');
  const ids = Int32Array.from([3, 7, 3, -1, 49, 0, 7, 7]);
  const y = ops.embedding(Tensor.from(ids), tab.t);
  const want = new Float64Array(ids.length * C);
  ids.forEach((id, t) => { if (id >= 0) for (let c = 0; c < C; c++) want[t * C + c] = tab.vals[id * C + c]!; });
  assert.equal(Array.from(f32(y)), Array.from(want), "rows are the table's bf16 values exactly");
  const dy = randomF32(ids.length * C, 10);
  const d = ops.embeddingBackward(Tensor.from(dy, [ids.length, C]), Tensor.from(ids), V);
  const dw = new Float64Array(V * C);
  ids.forEach((id, t) => { if (id >= 0) for (let c = 0; c < C; c++) dw[id * C + c] += dy[t * C + c]!; });
  assertRel(f32(d), dw, 1e-6, 'dtable');
  throwsLike(() => ops.embedding(Tensor.from(Int32Array.from([50])), tab.t), RangeError, /ids in \[-1, 50\) but received 50 at index 0/);
});

test.run();
