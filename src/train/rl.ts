// The RL trainers: GRPO and its family, Bias-Aware Training (GRPO with no KL on the
// observational questions only) and CDPO (the frozen bias model scores the policy's completions;
// the loss pushes away from it), with T-GRPO and TW-GRPO as baselines, on the shared loop.
//
// A generation batch is `promptsPerStep x stepsPerGeneration` prompts with `numGenerations`
// completions each, decoded together (src/infer/rollout.ts). It serves stepsPerGeneration
// optimizer steps (one slice of prompts each), numIterations times over. Rewards, group
// advantages and the bias / reference models' log-probs of the sampled tokens are computed once
// per generation batch; the old log-probs are the sampling ones when the policy cannot have moved
// (numIterations = stepsPerGeneration = 1: ratio 1), else recomputed before the first update, as
// TRL does. The buffer is saved with each checkpoint, so a resumed run continues the same batch.
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';

import { checkBoolean, checkInteger, checkNumber, checkOneOf, checkOptions, typeError } from '../errors.js';
import { hash32, Rng } from '../data/random.js';
import type { LoadedRow } from '../data/dataset.js';
import { loadModel } from '../infer/load.js';
import type { QwenModel } from '../infer/model.js';
import { rollout } from '../infer/rollout.js';
import { linearCdpo, type CdpoLossType, type AdvantageScale, type ImportanceSampling } from '../kernels/cdpo.js';
import { linearLogprobs, linearLogprobsBackward } from '../kernels/gather.js';
import * as ops from '../model/ops.js';
import type { TrainOptions } from '../model/qwen.js';
import { Tensor } from '../tensor.js';
import { collate, mediaInputs, PromptCache, rolloutPrompt, type Prompt } from './examples.js';
import { gatherRows, scatterRows, scoredTokens } from './logprobs.js';
import { maskedCdpoLoss } from './masked.js';
import { evalReward, rewardName, type Reward } from './rewards.js';
import { loadRows, trainConfig, type DataOptions } from './sft.js';
import { trainLoop, type LoopOptions, type LoopResult, type TrainTask } from './trainer.js';

export interface RlOptions extends Omit<LoopOptions, 'steps' | 'gradAccum'>, DataOptions {
  /** The policy's starting checkpoint folder, or a model loaded with `train`. */
  model: string | QwenModel;
  /** The frozen bias model (CDPO): a checkpoint folder (or a run folder of train-bias), or a model. */
  biasModel?: string | QwenModel;
  /** The frozen reference model for betaRef > 0 (default: a copy of the starting policy). */
  refModel?: string | QwenModel;
  /** Push away from the bias model (default 0.01 with a bias model, the paper's beta = -0.01). */
  betaBias?: number;
  /** Pull toward the reference model (default 0). */
  betaRef?: number;
  klClamp?: number;
  /** Completions per prompt (default 8). */
  numGenerations?: number;
  /** Prompts per optimizer step (default 1). */
  promptsPerStep?: number;
  /** Optimizer steps served by one generation batch (default 1). */
  stepsPerGeneration?: number;
  /** Passes over each generation batch (mu, default 1). */
  numIterations?: number;
  /** Micro-batches per optimizer step (its completions split evenly; default 1). */
  gradAccum?: number;
  lossType?: CdpoLossType;
  scaleRewards?: AdvantageScale;
  epsLow?: number;
  epsHigh?: number;
  delta?: number;
  importanceSampling?: ImportanceSampling;
  /** Completions cut at maxCompletionLength (no stop token) get no loss (default false). */
  maskTruncatedCompletions?: boolean;
  /** Only tokens whose entropy is in the top fraction q of the step's tokens get loss (default 1: all). */
  topEntropyQuantile?: number;
  maxCompletionLength?: number;
  temperature?: number;
  topP?: number;
  topK?: number;
  /** Default ['accuracy', 'format']. */
  rewards?: readonly Reward[];
  rewardWeights?: readonly number[];
  /** DAPO's dynamic sampling: groups whose rewards are all equal are dropped and more prompts drawn (true: up to 4x the batch). */
  dynamicSampling?: boolean | { maxPrompts: number };
  /** 'grpo' (default), 't-grpo' (Video-R1's temporal reward), 'tw-grpo' (token weights from the group's divergence). */
  algorithm?: 'grpo' | 't-grpo' | 'tw-grpo';
  tGrpo?: { alpha?: number; mu?: number };
  twGrpo?: { alpha?: number };
  epochs?: number;
  maxSteps?: number;
  loraRank?: number;
  loraAlpha?: number;
  freezeVision?: boolean;
  recompute?: 'none' | 'layer';
  seed?: number;
  /** Extra metrics per step (reward per question type uses the row's `question_type`). */
}

/** One completion in the generation buffer. */
interface Sample {
  prompt: number;  // index into the buffer's prompts
  tokens: number[];
  logprobs: number[];
  /** The policy's entropy at each position when it sampled (at T; absent in buffers of older versions). */
  entropy?: number[];
  finish: 'stop' | 'length';
  text: string;
  rewards: (number | null)[];
  reward: number | null;
  advantage: number;
  old?: number[];
  bias?: number[];
  ref?: number[];
  weights?: number[];
}
interface Buffer {
  gen: number;
  rows: number[];  // row index of each prompt
  samples: Sample[];
  dropped: number;
  meta: Record<string, number>;
}

const mean = (a: readonly number[]) => (a.length ? a.reduce((x, y) => x + y, 0) / a.length : NaN);
const std = (a: readonly number[]) => {
  if (a.length < 2) return 0;
  const m = mean(a);
  return Math.sqrt(a.reduce((x, y) => x + (y - m) ** 2, 0) / (a.length - 1));
};

/** Group-normalised advantages with Bessel's std (null rewards: excluded, advantage 0), as groupAdvantages. */
export function advantagesOf(rewards: readonly (number | null)[], group: number, scale: AdvantageScale, eps = 1e-4): number[] {
  const out = new Array<number>(rewards.length).fill(0);
  const all = rewards.filter((r): r is number => r !== null);
  const batchStd = std(all);
  for (let g = 0; g * group < rewards.length; g++) {
    const rs = rewards.slice(g * group, (g + 1) * group);
    const live = rs.filter((r): r is number => r !== null);
    if (!live.length) continue;
    const m = mean(live), s = scale === 'batch' ? batchStd : std(live);
    const equal = live.every((r) => r === live[0]);
    rs.forEach((r, i) => {
      if (r === null || equal) return;
      out[g * group + i] = scale === 'none' ? r - m : (r - m) / (s + eps);
    });
  }
  return out;
}

/** Shuffles a video's temporal patch groups (T-GRPO's shuffled frames): rows of pixelValuesVideos grouped by t. */
function shuffleFrames(p: Prompt, rng: Rng): Prompt {
  if (!p.pixelValuesVideos || !p.videoGridThw) return p;
  const px = p.pixelValuesVideos, K = px.shape[1]!;
  const out = Tensor.empty(px.shape);
  const src = px.data as Float32Array, dst = out.data as Float32Array;
  let base = 0;
  for (const [t, h, w] of p.videoGridThw) {
    const per = h * w * K;
    const order = rng.shuffle(Array.from({ length: t }, (_, i) => i));
    order.forEach((o, i) => dst.set(src.subarray(base + o * per, base + (o + 1) * per), base + i * per));
    base += t * per;
  }
  return { ...p, pixelValuesVideos: out };
}


async function openModel(m: string | QwenModel, what: string, train?: TrainOptions): Promise<{ model: QwenModel; own: boolean }> {
  if (typeof m === 'string') {
    // A LoRA run folder holds an adapter over its base (adapter_config.json names the base).
    const ac = path.join(m, 'adapter_config.json');
    if (!existsSync(path.join(m, 'config.json')) && existsSync(ac)) {
      const base = (JSON.parse(readFileSync(ac, 'utf8')) as { base_model_name_or_path?: string }).base_model_name_or_path;
      if (!base) throw new RangeError(`Expected base_model_name_or_path in ${ac} (the ${what}'s base checkpoint)`);
      return { model: await loadModel(base, { adapter: m, ...(train ? { train } : {}) }), own: true };
    }
    return { model: await loadModel(m, train ? { train } : {}), own: true };
  }
  if (!m || typeof m !== 'object' || typeof (m as QwenModel).forward !== 'function') throw typeError(what, 'a checkpoint folder or a QwenModel', m);
  return { model: m, own: false };
}

/** Log-probs of each sample's tokens under `model` at temperature T (no gradient), in chunks of `chunk` samples. */
async function scoreSamples(model: QwenModel, prompts: readonly Prompt[], samples: readonly Sample[], chunk: number, T: number): Promise<number[][]> {
  const out: number[][] = [];
  for (let i = 0; i < samples.length; i += chunk) {
    const part = samples.slice(i, i + chunk);
    const batch = collate(part.map((s) => prompts[s.prompt]!), part.map((s) => s.tokens));
    const res = await model.forward({
      inputIds: batch.inputIds, attentionMask: batch.attentionMask, logits: 'none',
      ...mediaInputs(batch),
    });
    const sc = scoredTokens(batch);
    const h = gatherRows(res.hidden, sc.rows);
    const lp = await linearLogprobs(h, model.lmHead, sc.targets, { temperature: T });
    const v = lp.logprobs.data as Float32Array;
    for (let b = 0; b < part.length; b++) out.push(Array.from(v.subarray(sc.offsets[b]!, sc.offsets[b + 1]!)));
    h.dispose(); lp.logprobs.dispose(); lp.lse.dispose(); res.dispose(); batch.dispose();
  }
  return out;
}

/**
 * TW-GRPO's token weights: at each completion position, the KL divergence of each completion's
 * next-token distribution (softmax(logits / T)) to the group's mean one, min-max normalised over
 * the group into [1, alpha].
 */
async function tokenWeights(model: QwenModel, prompts: readonly Prompt[], group: readonly Sample[], alpha: number, T: number): Promise<number[][]> {
  const batch = collate(group.map((s) => prompts[s.prompt]!), group.map((s) => s.tokens));
  const res = await model.forward({
    inputIds: batch.inputIds, attentionMask: batch.attentionMask, logits: 'none',
    ...mediaInputs(batch),
  });
  const C = model.config.hiddenSize, V = model.config.vocabSize;
  const hid = res.hidden.data as Float32Array;
  const kl = group.map((s) => new Array<number>(s.tokens.length).fill(0));
  const maxLen = Math.max(...group.map((s) => s.tokens.length));
  for (let t = 0; t < maxLen; t++) {
    const who = group.map((s, i) => i).filter((i) => t < group[i]!.tokens.length);
    const h = Tensor.empty([who.length, C]);
    who.forEach((i, j) => (h.data as Float32Array).set(hid.subarray((i * batch.L + batch.starts[i]! + t - 1) * C, (i * batch.L + batch.starts[i]! + t) * C), j * C));
    const logits = ops.linear(h, model.lmHead);
    const lg = logits.data as Float32Array;
    const p = new Float64Array(who.length * V), mean = new Float64Array(V);
    for (let j = 0; j < who.length; j++) {
      let m = -Infinity;
      for (let v = 0; v < V; v++) m = Math.max(m, lg[j * V + v]! / T);
      let z = 0;
      for (let v = 0; v < V; v++) z += (p[j * V + v] = Math.exp(lg[j * V + v]! / T - m));
      for (let v = 0; v < V; v++) { p[j * V + v]! /= z; mean[v]! += p[j * V + v]! / who.length; }
    }
    who.forEach((i, j) => {
      let d = 0;
      for (let v = 0; v < V; v++) { const q = p[j * V + v]!; if (q > 0) d += q * Math.log(q / Math.max(mean[v]!, 1e-300)); }
      kl[i]![t] = d;
    });
    h.dispose(); logits.dispose();
  }
  res.dispose(); batch.dispose();
  const flat = kl.flat();
  const lo = Math.min(...flat), hi = Math.max(...flat);
  return kl.map((row) => row.map((d) => (hi > lo ? 1 + (alpha - 1) * (d - lo) / (hi - lo) : 1)));
}

/** GRPO-family training from code; resolves when the run is done (or stopped). */
export async function trainGrpo(options: RlOptions): Promise<LoopResult> {
  const o = checkOptions('options', options);
  const G = checkInteger('numGenerations', o.numGenerations ?? 8, 1, 4096);
  const Bp = checkInteger('promptsPerStep', o.promptsPerStep ?? 1, 1, 4096);
  const spg = checkInteger('stepsPerGeneration', o.stepsPerGeneration ?? 1, 1, 4096);
  const mu = checkInteger('numIterations', o.numIterations ?? 1, 1, 1024);
  const accum = checkInteger('gradAccum', o.gradAccum ?? 1, 1, 1 << 16);
  if ((Bp * G) % accum) throw new RangeError(`Expected gradAccum to divide the completions of a step (promptsPerStep x numGenerations = ${Bp * G}) but received ${accum}`);
  const seed = checkInteger('seed', o.seed ?? 0, 0, 2 ** 32 - 1);
  const maxLen = checkInteger('maxCompletionLength', o.maxCompletionLength ?? 256, 1, 1 << 20);
  const temperature = checkNumber('temperature', o.temperature ?? 1, 0, 100);
  const topP = checkNumber('topP', o.topP ?? 1, 0, 1, { exclusiveMin: true });
  const topK = checkInteger('topK', o.topK ?? 0, 0);
  // The policy is scored at the sampling temperature, as TRL and verl do (logits / T): its
  // log-probs, the bias / reference models', the entropy and the loss are those of the
  // distribution the completions were drawn from (T = 1 for greedy rollouts).
  const T = temperature > 0 ? temperature : 1;
  const lossType = checkOneOf('lossType', o.lossType ?? 'grpo', ['grpo', 'bnpo', 'dr_grpo', 'dapo']);
  const scale = checkOneOf('scaleRewards', o.scaleRewards ?? 'group', ['group', 'batch', 'none']);
  const algorithm = checkOneOf('algorithm', o.algorithm ?? 'grpo', ['grpo', 't-grpo', 'tw-grpo']);
  const maskTrunc = o.maskTruncatedCompletions === undefined ? false : checkBoolean('maskTruncatedCompletions', o.maskTruncatedCompletions);
  // A completion that carries no loss: cut at maxCompletionLength under maskTruncatedCompletions, or without a reward.
  const dropped = (s: Sample) => (maskTrunc && s.finish === 'length') || s.reward === null;
  const topEnt = checkNumber('topEntropyQuantile', o.topEntropyQuantile ?? 1, 0, 1, { exclusiveMin: true });
  const rewards = o.rewards ?? (['accuracy', 'format'] as Reward[]);
  if (!Array.isArray(rewards) || rewards.length === 0) throw typeError('rewards', 'a non-empty array of rewards', rewards);
  rewards.forEach((r, i) => {
    if (r !== 'format' && r !== 'accuracy' && typeof r !== 'function' && !(r && typeof r === 'object' && typeof (r as { fn?: unknown }).fn === 'function')) {
      throw typeError(`rewards[${i}]`, "'format', 'accuracy', a function or { name, fn }", r);
    }
  });
  const weights = o.rewardWeights ?? rewards.map(() => 1);
  if (!Array.isArray(weights) || weights.length !== rewards.length) throw typeError('rewardWeights', `one weight per reward (${rewards.length})`, weights);
  weights.forEach((w, i) => checkNumber(`rewardWeights[${i}]`, w));
  const names = rewards.map((r, i) => rewardName(r, i));
  const dyn = o.dynamicSampling === undefined || o.dynamicSampling === false ? 0
    : o.dynamicSampling === true ? 4 * Bp * spg : checkInteger('dynamicSampling.maxPrompts', o.dynamicSampling.maxPrompts, 1);
  const tAlpha = checkNumber('tGrpo.alpha', o.tGrpo?.alpha ?? 0.3, 0), tMu = checkNumber('tGrpo.mu', o.tGrpo?.mu ?? 0.8, 0);
  const twAlpha = checkNumber('twGrpo.alpha', o.twGrpo?.alpha ?? 1.7, 1);

  const rows = loadRows(o, 'RL');
  const pol = await openModel(o.model, 'model', trainConfig(o));
  const model = pol.model;
  if (!model.training) throw new TypeError('Expected a policy loaded with { train } (or a checkpoint folder)');
  const tok = model.tokenizer;
  if (!tok) throw new TypeError('Expected a policy with a tokenizer (tokenizer.json in the checkpoint folder)');
  const bias = o.biasModel !== undefined ? await openModel(o.biasModel, 'biasModel') : undefined;
  const betaBias = checkNumber('betaBias', o.betaBias ?? (bias ? 0.01 : 0), 0);
  if (betaBias > 0 && !bias) throw new TypeError('Expected a biasModel for betaBias > 0');
  const betaRef = checkNumber('betaRef', o.betaRef ?? 0, 0);
  const ref = betaRef > 0 ? await openModel(o.refModel ?? (typeof o.model === 'string' ? o.model : (() => { throw new TypeError('Expected refModel (a folder or model) with betaRef > 0 when the policy is given as a model'); })()), 'refModel') : undefined;
  for (const [m, what] of [[bias?.model, 'biasModel'], [ref?.model, 'refModel']] as const) {
    if (m && m.config.vocabSize !== model.config.vocabSize) throw new RangeError(`Expected the ${what} to share the policy's vocabulary (${model.config.vocabSize}) but it has ${m.config.vocabSize}`);
  }
  const stop = new Set(tok.eosTokenIds);
  const n = rows.length;
  const perGen = Bp * spg;
  const epochs = checkNumber('epochs', o.epochs ?? 1, 0, 1e6, { exclusiveMin: true });
  const steps = o.maxSteps !== undefined ? checkInteger('maxSteps', o.maxSteps, 1) : Math.max(1, Math.ceil((epochs * n) / Bp) * mu);
  const cache = new PromptCache(model, rows, o.videoOptions ? { videoOptions: o.videoOptions } : {});
  const orders = new Map<number, Int32Array>();
  const rowAtCursor = (c: number) => {
    const e = Math.floor(c / n);
    let ord = orders.get(e);
    if (!ord) { const a = Array.from({ length: n }, (_, i) => i); new Rng(hash32(seed, e, 0x91)).shuffle(a); ord = Int32Array.from(a); orders.set(e, ord); }
    return ord[c % n]!;
  };
  let cursor = 0;  // prompts drawn so far (dynamic sampling draws more than perGen per batch)
  let buf: Buffer | null = null;
  const timing = { rollout: 0, scoring: 0, train: 0 };
  const chunk = Math.max(1, (Bp * G) / accum);

  const generate = async (gen: number): Promise<Buffer> => {
    const t0 = performance.now();
    const chosen: number[] = [];
    const samples: Sample[] = [];
    let dropped = 0, drawn = 0;
    const meta: Record<string, number> = {};
    const temporalStats: [number, number, number][] = [];
    while (chosen.length < perGen) {
      const want = perGen - chosen.length;
      const idx = Array.from({ length: want }, () => rowAtCursor(cursor++));
      drawn += want;
      const prompts = await cache.get(idx, o.signal);
      const keys = idx.map((_, j) => hash32(seed, gen, drawn - want + j));
      const outs = await rollout(model, prompts.map((p, j) => rolloutPrompt(p, keys[j]!)), { n: G, maxNewTokens: maxLen, temperature, topP, topK, seed, stop, entropy: true, ...(o.signal ? { signal: o.signal } : {}) });
      // T-GRPO: G/2 completions on shuffled frames feed p~ only.
      let shuffledAcc: number[] = [];
      if (algorithm === 't-grpo') {
        const half = Math.max(1, Math.floor(G / 2));
        const shuffled = prompts.map((p, j) => shuffleFrames(p, new Rng(hash32(seed, gen, keys[j]!, 0x7))));
        const so = await rollout(model, shuffled.map((p, j) => rolloutPrompt(p, keys[j]! ^ 0x5bd1e995)), { n: half, maxNewTokens: maxLen, temperature, topP, topK, seed, stop, ...(o.signal ? { signal: o.signal } : {}) });
        shuffledAcc = await Promise.all(so.map(async (grp, j) => mean(await Promise.all(grp.map(async (s) =>
          (await evalReward('accuracy', tok.decode(s.tokens), prompts[j]!.row.row, { tokens: s.tokens, sample: 0, numGenerations: half, step: gen, finishReason: s.finishReason })) ?? 0)))));
        shuffled.forEach((p, j) => { if (p !== prompts[j]) p.pixelValuesVideos?.dispose(); });
      }
      for (let j = 0; j < prompts.length; j++) {
        const row = prompts[j]!.row.row;
        const group: Sample[] = [];
        for (let i = 0; i < G; i++) {
          const s = outs[j]![i]!;
          const text = tok.decode(s.tokens);
          const ctx = { tokens: s.tokens, sample: i, numGenerations: G, step: gen, finishReason: s.finishReason };
          const rs = await Promise.all(rewards.map((r) => evalReward(r, text, row, ctx)));
          const total = rs.some((r) => r === null) ? null : rs.reduce((a: number, r, k) => a + weights[k]! * r!, 0);
          group.push({ prompt: -1, tokens: s.tokens, logprobs: s.logprobs, entropy: s.entropies!, finish: s.finishReason, text, rewards: rs, reward: total, advantage: 0 });
        }
        let temporal: [number, number, number] | undefined;  // p, p~, bonus given
        if (algorithm === 't-grpo') {
          const acc = await Promise.all(group.map((s) => evalReward('accuracy', s.text, row, { tokens: s.tokens, sample: 0, numGenerations: G, step: gen, finishReason: s.finish })));
          const p = mean(acc.map((a) => a ?? 0));
          const bonus = p >= tMu * shuffledAcc[j]!;
          if (bonus) group.forEach((s, i) => { if ((acc[i] ?? 0) > 0 && s.reward !== null) s.reward += tAlpha; });
          temporal = [p, shuffledAcc[j]!, bonus ? 1 : 0];
        }
        const live = group.map((s) => s.reward).filter((r): r is number => r !== null);
        if (dyn && live.every((r) => r === live[0]) && drawn < dyn) { dropped++; continue; }
        const pi = chosen.length;
        if (temporal) temporalStats.push(temporal);
        chosen.push(idx[j]!);
        for (const s of group) { s.prompt = pi; samples.push(s); }
        if (chosen.length === perGen) break;
      }
    }
    timing.rollout += (performance.now() - t0) / 1000;
    const t1 = performance.now();
    const adv = advantagesOf(samples.map((s) => s.reward), G, scale);
    samples.forEach((s, i) => { s.advantage = adv[i]!; });
    const prompts = await cache.get(chosen, o.signal);
    if (mu > 1 || spg > 1) (await scoreSamples(model, prompts, samples, chunk, T)).forEach((l, i) => { samples[i]!.old = l; });
    if (bias) (await scoreSamples(bias.model, prompts, samples, chunk, T)).forEach((l, i) => { samples[i]!.bias = l; });
    if (ref) (await scoreSamples(ref.model, prompts, samples, chunk, T)).forEach((l, i) => { samples[i]!.ref = l; });
    if (algorithm === 'tw-grpo') {
      for (let g = 0; g < chosen.length; g++) {
        const grp = samples.slice(g * G, (g + 1) * G);
        (await tokenWeights(model, prompts, grp, twAlpha, T)).forEach((w, i) => { grp[i]!.weights = w; });
      }
    }
    timing.scoring += (performance.now() - t1) / 1000;
    // Metrics of the generation batch.
    names.forEach((nm, k) => {
      const v = samples.map((s) => s.rewards[k]).filter((r): r is number => r !== null);
      meta[`reward/${nm}/mean`] = mean(v);
      meta[`reward/${nm}/std`] = std(v);
    });
    const all = samples.map((s) => s.reward).filter((r): r is number => r !== null);
    meta.reward = mean(all);
    meta.rewardStd = std(all);
    // Per question type: the samples' accuracy, and the share of prompts whose G samples are all
    // wrong (they get no advantage and so no repair: the way a shortcut settles in, such
    // inferential prompts rise under GRPO).
    const acc = names.indexOf('accuracy');
    if (acc >= 0) {
      const types = new Map<string, { accs: number[]; wrong: number; groups: number }>();
      for (let g = 0; g < chosen.length; g++) {
        const grp = samples.slice(g * G, (g + 1) * G);
        const qt = String(prompts[grp[0]!.prompt]!.row.row.question_type ?? 'all');
        const t = types.get(qt) ?? { accs: [], wrong: 0, groups: 0 };
        for (const s of grp) if (s.rewards[acc] !== null) t.accs.push(s.rewards[acc]!);
        t.groups++;
        if (grp.every((s) => s.rewards[acc] === 0)) t.wrong++;
        types.set(qt, t);
      }
      for (const [qt, t] of types) {
        if (t.accs.length) meta[`accuracy/${qt}`] = mean(t.accs);
        meta[`allWrong/${qt}`] = t.wrong / t.groups;
      }
    }
    meta.completionLength = mean(samples.map((s) => s.tokens.length));
    meta.truncated = mean(samples.map((s) => (s.finish === 'length' ? 1 : 0)));
    let dead = 0;
    for (let g = 0; g < chosen.length; g++) {
      const v = samples.slice(g * G, (g + 1) * G).map((s) => s.reward);
      if (v.every((r) => r === v[0])) dead++;
    }
    meta.equalRewardGroups = dead / chosen.length;
    meta.droppedGroups = dropped;
    // T-GRPO: accuracy on ordered and on shuffled frames, and the share of groups given the bonus.
    if (temporalStats.length) {
      meta['temporal/ordered'] = mean(temporalStats.map((x) => x[0]));
      meta['temporal/shuffled'] = mean(temporalStats.map((x) => x[1]));
      meta['temporal/bonus'] = mean(temporalStats.map((x) => x[2]));
    }
    return { gen, rows: chosen, samples, dropped, meta };
  };

  const task: TrainTask = {
    async microStep(step, micro, micros) {
      const gen = Math.floor(step / (spg * mu));
      if (!buf || buf.gen !== gen) buf = await generate(gen);
      const b = buf;
      const j = step - gen * spg * mu, slice = j % spg;
      const stepSamples = b.samples.slice(slice * Bp * G, (slice + 1) * Bp * G);
      const part = stepSamples.slice(micro * chunk, (micro + 1) * chunk);
      const t0 = performance.now();
      const prompts = await cache.get(b.rows, o.signal);
      const batch = collate(part.map((s) => prompts[s.prompt]!), part.map((s) => s.tokens));
      const out = await model.forward({
        inputIds: batch.inputIds, attentionMask: batch.attentionMask, logits: 'none', grad: true,
        ...mediaInputs(batch),
      });
      const sc = scoredTokens(batch);
      const h = gatherRows(out.hidden, sc.rows);
      const pack = (f: (s: Sample) => readonly number[] | undefined) => (part.every((s) => f(s)) ? Float32Array.from(part.flatMap((s) => f(s)!)) : undefined);
      const inputs = {
        advantages: Float32Array.from(part.map((s) => s.advantage)), seqOffsets: sc.offsets,
        betaBias, betaRef, lossType, importanceSampling: o.importanceSampling ?? 'token',
        ...(o.epsLow !== undefined ? { epsLow: o.epsLow } : {}), ...(o.epsHigh !== undefined ? { epsHigh: o.epsHigh } : {}),
        ...(o.delta !== undefined ? { delta: o.delta } : {}), ...(o.klClamp !== undefined ? { klClamp: o.klClamp } : {}),
        ...(lossType === 'dr_grpo' ? { maxCompletionLength: maxLen } : {}),
        // dapo divides by the step's tokens that carry loss (masked completions' do not: masked.ts).
        ...(lossType === 'dapo' ? { activeTokens: Math.max(1, stepSamples.reduce((a, s) => a + (dropped(s) ? 0 : s.tokens.length), 0)) } : {}),
      };
      const old = pack((s) => s.old), biasLp = pack((s) => s.bias), refLp = pack((s) => s.ref);
      if (old) Object.assign(inputs, { oldLogprobs: old });
      if (biasLp) Object.assign(inputs, { biasLogprobs: biasLp });
      if (refLp) Object.assign(inputs, { refLogprobs: refLp });
      // Token weights: truncation masks, the entropy quantile, TW-GRPO's weights.
      let w: Float32Array | undefined;
      const N = sc.targets.length;
      const needW = maskTrunc || topEnt < 1 || algorithm === 'tw-grpo' || part.some((s) => s.reward === null);
      const head = model.lmHeadGrad;
      let loss: number, metrics: Record<string, number>, dHidden: Tensor;
      // The fused loss (one pass over the LM head) serves the plain case: no token weights, a
      // trainable head, one micro-batch (its gradient cannot be scaled for several).
      if (!needW && head && micros === 1) {
        const r = await linearCdpo({ hidden: h, weight: model.lmHead, targets: sc.targets, temperature: T, dWeight: head, accumulate: micro > 0, ...inputs });
        loss = r.loss;
        metrics = { ...(r.metrics as unknown as Record<string, number>), lossTokens: 1 };
        // The entropy from the rollout's own logits: the same distribution when the policy has not
        // moved since it sampled (numIterations = stepsPerGeneration = 1), the sampling policy's
        // otherwise; a second pass through the LM head here would cost a third of this kernel.
        if (part.every((s) => s.entropy && s.entropy.length === s.tokens.length)) metrics.entropy = mean(part.flatMap((s) => s.entropy!));
        dHidden = r.dHidden;
        r.logprobs.dispose();
      } else {
        const lp = await linearLogprobs(h, model.lmHead, sc.targets, { entropy: true, temperature: T });
        // Completions masked out (truncated under maskTruncatedCompletions, or without a reward)
        // leave the loss and its normalisers as TRL's completion mask does (masked.ts).
        const r = await maskedCdpoLoss({ ...inputs, logprobs: lp.logprobs.data as Float32Array, seqOffsets: Int32Array.from(sc.offsets),
          ...(old ? { oldLogprobs: old } : {}), ...(biasLp ? { biasLogprobs: biasLp } : {}), ...(refLp ? { refLogprobs: refLp } : {}) }, part.map((s) => !dropped(s)));
        w = new Float32Array(N).fill(1);
        part.forEach((s, i) => {
          for (let k = sc.offsets[i]!; k < sc.offsets[i + 1]!; k++) {
            if (dropped(s)) w![k] = 0;
            else if (s.weights) w![k] = s.weights[k - sc.offsets[i]!]!;
          }
        });
        if (topEnt < 1) {
          const ent = Array.from(lp.entropy!.data as Float32Array);
          const sorted = [...ent].sort((a, b) => a - b);
          const thr = sorted[Math.min(sorted.length - 1, Math.floor((1 - topEnt) * sorted.length))]!;
          ent.forEach((e, k) => { if (e < thr) w![k] = 0; });
        }
        // dapo's normaliser is already the whole step's token count (activeTokens): its micro-batches'
        // losses add up to the step's, so neither the gradient nor the loss is divided by micros
        // (the loop averages the losses it is given: it gets micros x this micro-batch's share).
        const perMicro = lossType === 'dapo' ? 1 : micros;
        const d = r.dLogprobs;
        for (let k = 0; k < N; k++) d[k]! *= w[k]! / perMicro;
        const dT = Tensor.from(d);
        const g = await linearLogprobsBackward(h, model.lmHead, sc.targets, lp.lse, dT, { temperature: T, ...(head ? { dWeight: head, accumulate: micro > 0 } : { weightGrad: false }) });
        loss = lossType === 'dapo' ? r.loss * micros : r.loss;
        let kept = 0;
        for (let k = 0; k < N; k++) if (w[k]! > 0) kept++;
        metrics = { ...(r.metrics ? r.metrics as unknown as Record<string, number> : {}), entropy: mean(Array.from(lp.entropy!.data as Float32Array)), lossTokens: N ? kept / N : 0 };
        dHidden = g.dHidden;
        for (const t of [lp.logprobs, lp.lse, lp.entropy!, dT]) t.dispose();
      }
      const dh = scatterRows(dHidden, sc.rows, out.hidden.shape);
      await model.backward(out, { dHidden: dh });
      for (const t of [h, dHidden, dh]) t.dispose();
      out.dispose();
      batch.dispose();
      timing.train += (performance.now() - t0) / 1000;
      const m: Record<string, number> = {};
      for (const [k, v] of Object.entries(metrics)) if (typeof v === 'number') m[k] = v;
      return { loss, tokens: batch.lengths.reduce((a, x) => a + x, 0), metrics: m };
    },
    stepMetrics() {
      const m: Record<string, number> = { ...(buf?.meta ?? {}), rolloutSeconds: timing.rollout, scoringSeconds: timing.scoring, trainSeconds: timing.train };
      timing.rollout = timing.scoring = timing.train = 0;
      return m;
    },
    saveState(dir: string) {
      writeFileSync(path.join(dir, 'rl_state.json'), JSON.stringify({ cursor, buffer: buf && { ...buf, samples: buf.samples } }));
    },
    loadState(dir: string) {
      const f = path.join(dir, 'rl_state.json');
      if (!existsSync(f)) return;
      const s = JSON.parse(readFileSync(f, 'utf8')) as { cursor: number; buffer: Buffer | null };
      cursor = s.cursor;
      buf = s.buffer;
    },
  };
  try {
    return await trainLoop(model, task, { ...o, steps, gradAccum: accum });
  } finally {
    cache.dispose();
    if (pol.own) { model.dispose(); model.checkpoint?.dispose(); }
    for (const x of [bias, ref]) if (x?.own) { x.model.dispose(); x.model.checkpoint?.dispose(); }
  }
}

/** Bias-Aware Training: GRPO without KL on the rows of one question type (default observational). */
export async function trainBias(options: RlOptions & { questionField?: string; questionValue?: string }): Promise<LoopResult> {
  const o = checkOptions('options', options);
  const field = o.questionField ?? 'question_type', value = o.questionValue ?? 'observational';
  const user = o.filter;
  return trainGrpo({ ...o, betaRef: 0, betaBias: 0, filter: (r) => r[field] === value && (!user || user(r)) });
}

/** CDPO: GRPO pushed away from a frozen bias model (betaBias default 0.01, the paper's). */
export async function trainCdpo(options: RlOptions): Promise<LoopResult> {
  const o = checkOptions('options', options);
  if (o.biasModel === undefined) throw new TypeError('Expected biasModel (the bias model: a train-bias run folder or checkpoint) for trainCdpo');
  return trainGrpo(o);
}
