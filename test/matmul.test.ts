// matmul: every implementation and SIMD level against a float64 reference, views, errors, and
// that the async form leaves the event loop free.
import { test } from 'uvu';
import * as assert from 'uvu/assert';

import { backend, matmul, matmulSync, setSimdLevel, Tensor } from '../src/index.js';
import { assertRel, matmulRef, randomF32, rejectsLike, throwsLike } from './helpers.js';

const LEVELS = (['scalar', 'avx2', 'avx512'] as const).filter((l) =>
  l === 'scalar' || (l === 'avx2' && backend().simd.avx2) || (l === 'avx512' && backend().bestKernels === 'avx512'));
const IMPLS = ['auto', 'builtin', 'naive', ...(backend().blas !== 'none' ? ['blas'] as const : [])] as const;
// Shapes that hit every edge: single row/column, tile remainders, K beyond one depth block.
const SHAPES: [number, number, number][] = [[1, 1, 1], [1, 17, 5], [7, 1, 3], [6, 16, 8], [13, 35, 300], [65, 33, 257], [128, 96, 64]];

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
