// Outputs that share memory with inputs, and memory shared with other threads (issue 14, item
// 15): gatherLogprobsBackward with an `out` overlapping the logits at a shifted offset and
// matmul({ out: a }) computed wrong numbers without a word; a SharedArrayBuffer-backed array gave
// a bare "Invalid argument".
import { test } from 'uvu';
import * as assert from 'uvu/assert';

import { gatherLogprobsBackwardSync, gatherLogprobsSync, indexTensor, matmulSync, Tensor } from '../src/index.js';
import { randomF32, throwsLike } from './helpers.js';

const f32 = (t: Tensor) => Array.from(t.toArray() as Float32Array);

test('gatherLogprobsBackward: out = logits (in place) works; a shifted or partial view of them is refused', () => {
  const N = 4, V = 8;
  using big = Tensor.from(randomF32((N + 1) * V, 1), [N + 1, V]);
  using logits = big.slice(0, 0, N);
  const tg = Int32Array.from([1, 2, 3, 4]);
  const f = gatherLogprobsSync(logits, tg);
  using g = Tensor.from(randomF32(N, 2));
  const want = gatherLogprobsBackwardSync(logits, tg, f.lse, g);
  throwsLike(() => gatherLogprobsBackwardSync(logits, tg, f.lse, g, { out: big.slice(0, 1, N + 1) }), RangeError,
    /out to be logits itself or not to share memory with logits but received a view that overlaps it/);
  using copy = logits.clone();
  const inPlace = gatherLogprobsBackwardSync(copy, tg, f.lse, g, { out: copy });
  assert.is(inPlace, copy);
  assert.equal(f32(copy), f32(want), 'in place equals a fresh output');
  using lseAlias = Tensor.zeros([N * V]);
  throwsLike(() => gatherLogprobsBackwardSync(logits, tg, lseAlias.slice(0, 0, N), g, { out: lseAlias.view([N, V]) }), RangeError, /out not to share memory with lse/);
  f.logprobs.dispose(); f.lse.dispose(); want.dispose();
});

test('matmul: out sharing memory with a or b is refused for every impl (naive wrote C while reading A)', () => {
  using a = Tensor.from(randomF32(16, 3), [4, 4]);
  using b = Tensor.from(randomF32(16, 4), [4, 4]);
  for (const impl of ['naive', 'builtin', 'auto'] as const) {
    throwsLike(() => matmulSync(a, b, { impl, out: a }), RangeError, /out not to share memory with a but received the same tensor/, impl);
    throwsLike(() => matmulSync(a, b, { impl, out: b }), RangeError, /out not to share memory with b/, impl);
  }
  using wide = Tensor.zeros([8, 4]);
  using top = wide.slice(0, 0, 4), mid = wide.slice(0, 2, 6), low = wide.slice(0, 4, 8);
  throwsLike(() => matmulSync(top, b, { out: mid }), RangeError, /overlaps it/);
  const ok = matmulSync(top, b, { out: low });  // disjoint rows of one storage: fine
  assert.is(ok, low);
});

test('a SharedArrayBuffer-backed array is copied in (it was a bare "Invalid argument"); index arrays too', () => {
  const shared = new Float32Array(new SharedArrayBuffer(16));
  shared.set([1, 2, 3, 4]);
  using t = Tensor.from(shared, [2, 2]);
  assert.equal(f32(t), [1, 2, 3, 4]);
  shared[0] = 9;
  assert.is(f32(t)[0], 1, 'a copy, not a view');
  const idx = new Int32Array(new SharedArrayBuffer(8));
  idx.set([1, 0]);
  const r = indexTensor('targets', idx);
  assert.equal(Array.from(r.tensor.toArray() as Int32Array), [1, 0]);
  r.tensor.dispose();
  using logits = Tensor.from(randomF32(6, 5), [2, 3]);
  const g = gatherLogprobsSync(logits, idx);
  assert.is(g.logprobs.numel, 2);
  g.logprobs.dispose(); g.lse.dispose();
});

test.run();
