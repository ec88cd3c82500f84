// matmul: every implementation and SIMD level against a float64 reference (all transposes, tile
// and cache-block edges, strided views, alpha and beta), what 'auto' runs, determinism across
// thread counts, errors, and that the async form leaves the event loop free.
import { test } from 'uvu';
import * as assert from 'uvu/assert';

import { backend, matmul, matmulSync, setNumThreads, setSimdLevel, Tensor } from '../src/index.js';
import { assertRel, bf16RoundAll, matmulRef, randomF32, rejectsLike, relErr, throwsLike } from './helpers.js';

const LEVELS = (['scalar', 'avx2', 'avx512'] as const).filter((l) =>
  l === 'scalar' || (l === 'avx2' && backend().simd.avx2) || (l === 'avx512' && backend().bestKernels === 'avx512'));
const IMPLS = ['auto', 'builtin', 'naive', ...(backend().blas !== 'none' ? ['blas'] as const : [])] as const;
// Shapes that hit every edge: single row/column, register-tile remainders (rows mod 6 and 12,
// columns mod 16 and 32, k mod 8 and 16 in the transposing packers), K beyond one depth block.
const SHAPES: [number, number, number][] = [[1, 1, 1], [1, 17, 5], [7, 1, 3], [6, 16, 8], [12, 32, 16], [13, 35, 300], [65, 33, 257],
  [128, 96, 64], [11, 31, 15], [25, 47, 33]];
// Shapes past the builtin GEMM's cache blocks (native/core/gemm_avx512.cc, gemm_avx2.cc): M past
// MC (60), N past NC (768 at AVX-512, 1536 at AVX2), K past KC (1024 at AVX-512, split into equal
// blocks; 512 at AVX2). Checked once per level and transpose, with every impl but naive.
const BLOCK_SHAPES: [number, number, number][] = [[61, 1550, 40], [70, 50, 1030], [130, 777, 520]];

for (const level of LEVELS) {
  test(`[${level}] f32 matmul of every impl matches float64 (rel err < 1e-5), all transposes`, () => {
    const prev = setSimdLevel(level);
    try {
      let seed = 1;
      for (const [M, N, K] of SHAPES) {
        for (const ta of [false, true]) for (const tb of [false, true]) {
          const A = randomF32(M * K, seed++), B = randomF32(K * N, seed++);
          const want = matmulRef(A, B, M, N, K, ta, tb);
          using a = Tensor.from(A, ta ? [K, M] : [M, K]);
          using b = Tensor.from(B, tb ? [N, K] : [K, N]);
          for (const impl of IMPLS) {
            using c = matmulSync(a, b, { transA: ta, transB: tb, impl });
            assert.equal(c.shape, [M, N]);
            assertRel(c.data, want, 1e-5, `${impl} ${M}x${N}x${K} ta=${ta} tb=${tb}`);
          }
        }
      }
    } finally { setSimdLevel(prev); }
  });
}

for (const level of LEVELS) {
  test(`[${level}] cache-block edges: M, N and K past one block, all transposes, match float64`, () => {
    const prev = setSimdLevel(level);
    try {
      let seed = 500;
      for (const [M, N, K] of BLOCK_SHAPES) {
        for (const ta of [false, true]) for (const tb of [false, true]) {
          const A = randomF32(M * K, seed++), B = randomF32(K * N, seed++);
          const want = matmulRef(A, B, M, N, K, ta, tb);
          using a = Tensor.from(A, ta ? [K, M] : [M, K]);
          using b = Tensor.from(B, tb ? [N, K] : [K, N]);
          for (const impl of IMPLS.filter((i) => i !== 'naive')) {
            using c = matmulSync(a, b, { transA: ta, transB: tb, impl });
            assertRel(c.data as Float32Array, want, 1e-5, `${impl} ${M}x${N}x${K} ta=${ta} tb=${tb}`);
          }
        }
      }
    } finally { setSimdLevel(prev); }
  });

  test(`[${level}] strided views (row stride > width), alpha and beta into out, every impl`, () => {
    const prev = setSimdLevel(level);
    try {
      let seed = 900;
      for (const [M, N, K] of [[13, 35, 29], [37, 70, 45]] as const) {
        for (const ta of [false, true]) for (const tb of [false, true]) {
          // a and b are column slices of wider tensors: unit stride along a row, row stride + 7.
          const [ar, ac] = ta ? [K, M] : [M, K], [br, bc] = tb ? [N, K] : [K, N];
          const Aw = randomF32(ar * (ac + 7), seed++), Bw = randomF32(br * (bc + 7), seed++);
          const A = new Float32Array(ar * ac), B = new Float32Array(br * bc);
          for (let i = 0; i < ar; i++) A.set(Aw.subarray(i * (ac + 7), i * (ac + 7) + ac), i * ac);
          for (let i = 0; i < br; i++) B.set(Bw.subarray(i * (bc + 7), i * (bc + 7) + bc), i * bc);
          const prod = matmulRef(A, B, M, N, K, ta, tb);
          using aw = Tensor.from(Aw, [ar, ac + 7]);
          using bw = Tensor.from(Bw, [br, bc + 7]);
          const av = aw.slice(1, 0, ac), bv = bw.slice(1, 0, bc);
          const C0 = randomF32(M * N, seed++);
          const alpha = -0.75, beta = 0.5;
          const want = Float64Array.from(prod, (p, i) => alpha * p + beta * C0[i]!);
          for (const impl of IMPLS) {
            using c = matmulSync(av, bv, { transA: ta, transB: tb, impl });
            assertRel(c.data as Float32Array, prod, 1e-5, `${impl} view ${M}x${N}x${K} ta=${ta} tb=${tb}`);
            using out = Tensor.from(C0, [M, N]);
            matmulSync(av, bv, { transA: ta, transB: tb, impl, out, alpha, beta });
            assertRel(out.data as Float32Array, want, 1e-5, `${impl} alpha/beta ${M}x${N}x${K} ta=${ta} tb=${tb}`);
            // beta 0 never reads out: NaN there must not leak into the result
            using nan = Tensor.from(new Float32Array(M * N).fill(NaN), [M, N]);
            matmulSync(av, bv, { transA: ta, transB: tb, impl, out: nan, alpha });
            assertRel(nan.data as Float32Array, Float64Array.from(prod, (p) => alpha * p), 1e-5, `${impl} beta 0 over NaN`);
          }
          av.dispose(); bv.dispose();
        }
      }
    } finally { setSimdLevel(prev); }
  });

  test(`[${level}] 'auto' runs the GEMM backend().gemm names, bit for bit`, () => {
    const prev = setSimdLevel(level);
    try {
      const g = backend().gemm;
      assert.ok(g.auto === 'builtin' || g.auto === 'blas', g.auto);
      assert.ok(g.reason.length > 20, g.reason);
      if (backend().blas === 'none') assert.is(g.auto, 'builtin', 'no BLAS: builtin');
      // The rule (native/core/gemm.cc): the builtin GEMM at AVX-512; at AVX2, OpenBLAS when its
      // kernels are AVX2 or better; below its level, the builtin. VT_GEMM overrides it.
      if (process.env.VT_GEMM === 'blas' || process.env.VT_GEMM === 'builtin') {
        if (backend().blas !== 'none') assert.is(g.auto, process.env.VT_GEMM);
      } else {
        if (level === 'avx512') assert.is(g.auto, 'builtin');
        if (level === 'avx2' && backend().blas !== 'none') assert.is(g.auto, ['AVX2', 'AVX-512'].includes(g.blasKernels) ? 'blas' : 'builtin');
      }
      for (const [M, N, K] of [[300, 200, 100], [5, 7, 3]] as const) {
        using a = Tensor.from(randomF32(M * K, 31), [M, K]);
        using b = Tensor.from(randomF32(K * N, 32), [K, N]);
        using c1 = matmulSync(a, b);
        using c2 = matmulSync(a, b, { impl: g.auto });
        assert.equal(c1.data, c2.data, `${M}x${N}x${K}`);
      }
    } finally { setSimdLevel(prev); }
  });
}

// precision 'bf16': the operands rounded to bf16, products summed in f32. At avx512 on a CPU with
// AVX512_BF16 the VDPBF16PS kernels (native/core/gemm_bf16_avx512.cc) run, elsewhere the f32
// GEMM on rounded copies; both must equal float64 on the rounded values, with f32 or bf16 inputs,
// odd K (a pair padded with 0), and M, N, K past the bf16 GEMM's blocks (MC 60, NC 768, KC 2048).
const BF16_SHAPES: [number, number, number][] = [[1, 1, 1], [13, 35, 301], [12, 32, 16], [25, 47, 33], [61, 800, 40], [70, 50, 2100]];
for (const level of LEVELS) {
  test(`[${level}] precision 'bf16' matches float64 on the bf16-rounded operands, f32 and bf16 inputs, all transposes`, () => {
    const prev = setSimdLevel(level);
    try {
      let seed = 900;
      for (const [M, N, K] of BF16_SHAPES) {
        for (const ta of [false, true]) for (const tb of [false, true]) {
          const A = randomF32(M * K, seed++), B = randomF32(K * N, seed++);
          const want = matmulRef(bf16RoundAll(A), bf16RoundAll(B), M, N, K, ta, tb);
          using a = Tensor.from(A, ta ? [K, M] : [M, K]);
          using b = Tensor.from(B, tb ? [N, K] : [K, N]);
          using a16 = a.to('bf16');
          using b16 = b.to('bf16');
          for (const [x, y, what] of [[a, b, 'f32 x f32'], [a16, b, 'bf16 x f32'], [a, b16, 'f32 x bf16'], [a16, b16, 'bf16 x bf16']] as const) {
            using c = matmulSync(x, y, { transA: ta, transB: tb, precision: 'bf16', alpha: 0.5 });
            assertRel(c.data, want.map((v) => 0.5 * v), 1e-5, `${what} ${M}x${N}x${K} ta=${ta} tb=${tb}`);
          }
        }
      }
      // The rounding is real: against the f32 product the error is that of 8-bit operands.
      const A = randomF32(40 * 64, 1), B = randomF32(64 * 30, 2);
      using a = Tensor.from(A, [40, 64]);
      using b = Tensor.from(B, [64, 30]);
      using c = matmulSync(a, b, { precision: 'bf16' });
      const e = relErr(c.data, matmulRef(A, B, 40, 30, 64));
      assert.ok(e > 3e-4 && e < 2e-2, `bf16 against the f32 product: relative error ${e} (expected that of bf16 operands)`);
    } finally { setSimdLevel(prev); }
  });
}

test(`precision 'bf16': backend().gemm.bf16 says which kernels run; into out with beta; async; errors`, async () => {
  const info = backend();
  assert.is(info.gemm.bf16.native, info.simd.avx512bf16 && info.kernels === 'avx512', info.gemm.bf16.reason);
  const M = 33, N = 70, K = 45;
  const A = randomF32(M * K, 11), B = randomF32(K * N, 12), C0 = randomF32(M * N, 13);
  const want = matmulRef(bf16RoundAll(A), bf16RoundAll(B), M, N, K).map((v, i) => 2 * v - C0[i]!);
  using a = Tensor.from(A, [M, K]);
  using b = Tensor.from(B, [K, N]);
  using out = Tensor.from(C0, [M, N]);
  const r = matmulSync(a, b, { precision: 'bf16', out, alpha: 2, beta: -1 });
  assert.is(r, out);
  assertRel(out.data, want, 1e-5, 'alpha and beta into out');
  using c = await matmul(a, b, { precision: 'bf16', impl: 'builtin' });
  assertRel(c.data, matmulRef(bf16RoundAll(A), bf16RoundAll(B), M, N, K), 1e-5, 'async');
  throwsLike(() => matmulSync(a, b, { precision: 'fp8' as 'bf16' }), RangeError, /one of 'f32', 'bf16' for precision but received 'fp8'/);
  throwsLike(() => matmulSync(a, b, { precision: 'bf16', impl: 'naive' }), TypeError, /impl 'auto' or 'builtin' with precision 'bf16' but received 'naive'/);
  using a16 = a.to('bf16');
  throwsLike(() => matmulSync(a16, b), TypeError, /dtype f32 for a but received bf16/);
});

test('backend().gemm reports the OpenBLAS pin as the environment set it, and the package never changes it', () => {
  const g = backend().gemm;
  assert.is(g.openblasCoretype, process.env.OPENBLAS_CORETYPE || null);
  if (backend().blas !== 'none') {
    assert.match(backend().blas, new RegExp(`core ${g.blasCore.replace(/[()]/g, '.')}`));
    assert.ok(['AVX-512', 'AVX2', 'AVX', 'SSE', 'unknown'].includes(g.blasKernels), g.blasKernels);
    if (process.env.OPENBLAS_CORETYPE) assert.is(g.blasCore.toLowerCase(), process.env.OPENBLAS_CORETYPE.toLowerCase(), 'OpenBLAS runs the pinned core');
  } else {
    assert.is(g.blasKernels, 'none');
  }
});

test('the builtin GEMM and the bf16 one give the same bits on 1 and 2 threads (each thread owns whole output tiles)', () => {
  const prev = setNumThreads(1);
  try {
    for (const [M, N, K, ta, tb] of [[300, 1030, 520, false, true], [1030, 40, 300, true, false]] as const) {
      using a = Tensor.from(randomF32(M * K, 41), ta ? [K, M] : [M, K]);
      using b = Tensor.from(randomF32(K * N, 42), tb ? [N, K] : [K, N]);
      for (const precision of ['f32', 'bf16'] as const) {
        setNumThreads(1);
        using c1 = matmulSync(a, b, { transA: ta, transB: tb, impl: 'builtin', precision });
        setNumThreads(2);
        using c2 = matmulSync(a, b, { transA: ta, transB: tb, impl: 'builtin', precision });
        assert.equal(c1.data, c2.data, `${precision} ${M}x${N}x${K}`);
      }
    }
    // bf16 products below the VDPBF16PS level: the builtin f32 GEMM on rounded copies, also bit-stable.
    for (const level of LEVELS.filter((l) => l !== 'avx512')) {
      const was = setSimdLevel(level);
      try {
        using a = Tensor.from(randomF32(200 * 300, 43), [200, 300]);
        using b = Tensor.from(randomF32(300 * 500, 44), [500, 300]);
        setNumThreads(1);
        using c1 = matmulSync(a, b, { transB: true, precision: 'bf16' });
        setNumThreads(2);
        using c2 = matmulSync(a, b, { transB: true, precision: 'bf16' });
        assert.equal(c1.data, c2.data, `bf16 at ${level}`);
      } finally { setSimdLevel(was); }
    }
  } finally { setNumThreads(prev); }
});

test('alpha and beta: bad values and beta without out are errors', () => {
  using a = Tensor.zeros([2, 3]);
  using b = Tensor.zeros([3, 2]);
  using out = Tensor.zeros([2, 2]);
  throwsLike(() => matmulSync(a, b, { beta: 1 }), TypeError, /out with beta = 1/);
  throwsLike(() => matmulSync(a, b, { alpha: NaN }), TypeError, /alpha/);
  throwsLike(() => matmulSync(a, b, { out, beta: Infinity }), RangeError, /beta/);
  throwsLike(() => matmulSync(a, b, { alpha: '2' as never }), TypeError, /alpha/);
});

test('large matmul (threads split both ways) matches float64', async () => {
  for (const [M, N, K] of [[300, 1030, 520], [1030, 40, 300]] as const) {
    const A = randomF32(M * K, 11), B = randomF32(K * N, 12);
    const want = matmulRef(A, B, M, N, K);
    using a = Tensor.from(A, [M, K]);
    using b = Tensor.from(B, [K, N]);
    for (const impl of ['builtin', 'auto'] as const) {
      using c = await matmul(a, b, { impl });
      assertRel(c.data, want, 1e-5, `${impl} ${M}x${N}x${K}`);
    }
  }
});

test('transposed views are used without a copy; out= writes in place; empty sizes', async () => {
  const A = randomF32(12, 1), B = randomF32(20, 2);
  using a = Tensor.from(A, [4, 3]);  // a^T is [3, 4]
  using b = Tensor.from(B, [5, 4]);  // b^T is [4, 5]
  using c = matmulSync(a.transpose(), b.transpose());
  assertRel(c.data, matmulRef(A, B, 3, 5, 4, true, true), 1e-6, 'views');
  using out = Tensor.zeros([3, 5]);
  const r = await matmul(a, b, { transA: true, transB: true, out });
  assert.is(r, out);
  assert.equal(out.data, c.data, 'out');
  using z = matmulSync(Tensor.zeros([3, 0]), Tensor.zeros([0, 2]));
  assert.equal([...z.data], [0, 0, 0, 0, 0, 0], 'K = 0 gives zeros');
  using e = matmulSync(Tensor.zeros([0, 4]), Tensor.zeros([4, 2]));
  assert.equal(e.shape, [0, 2]);
  // a strided view with no unit stride is rejected with a pointer to contiguous()
  using big = Tensor.zeros([4, 6]);
  throwsLike(() => matmulSync(big.slice(1, 0, 6, 2), Tensor.zeros([3, 2])), TypeError, /contiguous/);
});

test('errors name the argument, the expectation and what was received', async () => {
  using a = Tensor.zeros([2, 3]);
  using b = Tensor.zeros([4, 5]);
  throwsLike(() => matmulSync(a, b), RangeError, /inner dimensions.*K = 3.*K = 4/);
  throwsLike(() => matmulSync(a, Tensor.zeros([3], 'f32')), RangeError, /2 dimensions \[K, N\] for b but received shape \[3\]/);
  throwsLike(() => matmulSync(a, Tensor.zeros([3, 2], 'bf16')), TypeError, /dtype f32 for b but received bf16/);
  throwsLike(() => matmulSync(a, [1, 2] as never), TypeError, /Tensor for b but received an array/);
  throwsLike(() => matmulSync(a, Tensor.zeros([3, 2]), { transA: 1 as never }), TypeError, /transA/);
  throwsLike(() => matmulSync(a, Tensor.zeros([3, 2]), { impl: 'fast' as never }), RangeError, /impl/);
  throwsLike(() => matmulSync(a, Tensor.zeros([3, 2]), { out: Tensor.zeros([2, 3]) }), RangeError, /out of shape \[2, 2\]/);
  const d = Tensor.zeros([3, 2]);
  d.dispose();
  throwsLike(() => matmulSync(a, d), TypeError, /live Tensor for b/);
  await rejectsLike(matmul(a, b), RangeError, /inner dimensions/, 'async form rejects');
});

test('the async form runs off the event loop: timers keep firing during a large matmul', async () => {
  const n = 1536;
  using a = Tensor.randn([n, n], { seed: 1 });
  using b = Tensor.randn([n, n], { seed: 2 });
  let ticks = 0;
  const timer = setInterval(() => { ticks++; }, 1);
  const t0 = performance.now();
  // naive impl: slow enough (seconds) that a blocked loop could not tick at all meanwhile
  using c = await matmul(a.slice(0, 0, 256), b, { impl: 'naive' });
  const ms = performance.now() - t0;
  clearInterval(timer);
  assert.equal(c.shape, [256, n]);
  assert.ok(ms > 50, `the work took long enough to observe (${ms.toFixed(0)} ms)`);
  assert.ok(ticks >= 5, `timers fired ${ticks} times during ${ms.toFixed(0)} ms of work`);
});

test('concurrent async matmuls (several libuv threads, BLAS and builtin) give correct results', async () => {
  const cases = Array.from({ length: 8 }, (_, i) => {
    const M = 100 + 13 * i, N = 90 + 7 * i, K = 120 + 5 * i;
    const A = randomF32(M * K, 100 + i), B = randomF32(K * N, 200 + i);
    return { M, N, K, A, B, want: matmulRef(A, B, M, N, K), a: Tensor.from(A, [M, K]), b: Tensor.from(B, [K, N]) };
  });
  const outs = await Promise.all(cases.map((c, i) => matmul(c.a, c.b, { impl: i % 2 ? 'builtin' : 'auto' })));
  outs.forEach((o, i) => { assertRel(o.data, cases[i]!.want, 1e-5, `case ${i}`); o.dispose(); cases[i]!.a.dispose(); cases[i]!.b.dispose(); });
});

test('disposing inputs while an async matmul is in flight is safe', async () => {
  const A = randomF32(200 * 300, 5), B = randomF32(300 * 100, 6);
  const a = Tensor.from(A, [200, 300]), b = Tensor.from(B, [300, 100]);
  const p = matmul(a, b, { impl: 'builtin' });
  a.dispose(); b.dispose();
  globalThis.gc?.();
  using c = await p;
  assertRel(c.data, matmulRef(A, B, 200, 100, 300), 1e-5, 'result after dispose');
});

test.run();
