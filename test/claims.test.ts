// Claims of the README that no test checked (issue 14): results that do not depend on the thread
// count (attention and its backward, gather, linearLogprobs, linearCdpo, the model's forward and
// generate), f16 checkpoint weights in the model, and the attention kernels' stated memory.
//
// What holds, as measured: the kernels that own their reductions (attention, gather) give the
// same bits on any thread count. The GEMM-based ones (linearLogprobs, linearCdpo, the model) give
// the same bits run after run, and on any thread count with the builtin GEMM (no BLAS linked: the
// node-gyp build, which CI tests too); OpenBLAS splits the inner dimension of some shapes across
// its threads (64 x 48 x 5000: 1867 of 3072 results differ in the last bits between 1 and 2
// threads), so with it they agree across thread counts to float rounding, not bit for bit.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';

import {
  attentionBackwardSync, backend, attentionSync, gatherLogprobsBackwardSync, gatherLogprobsSync, linearCdpoSync, linearLogprobsBackwardSync,
  linearLogprobsSync, memoryStats, resetPeakMemory, setNumThreads, Tensor,
} from '../src/index.js';
import { generate } from '../src/infer/generate.js';
import { loadModel } from '../src/infer/load.js';
import { writeTinyCheckpoint } from './ckpt_fixture.js';
import { assertRel, randomF32 } from './helpers.js';
import { CASES, forwardCase, makeWeights, toModel } from './qwen_fixture.js';

const bits = (t: Tensor) => Array.from(new Uint32Array((t.toArray() as Float32Array).buffer));

const BLAS = backend().blas !== 'none';

/**
 * Runs fn at 1, 2 and 3 threads, twice at 2: the same bits every time, or with `gemm` and a BLAS
 * linked, the same bits run after run and relative agreement to 1e-5 across thread counts.
 */
async function sameOnThreads(what: string, fn: () => Promise<number[][]> | number[][], opts: { gemm?: boolean } = {}): Promise<void> {
  const prev = setNumThreads(1);
  const exact = !(opts.gemm && BLAS);
  const asFloats = (a: number[]) => Array.from(new Float32Array(new Uint32Array(a).buffer));
  try {
    const one = await fn();
    for (const n of [2, 3]) {
      setNumThreads(n);
      const got = await fn();
      got.forEach((g, i) => {
        if (exact) assert.equal(g, one[i], `${what}: output ${i} on ${n} threads vs 1`);
        else assertRel(asFloats(g), asFloats(one[i]!), 1e-5, `${what}: output ${i} on ${n} threads vs 1 (OpenBLAS)`);
      });
      const again = await fn();
      again.forEach((g, i) => assert.equal(g, got[i], `${what}: output ${i}, run to run on ${n} threads`));
    }
  } finally { setNumThreads(prev); }
}

test('the same bits on 1, 2 and 3 threads: attention + backward, gather + backward, linearLogprobs + backward, linearCdpo', async () => {
  const T = 300, H = 4, D = 32;
  using q = Tensor.from(randomF32(T * H * D, 1), [T, H, D]);
  using k = Tensor.from(randomF32(T * H * D, 2), [T, H, D]);
  using v = Tensor.from(randomF32(T * H * D, 3), [T, H, D]);
  using dO = Tensor.from(randomF32(T * H * D, 4), [T, H, D]);
  const cu = new Int32Array([0, 100, 100, 300]);
  await sameOnThreads('attention', () => {
    const r = attentionSync(q, k, v, { cuSeqlensQ: cu, causal: true });
    const g = attentionBackwardSync(q, k, v, r.out, r.lse, dO, { cuSeqlensQ: cu, causal: true });
    const out = [r.out, r.lse, g.dq, g.dk, g.dv].map(bits);
    for (const t of [r.out, r.lse, g.dq, g.dk, g.dv]) t.dispose();
    return out;
  });
  const N = 64, V = 5000, Hd = 48;
  using logits = Tensor.from(randomF32(N * V, 5, 4), [N, V]);
  const tg = Int32Array.from({ length: N }, (_, i) => (i * 131) % V);
  using dl = Tensor.from(randomF32(N, 6));
  await sameOnThreads('gather', () => {
    const r = gatherLogprobsSync(logits, tg, { entropy: true });
    const d = gatherLogprobsBackwardSync(logits, tg, r.lse, dl);
    const out = [r.logprobs, r.lse, r.entropy!, d].map(bits);
    for (const t of [r.logprobs, r.lse, r.entropy!, d]) t.dispose();
    return out;
  });
  using hidden = Tensor.from(randomF32(N * Hd, 7), [N, Hd]);
  using weight = Tensor.from(randomF32(V * Hd, 8), [V, Hd], 'bf16');
  await sameOnThreads('linearLogprobs', () => {
    const r = linearLogprobsSync(hidden, weight, tg, { tile: { tokens: 16, vocab: 512 } });
    const b = linearLogprobsBackwardSync(hidden, weight, tg, r.lse, dl, { tile: { tokens: 16, vocab: 512 } });
    const out = [r.logprobs, r.lse, b.dHidden, b.dWeight].map(bits);
    for (const t of [r.logprobs, r.lse, b.dHidden, b.dWeight]) t.dispose();
    return out;
  }, { gemm: true });
  using w32 = Tensor.from(randomF32(V * Hd, 9), [V, Hd]);
  await sameOnThreads('linearCdpo', () => {
    const r = linearCdpoSync({ hidden, weight: w32, targets: tg, oldLogprobs: Float32Array.from({ length: N }, (_, i) => -7 - (i % 5) * 0.1),
      advantages: Float32Array.from([1, -0.5, 0.25, -1]), seqOffsets: new Int32Array([0, 10, 30, 31, N]), importanceSampling: 'sequence' });
    const out = [bits(Tensor.from([r.loss])), ...[r.dHidden, r.dWeight, r.logprobs].map(bits)];
    for (const t of [r.dHidden, r.dWeight, r.logprobs]) t.dispose();
    return out;
  }, { gemm: true });
});

test('the same bits on 1, 2 and 3 threads: the model forward (video + image) and generate', async () => {
  const { model } = toModel(makeWeights(100));
  await sameOnThreads('forward', () => {
    const out = forwardCase(model, CASES.imageVideo!);
    const r = [bits(out.hidden), bits(out.logits!)];
    out.dispose();
    return r;
  }, { gemm: true });
  await sameOnThreads('generate', async () => {
    const s = await generate(model, { inputIds: [1, 2, 3, 4, 5], maxNewTokens: 12, n: 3, temperature: 1, seed: 7 });
    // tokens as floats' bits of themselves (exact in f32), log-probs as f32 bits
    return s.flatMap((x) => [bits(Tensor.from(x.tokens)), bits(Tensor.from(x.logprobs))]);
  }, { gemm: true });
  model.dispose();
});

test('f16 checkpoint weights: the model loaded from an f16 file computes what the f32 model of the same values does', async () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'vt-f16-'));
  try {
    writeTinyCheckpoint(dir, { dtype: 'f16', tokenizer: false });
    const m = await loadModel(dir);
    assert.is(m.weights.get('model.layers.0.mlp.up_proj.weight')!.dtype, 'f16', 'kept as stored');
    // the f32 model of the values the f16 file holds
    const w = makeWeights(100);
    for (const [k, v] of w) {
      const t = Tensor.from(v, [v.length], 'f16'), back = t.to('f32');
      w.set(k, (back.toArray() as Float32Array).slice());
      t.dispose(); back.dispose();
    }
    const { model: ref } = toModel(w);
    const a = forwardCase(m, CASES.imageVideo!), b = forwardCase(ref, CASES.imageVideo!);
    assertRel(a.logits!.toArray() as Float32Array, b.logits!.toArray() as Float32Array, 1e-5, 'logits');
    // and not the values of the unrounded f32 weights (the comparison can fail)
    const { model: raw } = toModel(makeWeights(100));
    const c = forwardCase(raw, CASES.imageVideo!);
    assert.not.equal(Array.from(c.logits!.toArray() as Float32Array), Array.from(a.logits!.toArray() as Float32Array));
    for (const x of [a, b, c]) x.dispose();
    for (const x of [ref, raw]) x.dispose();
    const g = await generate(m, { inputIds: [1, 2, 3], maxNewTokens: 4, temperature: 0 });
    assert.is(g[0]!.tokens.length, 4);
    m.dispose(); m.checkpoint.dispose();
  } finally { rmSync(dir, { recursive: true, force: true }); }
});

test('attention memory as stated: 2 MiB forward and 0.5 MiB backward at 16 heads x 1024 x 80 on 2 threads; the forward\'s does not grow with length', () => {
  const prev = setNumThreads(2);
  try {
    const H = 16, D = 80;
    const extra = (L: number) => {
      using q = Tensor.randn([L, H, D], { seed: 1 });
      using k = Tensor.randn([L, H, D], { seed: 2 });
      using v = Tensor.randn([L, H, D], { seed: 3 });
      using dO = Tensor.randn([L, H, D], { seed: 4 });
      let base = memoryStats().liveBytes; resetPeakMemory();
      const r = attentionSync(q, k, v, { causal: true });
      const fwd = memoryStats().peakBytes - base - (r.out.numel + r.lse.numel) * 4;
      base = memoryStats().liveBytes; resetPeakMemory();
      const g = attentionBackwardSync(q, k, v, r.out, r.lse, dO, { causal: true });
      const bwd = memoryStats().peakBytes - base - (g.dq.numel + g.dk.numel + g.dv.numel) * 4;
      for (const t of [r.out, r.lse, g.dq, g.dk, g.dv]) t.dispose();
      return { fwd, bwd };
    };
    const a = extra(1024), b = extra(2048);
    // the README's figures are rounded (measured: 2.02 MiB and 0.46 MiB): 5% above them fails
    assert.ok(a.fwd <= 1.05 * 2 * 2 ** 20, `forward ${a.fwd} bytes at 1024`);
    assert.ok(a.bwd <= 1.05 * 0.5 * 2 ** 20, `backward ${a.bwd} bytes at 1024`);
    assert.is(b.fwd, a.fwd, 'the forward\'s extra memory is the same at twice the length');
    // the backward keeps one float per query row and head (D_i = rowsum(dO * O)) beside its tiles
    assert.ok(b.bwd - a.bwd <= (2048 - 1024) * H * 4, `backward grows by ${b.bwd - a.bwd} bytes from 1024 to 2048`);
  } finally { setNumThreads(prev); }
});

test.run();
