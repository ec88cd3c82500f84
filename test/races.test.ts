// Inputs changed while an async call runs (issue 14, item 2). A caller may write to its own index
// tensors (targets, segment offsets) the moment a kernel call returns its promise; the worker must
// read what the call validated. Each case starts the async call, overwrites the index tensor at
// once with values that would read far out of bounds, and checks the result against the sync call
// on the original values. Before the fix these cases crashed the process (segfault) or returned
// run-dependent numbers; a crash here fails this file, which is why it holds nothing else.
import { test } from 'uvu';
import * as assert from 'uvu/assert';

import {
  attention, attentionBackward, attentionBackwardSync, attentionSync, cdpoLoss, cdpoLossSync, gatherLogprobs, gatherLogprobsBackward,
  gatherLogprobsBackwardSync, gatherLogprobsSync, groupAdvantages, groupAdvantagesSync, linearCdpo, linearCdpoSync, linearLogprobs,
  linearLogprobsBackward, linearLogprobsBackwardSync, linearLogprobsSync, Tensor,
} from '../src/index.js';
import { randomF32 } from './helpers.js';

const f32 = (t: Tensor) => Array.from(t.data as Float32Array);
const ROUNDS = 20;

/** Runs `start` (which starts an async call), corrupts `idx` at once, restores it after the call. */
async function corrupted<T>(idx: Tensor, bad: number[], start: () => Promise<T>): Promise<T> {
  const data = idx.data as Int32Array | Float32Array;
  const keep = data.slice();
  const p = start();
  for (let i = 0; i < data.length; i++) data[i] = bad[i % bad.length]!;
  try { return await p; } finally { data.set(keep as never); }
}

test('attention and its backward: cuSeqlensQ / cuSeqlensK overwritten after the call starts', async () => {
  const T = 200, H = 2, D = 16;
  using q = Tensor.from(randomF32(T * H * D, 1), [T, H, D]);
  using k = Tensor.from(randomF32(T * H * D, 2), [T, H, D]);
  using v = Tensor.from(randomF32(T * H * D, 3), [T, H, D]);
  using dO = Tensor.from(randomF32(T * H * D, 4), [T, H, D]);
  using cu = Tensor.from(new Int32Array([0, 60, 60, 130, 200]));
  const want = attentionSync(q, k, v, { cuSeqlensQ: cu, causal: true });
  const wantG = attentionBackwardSync(q, k, v, want.out, want.lse, dO, { cuSeqlensQ: cu, causal: true });
  for (let r = 0; r < ROUNDS; r++) {
    const got = await corrupted(cu, [0, 1 << 30, -(1 << 30), 7, 3], () => attention(q, k, v, { cuSeqlensQ: cu, causal: true }));
    assert.equal(f32(got.out), f32(want.out), `round ${r}: out`);
    assert.equal(f32(got.lse), f32(want.lse), `round ${r}: lse`);
    const g = await corrupted(cu, [1 << 30], () => attentionBackward(q, k, v, want.out, want.lse, dO, { cuSeqlensQ: cu, causal: true }));
    assert.equal(f32(g.dq), f32(wantG.dq), `round ${r}: dq`);
    assert.equal(f32(g.dk), f32(wantG.dk), `round ${r}: dk`);
    for (const t of [got.out, got.lse, g.dq, g.dk, g.dv]) t.dispose();
  }
  for (const t of [want.out, want.lse, wantG.dq, wantG.dk, wantG.dv]) t.dispose();
});

test('gatherLogprobs and its backward: i32 targets overwritten after the call starts', async () => {
  const N = 512, V = 1000;
  using logits = Tensor.from(randomF32(N * V, 5, 3), [N, V]);
  using targets = Tensor.from(Int32Array.from({ length: N }, (_, i) => (i * 37) % V));
  using g = Tensor.from(randomF32(N, 6));
  const want = gatherLogprobsSync(logits, targets);
  const wantD = gatherLogprobsBackwardSync(logits, targets, want.lse, g);
  for (let r = 0; r < ROUNDS; r++) {
    const got = await corrupted(targets, [1 << 30, -(1 << 30)], () => gatherLogprobs(logits, targets));
    assert.equal(f32(got.logprobs), f32(want.logprobs), `round ${r}: logprobs`);
    const d = await corrupted(targets, [1 << 30], () => gatherLogprobsBackward(logits, targets, want.lse, g));
    assert.equal(f32(d), f32(wantD), `round ${r}: dLogits`);
    got.logprobs.dispose(); got.lse.dispose(); d.dispose();
  }
  want.logprobs.dispose(); want.lse.dispose(); wantD.dispose();
});

test('linearLogprobs and its backward: targets overwritten after the call starts', async () => {
  const N = 64, H = 32, V = 3000;
  using hidden = Tensor.from(randomF32(N * H, 7), [N, H]);
  using weight = Tensor.from(randomF32(V * H, 8), [V, H]);
  using targets = Tensor.from(Int32Array.from({ length: N }, (_, i) => (i * 101) % V));
  using g = Tensor.from(randomF32(N, 9));
  const want = linearLogprobsSync(hidden, weight, targets);
  const wantB = linearLogprobsBackwardSync(hidden, weight, targets, want.lse, g);
  for (let r = 0; r < ROUNDS / 4; r++) {
    // in range but different: before the fix the value was silently computed for these targets
    const got = await corrupted(targets, [0, 1, 2], () => linearLogprobs(hidden, weight, targets));
    assert.equal(f32(got.logprobs), f32(want.logprobs), `round ${r}: logprobs`);
    const b = await corrupted(targets, [1 << 30], () => linearLogprobsBackward(hidden, weight, targets, want.lse, g));
    assert.equal(f32(b.dHidden), f32(wantB.dHidden), `round ${r}: dHidden`);
    got.logprobs.dispose(); got.lse.dispose(); b.dHidden.dispose(); b.dWeight.dispose();
  }
  want.logprobs.dispose(); want.lse.dispose(); wantB.dHidden.dispose(); wantB.dWeight.dispose();
});

test('cdpoLoss and linearCdpo: seqOffsets and targets overwritten after the call starts; groupAdvantages: rewards', async () => {
  const N = 4000, B = 8;
  const off = Int32Array.from({ length: B + 1 }, (_, i) => Math.round((i * N) / B));
  using offsets = Tensor.from(off);
  using logprobs = Tensor.from(randomF32(N, 10, 0.5).map((x) => x - 2));
  using old = Tensor.from(randomF32(N, 11, 0.5).map((x) => x - 2));
  using adv = Tensor.from(randomF32(B, 12));
  const args = { logprobs, oldLogprobs: old, advantages: adv, seqOffsets: offsets };
  const want = cdpoLossSync(args);
  for (let r = 0; r < ROUNDS; r++) {
    const got = await corrupted(offsets, [0, 1 << 30, 5], () => cdpoLoss(args));
    assert.is(got.loss, want.loss, `round ${r}: loss`);
    assert.equal(f32(got.dLogprobs), f32(want.dLogprobs), `round ${r}: gradient`);
    got.dLogprobs.dispose();
  }
  want.dLogprobs.dispose();

  const n = 48, H = 16, V = 500;
  using hidden = Tensor.from(randomF32(n * H, 13), [n, H]);
  using weight = Tensor.from(randomF32(V * H, 14), [V, H]);
  using targets = Tensor.from(Int32Array.from({ length: n }, (_, i) => (i * 7) % V));
  using lp = Tensor.from(randomF32(n, 15, 0.5).map((x) => x - 5));
  const largs = { hidden, weight, targets, oldLogprobs: lp, advantages: Float32Array.from([1, -1]), seqOffsets: new Int32Array([0, 20, n]) };
  const lwant = linearCdpoSync(largs);
  for (let r = 0; r < ROUNDS / 4; r++) {
    const got = await corrupted(targets, [1 << 30, 3], () => linearCdpo(largs));
    assert.is(got.loss, lwant.loss, `round ${r}: linearCdpo loss`);
    assert.equal(f32(got.dHidden), f32(lwant.dHidden), `round ${r}: linearCdpo dHidden`);
    got.dHidden.dispose(); got.dWeight.dispose(); got.logprobs.dispose();
  }
  lwant.dHidden.dispose(); lwant.dWeight.dispose(); lwant.logprobs.dispose();

  using rewards = Tensor.from(Float32Array.from({ length: 64 }, (_, i) => (i * 7) % 5));
  const aw = groupAdvantagesSync(rewards, 8);
  for (let r = 0; r < ROUNDS; r++) {
    const p = groupAdvantages(rewards, 8);
    const data = rewards.data as Float32Array;
    const keep = data.slice();
    data.fill(NaN);  // checked finite at the call: the worker must read what was checked
    const got = await p;
    data.set(keep);
    assert.equal(f32(got), f32(aw), `round ${r}: advantages`);
    got.dispose();
  }
  aw.dispose();
});

test.run();
