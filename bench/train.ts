// Training: one step (forward with saved activations, the fused LM-head log-prob loss forward and
// backward, the network's backward) of a Qwen2.5-0.5B-sized decoder (24 layers, hidden 896, 14
// query / 2 key-value heads, intermediate 4864, vocabulary 151936, tied head, random weights) on
// 512 tokens; the same step in PyTorch (bench/ref/torch_train_step.py, Debian's python3-torch,
// same machine, same thread count) when present; the peak extra memory with recompute 'none'
// and 'layer'; and the forward + backward of a vision tower of Qwen2.5-VL-3B's shape (32 blocks,
// hidden 1280) on 16 frames at 196x28x28 pixels.
//
// Model FLOP utilisation counts 6 x (non-embedding parameters + LM head) x tokens plus the
// attention's 6 x 2 x layers x (T^2 / 2) x hidden (causal: half the score matrix), against the
// FMA peak measured at the start of the run.
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import { backend, memoryStats, resetPeakMemory, setMatmulPrecision } from '../src/backend.js';
import { linearLogprobsWithGrad } from '../src/kernels/gather.js';
import { AdamW, QwenModel, groupAdvantagesSync, linearCdpo, parameterShapes, rollout, type QwenConfig, type TrainOptions } from '../src/index.js';
import { collate, type Prompt } from '../src/train/examples.js';
import { gatherRows, scatterRows, scoredTokens } from '../src/train/logprobs.js';
import { Tensor } from '../src/tensor.js';
import { compare, record, type Ctx } from './util.js';

const DEC: QwenConfig = {
  hiddenSize: 896, numLayers: 24, numHeads: 14, numKvHeads: 2, intermediateSize: 4864, vocabSize: 151936,
  rmsNormEps: 1e-6, ropeTheta: 1000000, mropeSection: [8, 12, 12], tieWordEmbeddings: true,
  imageTokenId: 151655, videoTokenId: 151656, visionStartTokenId: 151652,
};

function randomWeights(cfg: QwenConfig): Map<string, Tensor> {
  const w = new Map<string, Tensor>();
  let seed = 1;
  for (const [name, shape] of parameterShapes(cfg).shapes) {
    const norm = /norm|ln_q/.test(name);
    w.set(name, Tensor.randn(shape, { seed: seed++, std: norm ? 0.05 : 0.02, mean: norm ? 1 : 0, dtype: 'bf16' }));
  }
  return w;
}

const now = () => performance.now();
const median = (a: number[]) => [...a].sort((x, y) => x - y)[Math.floor(a.length / 2)]!;

/** One training step; returns its phases' times (ms). */
async function step(model: QwenModel, ids: Tensor, targets: Int32Array, T: number): Promise<{ fwd: number; head: number; bwd: number }> {
  const t0 = now();
  const out = await model.forward({ inputIds: ids, logits: 'none', grad: true });
  const t1 = now();
  const hidden = out.hidden.reshape([T, model.config.hiddenSize]);
  // As the SFT trainer does: one pass for the head's forward and backward, its gradient written
  // (the first micro-batch of a step).
  const dLogprobs = Tensor.from(new Float32Array(T).fill(-1 / T));
  const head = model.lmHeadGrad;
  const g = await linearLogprobsWithGrad(hidden, model.lmHead, targets, dLogprobs, head ? { dWeight: head, accumulate: false } : { weightGrad: false });
  const t2 = now();
  await model.backward(out, { dHidden: g.dHidden.reshape(out.hidden.shape) });
  const t3 = now();
  for (const t of [hidden, g.logprobs, g.lse, dLogprobs, g.dHidden]) t.dispose();
  out.dispose();
  return { fwd: t1 - t0, head: t2 - t1, bwd: t3 - t2 };
}

async function decoder(ctx: Ctx): Promise<void> {
  const cfg: QwenConfig = ctx.quick ? { ...DEC, numLayers: 4 } : DEC;
  const T = ctx.quick ? 128 : 512;
  const kase = `0.5B-sized${ctx.quick ? ' (4 layers)' : ''} train step ${T} tokens`;
  const w = randomWeights(cfg);
  const { shapes } = parameterShapes(cfg);
  let nonEmbed = 0;
  for (const [name, s] of shapes) if (name !== 'model.embed_tokens.weight') nonEmbed += s.reduce((a, b) => a * b, 1);
  const head = cfg.vocabSize * cfg.hiddenSize;
  const attn = 6 * 2 * cfg.numLayers * (T * T / 2) * cfg.hiddenSize;
  const flops = 6 * (nonEmbed + head) * T + attn;
  const ids = Tensor.from(Int32Array.from({ length: T }, (_, i) => (i * 7919 + 13) % cfg.vocabSize), [1, T]);
  const targets = Int32Array.from({ length: T }, (_, i) => (i * 104729 + 7) % cfg.vocabSize);
  const iters = ctx.quick ? 2 : 3;
  const extra: Record<string, number> = {};
  // The last: the same step with setMatmulPrecision('bf16') (every GEMM with bf16 products).
  const configs: [string, TrainOptions, 'f32' | 'bf16'][] = [['videothinker', { recompute: 'none' }, 'f32'], ["videothinker, recompute 'layer'", { recompute: 'layer' }, 'f32'],
    ['videothinker, LoRA rank 16', { lora: { rank: 16, alpha: 32 } }, 'f32'], ["videothinker, precision 'bf16'", { recompute: 'none' }, 'bf16']];
  for (const [impl, train, precision] of configs) {
    const was = setMatmulPrecision(precision);
    try {
      const t0 = now();
      const model = await QwenModel.create(cfg, w, { train });
      const created = now() - t0;
      await step(model, ids, targets, T);  // warm-up (first-touch of the activation memory)
      const runs: { fwd: number; head: number; bwd: number }[] = [];
      const live = memoryStats().liveBytes;
      resetPeakMemory();
      for (let i = 0; i < iters; i++) runs.push(await step(model, ids, targets, T));
      extra[impl] = memoryStats().peakBytes - live;
      const total = median(runs.map((r) => r.fwd + r.head + r.bwd));
      const f = median(runs.map((r) => r.fwd)), h = median(runs.map((r) => r.head)), b = median(runs.map((r) => r.bwd));
      record(ctx, {
        suite: 'train', case: kase, impl, ms: total, flops: train.lora ? undefined : flops, extraBytes: extra[impl],
        note: `${(T / (total / 1000)).toFixed(0)} tokens/s; forward ${f.toFixed(0)} ms, LM head fwd+bwd ${h.toFixed(0)} ms, backward ${b.toFixed(0)} ms; master copy made in ${created.toFixed(0)} ms`,
      });
      if (impl === 'videothinker') {
        // The optimizer step over the whole flat store: a norm pass over the gradients (4 bytes per
        // parameter) and the update (p, g, m, v read, p, m, v written: 28 bytes).
        const opt = new AdamW(model, { lr: 1e-6 });
        const n = model.flat.master!.numel;
        await opt.step();
        const ts: number[] = [];
        for (let i = 0; i < 5; i++) { const a = now(); await opt.step(); ts.push(now() - a); }
        const ms = median(ts);
        record(ctx, { suite: 'train', case: `AdamW step, ${(n / 1e6).toFixed(0)}M parameters`, impl: 'videothinker', ms, bytes: 32 * n,
          note: `${(n / ms / 1e6).toFixed(2)} G parameters/s; bytes count the norm check (4/param) and the update (28/param)` });
        opt.dispose();
      }
      model.dispose();
    } finally { setMatmulPrecision(was); }
  }
  // PyTorch: the same decoder (untied head: the same FLOPs) with autograd, same threads.
  const script = path.join(path.dirname(fileURLToPath(import.meta.url)), 'ref', 'torch_train_step.py');
  const py = process.env.VT_PYTHON ?? '/usr/bin/python3';
  const args = [script, '--layers', String(cfg.numLayers), '--hidden', String(cfg.hiddenSize), '--heads', String(cfg.numHeads), '--kv-heads', String(cfg.numKvHeads),
    '--intermediate', String(cfg.intermediateSize), '--vocab', String(cfg.vocabSize), '--tokens', String(T), '--threads', String(backend().threads),
    '--steps', String(iters), '--warmup', '1', '--json'];
  const r = spawnSync(py, args, { encoding: 'utf8', timeout: 30 * 60 * 1000 });
  if (r.status === 0) {
    const j = JSON.parse(r.stdout.trim().split('\n').pop()!) as { ms_median: number; torch: string; attention: string };
    record(ctx, { suite: 'train', case: kase, impl: 'pytorch', ms: j.ms_median, flops, note: `PyTorch ${j.torch} autograd, ${j.attention} attention, same threads` });
    compare(ctx, 'train', kase, 'pytorch', null);
  } else {
    console.log(`  (PyTorch baseline not run: ${(r.stderr || String(r.error)).split('\n').filter(Boolean).slice(-1)[0] ?? 'python3 with torch not found'})`);
  }
  ids.dispose();
  for (const t of w.values()) t.dispose();
}

/** Forward + backward of the vision tower alone (a decoder of no layers; random dHidden on its rows). */
async function vision(ctx: Ctx): Promise<void> {
  const V = ctx.quick
    ? { depth: 8, hiddenSize: 1280, numHeads: 16, intermediateSize: 3420, frames: 4 }
    : { depth: 32, hiddenSize: 1280, numHeads: 16, intermediateSize: 3420, frames: 16 };
  const cfg: QwenConfig = {
    ...DEC, hiddenSize: 2048, numHeads: 16, numKvHeads: 2, numLayers: 0, vocabSize: 16, mropeSection: [16, 24, 24], tieWordEmbeddings: true,
    imageTokenId: 14, videoTokenId: 15, visionStartTokenId: 13,
    vision: { depth: V.depth, hiddenSize: V.hiddenSize, numHeads: V.numHeads, intermediateSize: V.intermediateSize, outHiddenSize: 2048, patchSize: 14,
      temporalPatchSize: 2, spatialMergeSize: 2, windowSize: 112, fullattBlockIndexes: [7, 15, 23, 31].filter((b) => b < V.depth), tokensPerSecond: 2, inChannels: 3 },
  };
  // 196 x 28 x 28 pixels per frame: 392 x 392, 28 x 28 patches of 14.
  const grid: [number, number, number] = [V.frames / 2, 28, 28];
  const N = grid[0] * grid[1] * grid[2], M = N / 4;
  const K = 3 * 2 * 14 * 14;
  const w = randomWeights(cfg);
  const model = await QwenModel.create(cfg, w, { train: { recompute: 'layer' } });
  const px = Tensor.randn([N, K], { seed: 3 });
  const ids = Tensor.from(Int32Array.from({ length: M + 2 }, (_, i) => (i === 0 ? 13 : i === M + 1 ? 1 : 15)), [1, M + 2]);
  const dh = Tensor.randn([1, M + 2, cfg.hiddenSize], { seed: 4, std: 0.01 });
  const one = async () => {
    const out = await model.forward({ inputIds: ids, pixelValuesVideos: px, videoGridThw: [grid], logits: 'none', grad: true });
    await model.backward(out, { dHidden: dh });
    out.dispose();
  };
  await one();
  const times: number[] = [];
  for (let i = 0; i < (ctx.quick ? 1 : 2); i++) { const t0 = now(); await one(); times.push(now() - t0); }
  const ms = median(times);
  const C = V.hiddenSize, F = V.intermediateSize;
  const perPatch = 2 * K * C + V.depth * 2 * (4 * C * C + 3 * C * F) + (2 * 16 * C * C + 2 * 4 * C * 2048) / 4;
  record(ctx, { suite: 'train', case: `vision tower 3B-shaped d${V.depth} C${C}, ${V.frames} frames, ${N} patches fwd+bwd`, impl: "videothinker, recompute 'layer'", ms,
    flops: 3 * perPatch * N, note: `${(N / (ms / 1000)).toFixed(0)} patches/s; FLOPs count the linear layers (x3 for forward + backward)` });
  px.dispose(); ids.dispose(); dh.dispose(); model.dispose();
  for (const t of w.values()) t.dispose();
}

/**
 * Rollouts and one whole RL step of the 0.5B-sized decoder as a policy (train: f32 master weights):
 * 8 completions of one prompt against one completion (tokens/s), then the step split into rollout,
 * scoring (the bias model's log-probs), loss + backward (linearCdpo fused with the LM head) and the
 * optimizer.
 */
async function rl(ctx: Ctx): Promise<void> {
  const cfg: QwenConfig = ctx.quick ? { ...DEC, numLayers: 4 } : DEC;
  const w = randomWeights(cfg);
  const policy = await QwenModel.create(cfg, w, { train: true });
  const bias = new QwenModel(cfg, w);
  const P = 64, T = ctx.quick ? 16 : 32;
  const ids = Int32Array.from({ length: P }, (_, i) => (i * 7919 + 3) % cfg.vocabSize);
  const opts = { maxNewTokens: T, temperature: 1, topP: 1, topK: 0, seed: 1, stop: new Set<number>() };
  const kase = `0.5B-sized${ctx.quick ? ' (4 layers)' : ''} rollouts, prompt ${P}, ${T} new tokens`;
  const tps: Record<number, number> = {};
  for (const n of [1, 8]) {
    await rollout(policy, [{ inputIds: ids }], { ...opts, n, maxNewTokens: 2 });
    const t0 = now();
    await rollout(policy, [{ inputIds: ids }], { ...opts, n });
    const ms = now() - t0;
    tps[n] = (n * T) / (ms / 1000);
    record(ctx, { suite: 'train', case: kase, impl: `videothinker, n = ${n}`, ms, note: `${tps[n]!.toFixed(1)} tokens/s (prefill once, ${n} rows decode together)${n === 8 ? `: ${(tps[8]! / tps[1]!).toFixed(2)}x the tokens/s of one` : ''}` });
  }
  // One RL step: 1 prompt x 8 completions (the optimizer's moments allocated beforehand, as a run has them).
  const opt = new AdamW(policy, { lr: 1e-6 });
  const t0 = now();
  const outs = await rollout(policy, [{ inputIds: ids }], { ...opts, n: 8 });
  const t1 = now();
  const prompt = { row: undefined as never, ids, bytes: 0 } as unknown as Prompt;
  const batch = collate(outs[0]!.map(() => prompt), outs[0]!.map((s) => s.tokens));
  const sc = scoredTokens(batch);
  const bo = await bias.forward({ inputIds: batch.inputIds, attentionMask: batch.attentionMask, logits: 'none' });
  const bh = gatherRows(bo.hidden, sc.rows);
  const { linearLogprobs } = await import('../src/kernels/gather.js');
  const blp = await linearLogprobs(bh, bias.lmHead, sc.targets);
  const t2 = now();
  const out = await policy.forward({ inputIds: batch.inputIds, attentionMask: batch.attentionMask, logits: 'none', grad: true });
  const h = gatherRows(out.hidden, sc.rows);
  const adv = groupAdvantagesSync(Float32Array.from({ length: 8 }, (_, i) => i % 3), 8);
  const r = await linearCdpo({ hidden: h, weight: policy.lmHead, targets: sc.targets, dWeight: policy.lmHeadGrad!, accumulate: false, advantages: adv, seqOffsets: sc.offsets, biasLogprobs: blp.logprobs });
  const dh = scatterRows(r.dHidden, sc.rows, out.hidden.shape);
  await policy.backward(out, { dHidden: dh });
  const t3 = now();
  await opt.step();
  const t4 = now();
  const tokens = sc.targets.length;
  record(ctx, { suite: 'train', case: `0.5B-sized${ctx.quick ? ' (4 layers)' : ''} CDPO step, 1 prompt x 8 completions (${tokens} tokens)`, impl: 'videothinker', ms: t4 - t0,
    note: `rollout ${(t1 - t0).toFixed(0)} ms, bias scoring ${(t2 - t1).toFixed(0)} ms, loss + backward ${(t3 - t2).toFixed(0)} ms, optimizer ${(t4 - t3).toFixed(0)} ms` });
  for (const t of [bh, blp.logprobs, blp.lse, h, adv, r.dHidden, r.logprobs, dh]) t.dispose();
  bo.dispose(); out.dispose(); batch.dispose(); opt.dispose(); policy.dispose(); bias.dispose();
  for (const t of w.values()) t.dispose();
}

export async function run(ctx: Ctx): Promise<void> {
  await decoder(ctx);
  await rl(ctx);
  await vision(ctx);
}
