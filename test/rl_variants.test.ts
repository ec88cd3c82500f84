// The RL trainers' variants, each through the public API or the CLI as a user runs them:
// rollout() (n samples per prompt whose log-probs and entropies are the model's own), T-GRPO (a
// shuffled-frames rollout of n/2 per prompt, whose accuracy decides the +alpha bonus), TW-GRPO
// (token weights equal to the group-divergence formula in float64), DAPO's dynamic sampling,
// maskTruncatedCompletions and topEntropyQuantile (which tokens carry loss, read off the update of
// the embedding rows: a token's row moves only when a later position of its own completion has
// loss), the loss types against a float64 loss, the entropy metric of the fused loss, trainBias
// from code and `videothinker train-bias`, and `videothinker plot`.
import { spawnSync } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { test } from 'uvu';
import * as assert from 'uvu/assert';

import { initModel, loadModel, preparePrompt, readSafetensors, rollout, synth, Tensor, trainBias, trainGrpo, writeSafetensors,
  type QwenModel, type RewardContext, type RlOptions, type RolloutPrompt } from '../src/index.js';
import { buildPrompt } from '../src/data/prompt.js';
import { reference } from './cdpo_ref.js';
import { skip } from './skip.js';

const ROOT = path.join(path.dirname(fileURLToPath(import.meta.url)), '..');
const TSX = import.meta.resolve('tsx');
const HAVE_FFMPEG = spawnSync('ffmpeg', ['-version']).status === 0;
const CLI = (args: string[], cwd: string) => spawnSync(process.execPath, ['--import', TSX, path.join(ROOT, 'src', 'cli', 'index.ts'), ...args], { cwd, encoding: 'utf8' });

let DIR = '';
const at = (...p: string[]) => path.join(DIR, ...p);
const jsonl = (f: string) => readFileSync(f, 'utf8').trim().split('\n').map((l) => JSON.parse(l) as Record<string, number>);

/** Text question rows: lane i's ball, alternating observational / inferential, colours cycling. */
const COLOURS = ['red', 'green', 'blue', 'yellow'];
const textRows = (n: number, extra: (i: number) => Record<string, unknown> = () => ({})) => Array.from({ length: n }, (_, i) => ({
  problem_id: i, problem: `Which ball is in lane ${(i % 4) + 1}?`, options: ['A. red', 'B. green', 'C. blue', 'D. yellow'], solution: `<answer>${'ABCD'[i % 4]}</answer>`,
  problem_type: 'multiple choice', question_type: i % 2 ? 'inferential' : 'observational', data_type: 'text', colour: COLOURS[i % 4], ...extra(i),
}));

/** A reward that differs between every completion of a group (its sample index): every advantage is non-zero. */
const byIndex = (_c: string, _r: unknown, ctx: RewardContext) => ctx.sample;

test.before(async () => {
  if (!HAVE_FFMPEG) return;
  DIR = mkdtempSync(path.join(tmpdir(), 'vt-rlv-'));
  await synth({ out: at('data'), train: 4, test: 0, variant: 0, seed: 5, concurrency: 1 });
  const tiny = { tokenizer: at('data', 'tokenizer.json'), preset: 'tiny' as const, layers: 2, hiddenSize: 32, heads: 2, kvHeads: 1 };
  await initModel({ ...tiny, out: at('base'), seed: 11 });
  await initModel({ ...tiny, out: at('other'), seed: 12 });
  // `stoppy`: the base model whose generation_config names a third of the word tokens as stop
  // tokens, so that some completions stop and others run to the length limit.
  cpSync(at('base'), at('stoppy'), { recursive: true });
  const gen = JSON.parse(readFileSync(at('base', 'generation_config.json'), 'utf8')) as Record<string, unknown>;
  writeFileSync(at('stoppy', 'generation_config.json'), JSON.stringify({ ...gen, eos_token_id: Array.from({ length: 50 }, (_, i) => 3 * i + 1) }));
  // `sharp`: a tiny model with its attention weights scaled up 8x, so that its attention is far
  // from uniform and its greedy completion of a video depends on the frames' order.
  await initModel({ tokenizer: at('data', 'tokenizer.json'), preset: 'tiny', out: at('sharp'), seed: 1 });
  const f = readSafetensors(at('sharp', 'model.safetensors'));
  const t = new Map<string, Tensor>();
  for (const [k, w] of f.tensors) t.set(k, Tensor.from(Float32Array.from(w.data as Float32Array, (v) => (/self_attn\.[qkvo]_proj\.weight$/.test(k) ? 8 * v : v)), w.shape));
  f.dispose();
  writeSafetensors(at('sharp', 'model.safetensors'), t);
  for (const x of t.values()) x.dispose();
  writeFileSync(at('rows.json'), JSON.stringify(textRows(8)));
});
test.after(() => { if (DIR) rmSync(DIR, { recursive: true, force: true }); });

interface BufferSample { prompt: number; tokens: number[]; logprobs: number[]; entropy?: number[]; finish: 'stop' | 'length'; text: string; rewards: (number | null)[];
  reward: number | null; advantage: number; bias?: number[]; weights?: number[] }
interface Buffer { gen: number; rows: number[]; samples: BufferSample[]; dropped: number; meta: Record<string, number> }

/** One GRPO-family run of `maxSteps` (default 1) on the base model with settings a test can check exactly. */
async function run(name: string, o: Partial<RlOptions> & Record<string, unknown>, fn: (o: never) => Promise<unknown> = trainGrpo) {
  const out = at('runs', name);
  await fn({
    model: at('base'), data: at('rows.json'), out, maxSteps: 1, saveEvery: 1, saveDtype: 'f32', progress: false, lr: 1e-3, maxGradNorm: 0,
    adamw: { weightDecay: 0 }, seed: 3, numGenerations: 4, maxCompletionLength: 6, rewards: [byIndex], ...o,
  } as never);
  return {
    out, metrics: jsonl(path.join(out, 'metrics.jsonl')),
    buffer: (step = 1) => (JSON.parse(readFileSync(path.join(out, `checkpoint-${step}`, 'rl_state.json'), 'utf8')) as { buffer: Buffer }).buffer,
  };
}

const weight = (file: string, name: string) => {
  const f = readSafetensors(file);
  const v = Float32Array.from(f.tensors.get(name)!.data as Float32Array);
  f.dispose();
  return v;
};

/** The chat prompt ids of a text row, as the trainer builds them. */
async function promptIds(m: QwenModel, row: Parameters<typeof buildPrompt>[0]): Promise<Int32Array> {
  return (await preparePrompt(m.config, m.tokenizer!, m.processor, { prompt: buildPrompt(row) })).inputIds;
}

/** Float64 softmax of the model's logits at each completion position: probs[j] predicts tokens[j] (temperature T). */
async function distributions(m: QwenModel, prompt: Int32Array, tokens: readonly number[], T = 1, media: Partial<RolloutPrompt> = {}): Promise<Float64Array[]> {
  const ids = Tensor.from(Int32Array.from([...prompt, ...tokens]), [1, prompt.length + tokens.length]);
  const o = await m.forward({ inputIds: ids, logits: 'all', ...(media.pixelValuesVideos ? { pixelValuesVideos: media.pixelValuesVideos, videoGridThw: media.videoGridThw!, secondPerGridTs: media.secondPerGridTs! } : {}) });
  const V = m.config.vocabSize, lg = o.logits!.data as Float32Array;
  const out = tokens.map((_, j) => {
    const row = lg.subarray((prompt.length - 1 + j) * V, (prompt.length + j) * V);
    let mx = -Infinity;
    for (const v of row) mx = Math.max(mx, v / T);
    const p = Float64Array.from(row, (v) => Math.exp(v / T - mx));
    const z = p.reduce((a, b) => a + b, 0);
    return p.map((v) => v / z);
  });
  o.dispose(); ids.dispose();
  return out;
}
const entropyOf = (p: Float64Array) => -p.reduce((a, q) => a + (q > 0 ? q * Math.log(q) : 0), 0);

/**
 * Which tokens carried loss, read off the embedding table after one AdamW step (no weight decay,
 * no clipping): the row of a completion token moves exactly when a later position of its own
 * completion had loss (the positions that attend to it), and stays bitwise where none had (the
 * first AdamW step of a zero gradient is zero). `kept[i][k]`: whether token k of sample i had loss.
 * Tokens of the prompts are left out (every loss reaches them).
 */
function checkLossPositions(what: string, before: Float32Array, after: Float32Array, C: number, prompts: readonly Int32Array[], samples: readonly BufferSample[], kept: readonly boolean[][]) {
  const inPrompt = new Set(prompts.flatMap((p) => [...p]));
  const reached = new Set<number>(), informative = new Set<number>(), seen = new Set<number>();
  samples.forEach((s, i) => {
    const last = kept[i]!.lastIndexOf(true);
    s.tokens.forEach((tk, j) => {
      if (inPrompt.has(tk)) return;
      seen.add(tk);
      if (j < last) reached.add(tk);
    });
  });
  const moved = (tk: number) => before.subarray(tk * C, (tk + 1) * C).some((v, c) => v !== after[tk * C + c]);
  for (const tk of seen) {
    assert.is(moved(tk), reached.has(tk), `${what}: embedding row of token ${tk} ${reached.has(tk) ? 'moves' : 'stays'}`);
    // Rows that stay although the token fed a later position of its completion: the loss was off there.
    if (!reached.has(tk) && samples.some((s) => s.tokens.slice(0, -1).includes(tk))) informative.add(tk);
  }
  return { reached: reached.size, informative: informative.size };
}

test('rollout(): n samples per prompt; their tokens, log-probs and entropies are the model\'s own; a row never depends on its batch', async () => {
  if (!DIR) return skip('ffmpeg (Debian package ffmpeg) is not on PATH');
  const m = await loadModel(at('base'));
  try {
    const rows = textRows(2);
    rows[1]!.problem = 'A much longer question about which of the balls in all the lanes would finish first?';
    const prompts = await Promise.all(rows.map((r) => promptIds(m, r)));
    assert.ok(prompts[0]!.length !== prompts[1]!.length, 'prompts of two lengths (left padding in the batch)');
    const stop = new Set(m.tokenizer!.eosTokenIds);
    const opts = { n: 3, maxNewTokens: 6, temperature: 0.8, topP: 1, topK: 0, seed: 42, stop, entropy: true };
    const r = await rollout(m, prompts.map((p, i) => ({ inputIds: p, key: 7 + i })), opts);
    assert.is(r.length, 2);
    for (let p = 0; p < 2; p++) {
      assert.is(r[p]!.length, 3, 'n samples per prompt');
      assert.ok(new Set(r[p]!.map((s) => s.tokens.join(','))).size > 1, 'the samples of a prompt differ');
      for (const s of r[p]!) {
        assert.ok(s.tokens.length >= 1 && s.tokens.length <= 6);
        assert.is(s.logprobs.length, s.tokens.length);
        assert.is(s.entropies!.length, s.tokens.length);
        s.tokens.slice(0, -1).forEach((tk) => assert.not.ok(stop.has(tk), 'a stop token ends the completion'));
        assert.is(s.finishReason, stop.has(s.tokens.at(-1)!) ? 'stop' : 'length');
        if (s.finishReason === 'length') assert.is(s.tokens.length, 6);
        assert.not.ok(s.tokens.includes(m.config.imageTokenId) || s.tokens.includes(m.config.videoTokenId), 'no vision placeholder sampled');
        // The model's own scoring of prompt + completion, in float64: log softmax(logits / T) at
        // the sampled token and the entropy of softmax(logits / T).
        const pT = await distributions(m, prompts[p]!, s.tokens, 0.8);
        s.tokens.forEach((tk, j) => {
          assert.ok(Math.abs(s.logprobs[j]! - Math.log(pT[j]![tk]!)) < 1e-4, `log-prob of token ${j}: ${s.logprobs[j]} vs ${Math.log(pT[j]![tk]!)}`);
          assert.ok(Math.abs(s.entropies![j]! - entropyOf(pT[j]!)) < 1e-4, `entropy at ${j}: ${s.entropies![j]} vs ${entropyOf(pT[j]!)}`);
        });
      }
    }
    // A row draws from stream (seed, key, sample) only: the second prompt alone samples the same.
    const alone = await rollout(m, [{ inputIds: prompts[1]!, key: 8 }], opts);
    assert.equal(alone[0]!.map((s) => s.tokens), r[1]!.map((s) => s.tokens));
    assert.not.ok('entropies' in (await rollout(m, [{ inputIds: prompts[1]!, key: 8 }], { ...opts, entropy: false }))[0]![0]!, 'entropies only when asked');
    // Greedy: every sample is the argmax path, which top-k 1 at temperature 1 also gives.
    const greedy = await rollout(m, [{ inputIds: prompts[0]! }], { ...opts, temperature: 0 });
    const top1 = await rollout(m, [{ inputIds: prompts[0]!, key: 99 }], { ...opts, temperature: 1, topK: 1 });
    const path0 = greedy[0]![0]!.tokens;
    for (const s of [...greedy[0]!, ...top1[0]!]) assert.equal(s.tokens, path0);
    const d = await distributions(m, prompts[0]!, path0);
    path0.forEach((tk, j) => assert.is(tk, d[j]!.indexOf(Math.max(...d[j]!)), `greedy token ${j} is the argmax`));
  } finally { m.dispose(); m.checkpoint.dispose(); }
});

test('T-GRPO: n/2 completions on shuffled frames feed p~; the +alpha bonus follows p >= mu p~, so it depends on frame order', async () => {
  if (!DIR) return skip('ffmpeg (Debian package ffmpeg) is not on PATH');
  const video = (JSON.parse(readFileSync(at('data', 'train.json'), 'utf8')) as Record<string, unknown>[])[0]!;
  const withSolution = (name: string, solution: string) => {
    writeFileSync(at('data', `${name}.json`), JSON.stringify([{ ...video, solution: `<answer>${solution}</answer>` }]));
    return at('data', `${name}.json`);
  };
  // Greedy decoding: the ordered completions are the model's argmax on ordered frames, the
  // shuffled ones its argmax on shuffled frames. The trainer's prefills and decode steps are recorded.
  const tg = (data: string, extra: Partial<RlOptions> = {}) => async (name: string) => {
    const m = await loadModel(at('sharp'), { train: true });
    const calls: { ids: Int32Array; rows: number; px?: Tensor; grid?: RolloutPrompt['videoGridThw']; ts?: readonly number[] }[] = [];
    const forward = m.forward.bind(m);
    m.forward = ((inp: Parameters<QwenModel['forward']>[0], signal?: AbortSignal) => {
      if (inp.cache) {
        const ids = inp.inputIds as Tensor, px = inp.pixelValuesVideos as Tensor | undefined;
        calls.push({ ids: Int32Array.from(ids.data as Int32Array), rows: ids.shape[0]!,
          ...(px ? { px: Tensor.from(Float32Array.from(px.data as Float32Array), px.shape), grid: inp.videoGridThw as RolloutPrompt['videoGridThw'], ts: inp.secondPerGridTs as readonly number[] } : {}) });
      }
      return forward(inp, signal);
    }) as QwenModel['forward'];
    try {
      const r = await run(name, { model: m, data, algorithm: 't-grpo', temperature: 0, numGenerations: 4, maxCompletionLength: 2, rewards: ['accuracy'], tGrpo: { mu: 1.5 }, ...extra });
      return { ...r, calls };
    } finally { m.dispose(); m.checkpoint.dispose(); }
  };
  const done = (r: { calls: { px?: Tensor }[] }) => { for (const c of r.calls) c.px?.dispose(); };
  const probe = await tg(withSolution('tg-probe', 'A'))('tg-probe');
  const pre = probe.calls.filter((c) => c.px);
  assert.is(pre.length, 2, 'one prefill on ordered frames, one on shuffled frames');
  assert.equal(pre[1]!.ids, pre[0]!.ids, 'the same prompt');
  assert.equal(probe.calls.filter((c) => !c.px).map((c) => c.rows), [4, 2], 'decode batches: n = 4 ordered rows, n/2 = 2 shuffled rows');
  // The shuffled video is a permutation of the ordered one's temporal patch groups, not the identity.
  const [[t, h, w]] = pre[0]!.grid! as [[number, number, number]];
  const per = h * w * pre[0]!.px!.shape[1]!;
  const groups = (x: Tensor) => Array.from({ length: t }, (_, i) => (x.data as Float32Array).subarray(i * per, (i + 1) * per));
  const perm = groups(pre[1]!.px!).map((g) => groups(pre[0]!.px!).findIndex((o) => o.every((v, k) => v === g[k])));
  assert.equal([...perm].sort(), Array.from({ length: t }, (_, i) => i), `a permutation of the ${t} temporal groups`);
  assert.ok(perm.some((o, i) => o !== i), `not the identity: ${perm}`);
  // The model's greedy answers on the two videos (an inference copy of the same weights).
  const inf = await loadModel(at('sharp'));
  const greedyText = async (c: (typeof pre)[number]) => {
    const r = await rollout(inf, [{ inputIds: c.ids, pixelValuesVideos: c.px!, videoGridThw: c.grid!, secondPerGridTs: c.ts! }], { n: 1, maxNewTokens: 2, temperature: 0, topP: 1, topK: 0, seed: 0, stop: new Set(inf.tokenizer!.eosTokenIds) });
    return inf.tokenizer!.decode(r[0]![0]!.tokens).replace(/\s/g, '');
  };
  const a = await greedyText(pre[0]!), b = await greedyText(pre[1]!);
  inf.dispose(); inf.checkpoint.dispose();
  done(probe);
  assert.ok(a !== b && a && b && !/[,<>]/.test(a + b), `the fixture model reads frame order: '${a}' on ordered frames, '${b}' on shuffled ones`);
  // Truth {a}: p = 1 on ordered frames, p~ = 0 on shuffled ones; 1 >= 1.5 x 0: every (correct) completion gets +0.3.
  const one = await tg(withSolution('tg-a', a))('tg-a');
  const bufA = one.buffer();
  assert.is(bufA.samples.length, 4, 'the shuffled completions only feed p~ (not in the batch)');
  for (const s of bufA.samples) { assert.equal(s.rewards, [1]); assert.ok(Math.abs(s.reward! - 1.3) < 1e-12, `reward ${s.reward}`); }
  assert.equal([one.metrics[0]!['temporal/ordered'], one.metrics[0]!['temporal/shuffled'], one.metrics[0]!['temporal/bonus']], [1, 0, 1]);
  done(one);
  // Truth {a, b}: partial credit 1/2 on both videos; 0.5 < 1.5 x 0.5: no bonus.
  const two = await tg(withSolution('tg-ab', `${a},${b}`))('tg-ab');
  for (const s of two.buffer().samples) { assert.equal(s.rewards, [0.5]); assert.is(s.reward, 0.5); }
  assert.equal([two.metrics[0]!['temporal/ordered'], two.metrics[0]!['temporal/shuffled'], two.metrics[0]!['temporal/bonus']], [0.5, 0.5, 0]);
  done(two);
  // Video-R1's mu 0.8 (the default): 0.5 >= 0.4, the bonus again, with a custom alpha.
  const dflt = await tg(withSolution('tg-ab', `${a},${b}`), { tGrpo: { alpha: 0.25 } })('tg-ab-default');
  for (const s of dflt.buffer().samples) assert.is(s.reward, 0.75);
  done(dflt);
});

test('TW-GRPO: token weights are the min-max normalised divergence to the group\'s mean distribution (float64), in [1, alpha]; they change the step', async () => {
  if (!DIR) return skip('ffmpeg (Debian package ffmpeg) is not on PATH');
  const common = { promptsPerStep: 2, numGenerations: 4, maxCompletionLength: 5, temperature: 1.5 };
  const tw = await run('tw', { ...common, algorithm: 'tw-grpo' });
  const buf = tw.buffer();
  const m = await loadModel(at('base'));
  const rows = textRows(8);
  try {
    for (let g = 0; g < 2; g++) {
      const grp = buf.samples.slice(g * 4, (g + 1) * 4);
      const prompt = await promptIds(m, rows[buf.rows[g]!]!);
      const dists = await Promise.all(grp.map((s) => distributions(m, prompt, s.tokens, common.temperature)));
      // At the sampling temperature: KL(p_i,t || mean over the group's completions that reach position t), then min-max over the group into [1, 1.7].
      const kl = grp.map((s, i) => s.tokens.map((_, t) => {
        const alive = dists.filter((d) => t < d.length);
        const p = dists[i]![t]!;
        let d = 0;
        for (let v = 0; v < p.length; v++) {
          const q = alive.reduce((a, x) => a + x[t]![v]!, 0) / alive.length;
          if (p[v]! > 0) d += p[v]! * Math.log(p[v]! / q);
        }
        return d;
      }));
      const flat = kl.flat(), lo = Math.min(...flat), hi = Math.max(...flat);
      assert.ok(hi - lo > 1e-4, `divergences vary (${lo} .. ${hi})`);
      const got = grp.flatMap((s) => s.weights!);
      assert.is(got.length, flat.length, 'one weight per token');
      assert.ok(Math.abs(Math.min(...got) - 1) < 1e-9 && Math.abs(Math.max(...got) - 1.7) < 1e-9, `group ${g}: weights span [1, 1.7]`);
      assert.ok(new Set(got.map((x) => x.toFixed(6))).size > 2, 'not uniform');
      flat.forEach((d, k) => {
        const want = 1 + 0.7 * (d - lo) / (hi - lo);
        assert.ok(Math.abs(got[k]! - want) < 1e-5, `group ${g} token ${k}: weight ${got[k]} vs float64 ${want}`);
      });
      // Position 0 follows the prompt alone: the same distribution for all, divergence 0, weight 1.
      grp.forEach((s) => assert.ok(Math.abs(s.weights![0]! - 1) < 1e-3));
    }
  } finally { m.dispose(); m.checkpoint.dispose(); }
  // The same rollouts without the weights end elsewhere: plain GRPO on the same (unfused) loss path
  // (a quantile that keeps every token), which with weights of 1 would give the same bits.
  const plain = await run('tw-plain', { ...common, topEntropyQuantile: 0.999999 });
  assert.equal(plain.buffer().samples.map((s) => s.tokens), buf.samples.map((s) => s.tokens), 'the same rollouts');
  const head = (r: { out: string }) => weight(path.join(r.out, 'model.safetensors'), 'lm_head.weight');
  const [h1, h0] = [head(tw), head(plain)];
  assert.ok(h1.some((v, i) => v !== h0[i]), 'the weighted step differs');
});

test('dynamic sampling: groups whose rewards are all equal are dropped and counted, more prompts drawn until the batch is full; maxPrompts caps the draws', async () => {
  if (!DIR) return skip('ffmpeg (Debian package ffmpeg) is not on PATH');
  writeFileSync(at('flat.json'), JSON.stringify(textRows(8, (i) => ({ flat: i % 3 !== 0 }))));
  const drawn: { gen: number; id: number; flat: boolean }[] = [];
  const reward = (_c: string, row: Record<string, unknown>, ctx: RewardContext) => {
    if (ctx.sample === 0) drawn.push({ gen: ctx.step, id: row.problem_id as number, flat: row.flat as boolean });
    return row.flat ? 1 : ctx.sample;
  };
  const rows = textRows(8, (i) => ({ flat: i % 3 !== 0 })) as (ReturnType<typeof textRows>[number] & { flat: boolean })[];
  const dyn = await run('dyn', { data: at('flat.json'), rewards: [reward], promptsPerStep: 2, maxSteps: 3, keepLast: 3, dynamicSampling: true });
  for (let g = 0; g < 3; g++) {
    const d = drawn.filter((x) => x.gen === g);
    const buf = dyn.buffer(g + 1);
    assert.is(buf.rows.length, 2, 'the batch is full');
    for (const r of buf.rows) assert.not.ok(rows[r]!.flat, `generation ${g}: only groups with different rewards are kept`);
    assert.equal(buf.rows.map((r) => rows[r]!.problem_id), d.filter((x) => !x.flat).map((x) => x.id), 'the kept prompts are the drawn ones with different rewards');
    assert.is(dyn.metrics[g]!.droppedGroups, d.filter((x) => x.flat).length, `generation ${g}: every dropped group counted`);
    assert.is(d.length, 2 + dyn.metrics[g]!.droppedGroups!, 'as many more prompts drawn as dropped');
    assert.is(dyn.metrics[g]!.equalRewardGroups, 0);
  }
  assert.ok(dyn.metrics.some((x) => x.droppedGroups! > 0), 'some group was dropped');
  // Without dynamic sampling: the first two prompts whatever their rewards.
  drawn.length = 0;
  const off = await run('dyn-off', { data: at('flat.json'), rewards: [reward], promptsPerStep: 2, maxSteps: 3 });
  assert.is(drawn.length, 6);
  assert.ok(off.metrics.every((x) => x.droppedGroups === 0) && off.metrics.some((x) => x.equalRewardGroups! > 0));
  // All groups flat, at most 3 prompts per generation: 2 drawn and dropped, then 2 more kept as they are.
  writeFileSync(at('allflat.json'), JSON.stringify(textRows(8, () => ({ flat: true }))));
  drawn.length = 0;
  const cap = await run('dyn-cap', { data: at('allflat.json'), rewards: [reward], promptsPerStep: 2, dynamicSampling: { maxPrompts: 3 } });
  assert.is(drawn.length, 4);
  assert.is(cap.metrics[0]!.droppedGroups, 2);
  assert.is(cap.metrics[0]!.equalRewardGroups, 1);
});

test('maskTruncatedCompletions: completions cut at maxCompletionLength get no loss, the others keep theirs', async () => {
  if (!DIR) return skip('ffmpeg (Debian package ffmpeg) is not on PATH');
  const o = { model: at('stoppy'), promptsPerStep: 2, numGenerations: 8, maxCompletionLength: 4 };
  const masked = await run('mask', { ...o, maskTruncatedCompletions: true });
  const plain = await run('mask-off', o);
  const buf = masked.buffer();
  assert.equal(plain.buffer().samples.map((s) => s.tokens), buf.samples.map((s) => s.tokens), 'the same rollouts');
  const trunc = buf.samples.map((s) => s.finish === 'length');
  assert.ok(trunc.some(Boolean) && !trunc.every(Boolean), `some truncated, some stopped (${trunc.filter(Boolean).length} of ${trunc.length})`);
  const N = buf.samples.reduce((a, s) => a + s.tokens.length, 0), kept = buf.samples.reduce((a, s, i) => a + (trunc[i] ? 0 : s.tokens.length), 0);
  assert.ok(Math.abs(masked.metrics[0]!.lossTokens! - kept / N) < 1e-12, `lossTokens ${masked.metrics[0]!.lossTokens} vs ${kept}/${N}`);
  assert.ok(Math.abs(masked.metrics[0]!.truncated! - trunc.filter(Boolean).length / trunc.length) < 1e-12);
  assert.is(plain.metrics[0]!.lossTokens, 1);
  const m = await loadModel(at('base'));
  const rows = textRows(8);
  const prompts = await Promise.all(buf.rows.map((r) => promptIds(m, rows[r]!)));
  const C = m.config.hiddenSize;
  m.dispose(); m.checkpoint.dispose();
  const E = 'model.embed_tokens.weight', before = weight(at('base', 'model.safetensors'), E);
  const on = checkLossPositions('masked', before, weight(path.join(masked.out, 'model.safetensors'), E), C, prompts, buf.samples, buf.samples.map((s, i) => s.tokens.map(() => !trunc[i])));
  assert.ok(on.informative > 0 && on.reached > 0, `rows kept by the mask: ${on.informative}; rows moved: ${on.reached}`);
  checkLossPositions('unmasked', before, weight(path.join(plain.out, 'model.safetensors'), E), C, prompts, buf.samples, buf.samples.map((s) => s.tokens.map(() => true)));
});

test('topEntropyQuantile: only the highest-entropy share q of the tokens carries loss', async () => {
  if (!DIR) return skip('ffmpeg (Debian package ffmpeg) is not on PATH');
  const q = 0.3;
  const r = await run('topent', { promptsPerStep: 2, numGenerations: 4, maxCompletionLength: 6, temperature: 1.5, topEntropyQuantile: q });
  const buf = r.buffer();
  const m = await loadModel(at('base'));
  const rows = textRows(8);
  const prompts = await Promise.all(buf.rows.map((ri) => promptIds(m, rows[ri]!)));
  const ent: number[][] = [];
  for (const s of buf.samples) ent.push((await distributions(m, prompts[s.prompt]!, s.tokens)).map(entropyOf));
  const C = m.config.hiddenSize;
  m.dispose(); m.checkpoint.dispose();
  // The threshold: the (1 - q) quantile of the step's token entropies (float64 here); ties at it are kept.
  const all = ent.flat(), N = all.length, thr = [...all].sort((x, y) => x - y)[Math.floor((1 - q) * N)]!;
  const kept = ent.map((row) => row.map((e) => e >= thr - 1e-9));
  const nKept = kept.flat().filter(Boolean).length;
  assert.ok(nKept >= Math.ceil(q * N) && nKept < Math.ceil(q * N) + 4, `${nKept} of ${N} tokens kept for q = ${q}`);
  assert.ok(Math.abs(r.metrics[0]!.lossTokens! - nKept / N) < 1e-12, `lossTokens ${r.metrics[0]!.lossTokens} vs ${nKept}/${N}`);
  const E = 'model.embed_tokens.weight';
  const res = checkLossPositions('top entropy', weight(at('base', 'model.safetensors'), E), weight(path.join(r.out, 'model.safetensors'), E), C, prompts, buf.samples, kept);
  assert.ok(res.informative > 0 && res.reached > 0, `rows left out by the quantile: ${res.informative}; rows moved: ${res.reached}`);
});

test('lossType bnpo / dr_grpo / dapo (and grpo) through the trainer: the step\'s loss equals the float64 loss of its completions, with gradient accumulation too', async () => {
  if (!DIR) return skip('ffmpeg (Debian package ffmpeg) is not on PATH');
  const losses = new Map<string, number>(), norms = new Map<string, number>();
  const T = 1.5;
  const [m, bias] = [await loadModel(at('base')), await loadModel(at('other'))];
  const rows = textRows(8);
  for (const [lossType, accum] of [['grpo', 1], ['bnpo', 1], ['dr_grpo', 1], ['dapo', 1], ['grpo', 2], ['bnpo', 2], ['dr_grpo', 2], ['dapo', 2]] as const) {
    const r = await run(`loss-${lossType}-${accum}`, { lossType, gradAccum: accum, biasModel: at('other'), betaBias: 0.3, promptsPerStep: 2, numGenerations: 4, maxCompletionLength: 8, temperature: T });
    const buf = r.buffer(), s = buf.samples;
    assert.ok(s.some((x) => x.tokens.length !== s[0]!.tokens.length), 'completions of several lengths');
    // The policy's and the bias model's log-probs of the sampled tokens at the sampling temperature, in float64.
    const prompts = await Promise.all(buf.rows.map((ri) => promptIds(m, rows[ri]!)));
    const lp: number[][] = [], lb: number[][] = [];
    for (const x of s) {
      lp.push((await distributions(m, prompts[x.prompt]!, x.tokens, T)).map((p, j) => Math.log(p[x.tokens[j]!]!)));
      lb.push((await distributions(bias, prompts[x.prompt]!, x.tokens, T)).map((p, j) => Math.log(p[x.tokens[j]!]!)));
    }
    s.forEach((x, i) => {
      assert.ok(x.bias!.every((v, j) => Math.abs(v - lb[i]![j]!) < 1e-4), 'the bias model scores at the sampling temperature');
      assert.ok(x.logprobs.every((v, j) => Math.abs(v - lp[i]![j]!) < 1e-4), 'sampling log-probs at T are the policy\'s');
    });
    // Micro-batches of the step, each a loss of its own completions; the step's loss is their mean,
    // except dapo's, normalised by the whole step's tokens (its micro-batches' losses add up).
    const chunk = s.length / accum, active = s.reduce((a, x) => a + x.tokens.length, 0);
    const parts = Array.from({ length: accum }, (_, k) => {
      const idx = Array.from({ length: chunk }, (_, i) => k * chunk + i), p = idx.map((i) => s[i]!);
      const off = [0];
      for (const x of p) off.push(off.at(-1)! + x.tokens.length);
      return reference({ lp: idx.flatMap((i) => lp[i]!), bias: idx.flatMap((i) => lb[i]!), adv: p.map((x) => x.advantage), off: Int32Array.from(off),
        opts: { lossType, betaBias: 0.3, maxCompletionLength: 8, activeTokens: active } });
    });
    const want = lossType === 'dapo' ? parts.reduce((a, x) => a + x.loss, 0) : parts.reduce((a, x) => a + x.loss, 0) / accum;
    const got = r.metrics[0]!.loss!;
    assert.ok(Math.abs(got - want) < 1e-5 * Math.max(1, Math.abs(want)), `${lossType}, gradAccum ${accum}: loss ${got} vs float64 ${want}`);
    const gn = r.metrics[0]!.gradNorm!;
    assert.ok(gn > 0);
    if (accum === 1) { losses.set(lossType, got); norms.set(lossType, gn); } else if (lossType !== 'bnpo') {
      // Equal micro-batches of completions: the same loss and the same gradient as one micro-batch
      // (bnpo's token mean per micro-batch differs, as TRL's does).
      assert.ok(Math.abs(got - losses.get(lossType)!) < 1e-5, `${lossType}: the same loss with 2 micro-batches (${got} vs ${losses.get(lossType)})`);
      assert.ok(Math.abs(gn / norms.get(lossType)! - 1) < 1e-4, `${lossType}: the same gradient norm with 2 micro-batches (${gn} vs ${norms.get(lossType)})`);
    }
  }
  for (const x of [m, bias]) { x.dispose(); x.checkpoint.dispose(); }
  const v = [...losses.values()];
  assert.is(new Set(v.map((x) => x.toFixed(6))).size, 3, `grpo, bnpo, dr_grpo differ; bnpo = dapo with one micro-batch: ${[...losses]}`);
});

test('entropy metric: the fused loss reports the entropy the unfused path computes', async () => {
  if (!DIR) return skip('ffmpeg (Debian package ffmpeg) is not on PATH');
  const o = { promptsPerStep: 2, numGenerations: 4, maxCompletionLength: 6, maxSteps: 2, temperature: 1.5 };
  const fused = await run('ent-fused', o);
  // A quantile that keeps every token takes the unfused path with the same gradient.
  const unfused = await run('ent-unfused', { ...o, topEntropyQuantile: 0.999999 });
  const V = JSON.parse(readFileSync(at('base', 'config.json'), 'utf8')).vocab_size as number;
  for (let k = 0; k < 2; k++) {
    const a = fused.metrics[k]!, b = unfused.metrics[k]!;
    assert.ok(typeof a.entropy === 'number' && a.entropy > 0 && a.entropy <= Math.log(V), `step ${k + 1}: fused entropy ${a.entropy}`);
    assert.ok(Math.abs(a.entropy - b.entropy!) < 2e-6, `step ${k + 1}: entropy ${a.entropy} (fused) vs ${b.entropy} (unfused)`);
    assert.ok(Math.abs(a.loss! - b.loss!) < 1e-5, `step ${k + 1}: loss ${a.loss} vs ${b.loss}`);
    assert.is(b.lossTokens, 1);
  }
});

test('trainBias from code and `videothinker train-bias`: only the observational rows (or the chosen field / value), no KL', async () => {
  if (!DIR) return skip('ffmpeg (Debian package ffmpeg) is not on PATH');
  const seen: Record<string, unknown>[] = [];
  const spy = (_c: string, row: Record<string, unknown>, ctx: RewardContext) => { seen.push(row); return ctx.sample; };
  const r = await run('bias', { rewards: [spy, 'accuracy'], promptsPerStep: 2, maxSteps: 4, betaRef: 0.5, numGenerations: 2, maxCompletionLength: 3 }, trainBias);
  assert.is(seen.length, 4 * 2 * 2);
  assert.ok(seen.every((x) => x.question_type === 'observational'), `question types seen: ${[...new Set(seen.map((x) => x.question_type))]}`);
  assert.is(new Set(seen.map((x) => x.problem_id)).size, 4, 'all four observational rows drawn');
  assert.ok(r.metrics.every((m) => !('klRef' in m) && !('klBias' in m) && 'accuracy/observational' in m && !('accuracy/inferential' in m)), 'betaRef forced to 0');
  seen.length = 0;
  await run('bias-colour', { rewards: [spy], maxSteps: 3, numGenerations: 2, maxCompletionLength: 3, questionField: 'colour', questionValue: 'blue', filter: (row: Record<string, unknown>) => row.problem_id !== 6 }, trainBias);
  assert.ok(seen.length === 6 && seen.every((x) => x.problem_id === 2), `only blue rows the user filter keeps: ${seen.map((x) => x.problem_id)}`);
  // The CLI, on the inferential questions, with a --beta-ref that train-bias overrides.
  const cli = CLI(['train-bias', '--model', 'base', '--data', 'rows.json', '--out', 'runs/cli-bias', '--max-steps', '3', '--num-generations', '2', '--prompts-per-step', '2',
    '--max-completion-length', '4', '--question-value', 'inferential', '--beta-ref', '0.5', '--save-dtype', 'f32', '--quiet'], DIR);
  assert.is(cli.status, 0, cli.stderr);
  const m = jsonl(at('runs', 'cli-bias', 'metrics.jsonl'));
  assert.is(m.length, 3);
  assert.ok(m.every((x) => 'accuracy/inferential' in x && !('accuracy/observational' in x) && !('klRef' in x)), JSON.stringify(m[0]));
  assert.ok(existsSync(at('runs', 'cli-bias', 'model.safetensors')));
  const none = CLI(['train-bias', '--model', 'base', '--data', 'rows.json', '--out', 'runs/cli-none', '--question-value', 'descriptive', '--quiet'], DIR);
  assert.is(none.status, 1);
  assert.match(none.stderr, /Expected some RL rows in .*rows\.json but none is usable/);
});

test('`videothinker plot`: an SVG of several runs\' curves from their metrics.jsonl; bad input fails clearly and writes nothing', async () => {
  if (!DIR) return skip('ffmpeg (Debian package ffmpeg) is not on PATH');
  mkdirSync(at('runs', 'hand'), { recursive: true });
  writeFileSync(at('runs', 'hand', 'metrics.jsonl'), [1, 2, 3, 4].map((s) => JSON.stringify({ step: s, loss: 1 / s, reward: s / 4, 'accuracy/inferential': s / 8, klBias: 0.01 * s })).join('\n') + '\n');
  if (!existsSync(at('runs', 'cli-bias', 'metrics.jsonl'))) {
    mkdirSync(at('runs', 'cli-bias'), { recursive: true });
    writeFileSync(at('runs', 'cli-bias', 'metrics.jsonl'), JSON.stringify({ step: 1, loss: 0.5, reward: 0.1, 'accuracy/inferential': 0 }) + '\n');
  }
  let r = CLI(['plot', 'runs/hand', 'runs/cli-bias', '--out', 'curves.svg', '--labels', 'handmade,biasrun', '--smooth', '2', '--title', 'RLcurves'], DIR);
  assert.is(r.status, 0, r.stderr);
  assert.match(r.stdout, /wrote curves\.svg \(2 run\(s\)\)/);
  const svg = readFileSync(at('curves.svg'), 'utf8');
  assert.ok(svg.startsWith('<svg') && svg.trimEnd().endsWith('</svg>'), 'an SVG document');
  for (const s of ['handmade', 'biasrun', 'RLcurves', 'reward', 'accuracy/inferential', 'klBias', 'loss']) assert.ok(svg.includes(s), `the SVG shows '${s}'`);
  assert.not.ok(svg.includes('accuracy/observational'), 'metrics no run has are left out');
  assert.ok((svg.match(/mark-line/g) ?? []).length >= 4, 'one line per run and panel');
  // Bad input: each fails with a message that names the problem, and no SVG is written.
  mkdirSync(at('runs', 'bad'), { recursive: true });
  writeFileSync(at('runs', 'bad', 'metrics.jsonl'), '{"step": 1, "reward": 0}\nnot json\n');
  for (const [args, code, re] of [
    [['runs/bad'], 1, /Invalid .*metrics\.jsonl line 2: not JSON/],
    [['runs/missing'], 1, /runs\/missing\/metrics\.jsonl .*does not exist/],
    [['runs/hand', '--metrics', 'nope,klRef'], 1, /Expected some of the metrics \[nope, klRef\] in the runs but none is there/],
  ] as const) {
    r = CLI(['plot', ...args, '--out', 'bad.svg'], DIR);
    assert.is(r.status, code, `${args}: ${r.stderr}`);
    assert.match(r.stderr, re);
    assert.not.ok(existsSync(at('bad.svg')), `${args}: nothing written`);
  }
  r = CLI(['plot', 'runs/hand'], DIR);
  assert.is(r.status, 2);
  assert.match(r.stderr, /--out FILE is required/);
});

test.run();
