// The RL trainers: one GRPO / CDPO step against a float64 reference of the same step (the
// sampled completions kept in the checkpoint's rollout buffer; the network and the loss in
// float64 through test/ref/qwen_ref.py and test/cdpo_ref.ts: loss, KL metric and every
// parameter's update direction), with and without bias and reference models, mu 1 and 2; the
// bias model really scoring; rewards; user reward callbacks seeing every field; the CLI raising the
// mean reward on a learnable task; CDPO moving away from the bias model; kill -9 and resume.
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { test } from 'uvu';
import * as assert from 'uvu/assert';

import { accuracyFor, advantagesOf, evalReward, groupAdvantagesSync, loadModel, preparePrompt, readSafetensors, rougeL, trainCdpo, trainGrpo,
  Tensor, linearLogprobs, type RlOptions } from '../src/index.js';
import { buildPrompt } from '../src/data/prompt.js';
import { reference } from './cdpo_ref.js';
import { assertRel, rejectsLike } from './helpers.js';
import { f32, runRef, type HFConfig } from './qwen_fixture.js';
import { exitOf, havePython, noPython, runCliTimed, skip } from './skip.js';
import { skipWithoutFfmpeg } from './synth_fixture.js';

const ROOT = path.join(path.dirname(fileURLToPath(import.meta.url)), '..');
const TSX = import.meta.resolve('tsx');
// Each CLI run has a time limit (test/skip.ts: 300 s; a hang fails its test with the command).
const CLI = (args: string[], cwd: string) => runCliTimed(args, { cwd });
const TORCH = ['numpy', 'torch'] as const;
const tmp = (tag: string) => mkdtempSync(path.join(tmpdir(), `vt-rl-${tag}-`));

/** A tokenizer (from the synthetic benchmark's vocabulary), two tiny models and text-only question rows. */
function setup(dir: string): void {
  let r = CLI(['synth', '--out', 'data', '--train', '4', '--test', '4', '--variant', '0', '--seed', '5'], dir);
  assert.is(r.status, 0, `synth: ${r.stderr}`);
  for (const [name, seed] of [['base', '11'], ['other', '12']]) {
    r = CLI(['init', '--tokenizer', 'data/tokenizer.json', '--out', name!, '--preset', 'tiny', '--seed', seed!, '--layers', '2', '--hidden', '32', '--heads', '2', '--kv-heads', '1'], dir);
    assert.is(r.status, 0, `init: ${r.stderr}`);
  }
  const rows = ['red', 'green', 'blue', 'yellow'].map((c, i) => ({
    problem: `Which ball is in lane ${i + 1}?`, options: ['A. red', 'B. green', 'C. blue', 'D. yellow'], solution: `<answer>${'ABCD'[i]}</answer>`,
    problem_type: 'multiple choice', question_type: i % 2 ? 'inferential' : 'observational', data_type: 'text', colour: c,
  }));
  writeFileSync(path.join(dir, 'rows.json'), JSON.stringify(rows));
}

/** A reward that varies between completions (their length and a token's presence), so that advantages are not zero. */
const lengthy = (completion: string) => (completion.length % 7) / 6 + (completion.includes('red') ? 0.5 : 0);

interface BufferSample { prompt: number; tokens: number[]; advantage: number; old?: number[]; bias?: number[]; ref?: number[] }

/** false when the float64 reference cannot run (Python / PyTorch missing): the caller records a skip. */
async function stepAgainstReference(dir: string, name: string, opts: Partial<RlOptions>): Promise<boolean> {
  const out = path.join(dir, 'runs', name);
  await trainGrpo({
    model: path.join(dir, 'base'), data: path.join(dir, 'rows.json'), out, maxSteps: 1, promptsPerStep: 2, numGenerations: 4, maxCompletionLength: 10,
    lr: 1e-3, maxGradNorm: 0, adamw: { weightDecay: 0 }, saveEvery: 1, saveDtype: 'f32', seed: 3, progress: false, rewards: [lengthy], ...opts,
  } as RlOptions);
  const state = JSON.parse(readFileSync(path.join(out, 'checkpoint-1', 'rl_state.json'), 'utf8')) as { buffer: { rows: number[]; samples: BufferSample[] } };
  const samples = state.buffer.samples;
  assert.is(samples.length, 8);
  assert.ok(samples.some((s) => s.advantage !== 0), 'some advantages are not zero');
  // The sequences as the trainer built them: each row's chat prompt, then its completion.
  const base = await loadModel(path.join(dir, 'base'));
  const w0 = readSafetensors(path.join(dir, 'base', 'model.safetensors'));
  let w1: ReturnType<typeof readSafetensors> | undefined;
  try {
    const rows = JSON.parse(readFileSync(path.join(dir, 'rows.json'), 'utf8')) as Parameters<typeof buildPrompt>[0][];
    const prompts: Int32Array[] = [];
    for (const ri of state.buffer.rows) prompts.push((await preparePrompt(base.config, base.tokenizer!, base.processor, { prompt: buildPrompt(rows[ri]!) })).inputIds);
    const seqs = samples.map((s) => [...prompts[s.prompt]!, ...s.tokens]);
    const L = Math.max(...seqs.map((q) => q.length)), B = seqs.length;
    const cfg = JSON.parse(readFileSync(path.join(dir, 'base', 'config.json'), 'utf8')) as HFConfig;
    const V = cfg.vocab_size;
    const weights = new Map<string, Float32Array>(), shapes = new Map<string, number[]>();
    for (const [k, t] of w0.tensors) { weights.set(k, f32(t).slice()); shapes.set(k, [...t.shape]); }
    const kase = { ids: seqs.map((q) => [...q, ...new Array<number>(L - q.length).fill(0)]), mask: seqs.map((q) => [...new Array<number>(q.length).fill(1), ...new Array<number>(L - q.length).fill(0)]) };
    const fwd = runRef(kase, weights, shapes, { config: cfg });
    if (!fwd) return false;
    // float64 log-probs of the completion tokens, then the loss and its gradient (test/cdpo_ref.ts).
    const lp: number[] = [], soft: Float64Array[] = [], off = [0];
    samples.forEach((s, b) => {
      const P = prompts[s.prompt]!.length;
      s.tokens.forEach((tk, j) => {
        const row = fwd.logits!.subarray((b * L + P + j - 1) * V, (b * L + P + j) * V);
        let m = -Infinity;
        for (const v of row) m = Math.max(m, v);
        let z = 0;
        for (const v of row) z += Math.exp(v - m);
        lp.push(row[tk]! - m - Math.log(z));
        soft.push(Float64Array.from(row, (v) => Math.exp(v - m) / z));
      });
      off.push(lp.length);
    });
    const c = {
      lp, adv: samples.map((s) => s.advantage), off: Int32Array.from(off),
      ...(samples[0]!.old ? { old: samples.flatMap((s) => s.old!) } : {}), ...(samples[0]!.bias ? { bias: samples.flatMap((s) => s.bias!) } : {}),
      ...(samples[0]!.ref ? { ref: samples.flatMap((s) => s.ref!) } : {}),
      opts: { ...(opts.betaBias !== undefined ? { betaBias: opts.betaBias } : {}), ...(opts.betaRef !== undefined ? { betaRef: opts.betaRef } : {}) },
    };
    const want = reference(c);
    const m = JSON.parse(readFileSync(path.join(out, 'metrics.jsonl'), 'utf8').trim().split('\n')[0]!) as { loss: number; klBias?: number; klRef?: number };
    assert.ok(Math.abs(m.loss - want.loss) < 1e-5, `${name}: loss ${m.loss} vs float64 ${want.loss}`);
    if (want.klBias !== null) assert.ok(Math.abs(m.klBias! - want.klBias) < 1e-4 * Math.max(1, want.klBias), `${name}: klBias ${m.klBias} vs ${want.klBias}`);
    if (want.klRef !== null) assert.ok(Math.abs(m.klRef! - want.klRef) < 1e-4 * Math.max(1e-3, want.klRef), `${name}: klRef ${m.klRef} vs ${want.klRef}`);
    // dL/dlogits at the predicting positions, then float64 autograd to every parameter.
    const dLogits = new Float32Array(B * L * V);
    let t = 0;
    samples.forEach((s, b) => {
      const P = prompts[s.prompt]!.length;
      s.tokens.forEach((tk, j) => {
        const g = want.grad[t]!, sm = soft[t]!, base0 = (b * L + P + j - 1) * V;
        for (let v = 0; v < V; v++) dLogits[base0 + v] = g * ((v === tk ? 1 : 0) - sm[v]!);
        t++;
      });
    });
    const bwd = runRef(kase, weights, shapes, { config: cfg, dLogits });
    if (!bwd) return false;
    // AdamW's first step is -lr g / (|g| + eps): each parameter moves against its gradient's sign.
    w1 = readSafetensors(path.join(out, 'model.safetensors'));
    let checked = 0, top = 0;
    for (const g of bwd.grads.values()) for (const v of g) top = Math.max(top, Math.abs(v));
    for (const [k, g] of bwd.grads) {
      const before = weights.get(k)!, after = f32(w1.tensors.get(k)!);
      let gmax = 0;
      for (const v of g) gmax = Math.max(gmax, Math.abs(v));
      // Gradients that are zero in exact arithmetic (a key bias shifts every score of a query
      // alike; the vision tower of text rows) are rounding noise on both sides: not a direction.
      if (gmax < 1e-5 * top) continue;
      for (let i = 0; i < g.length; i++) {
        if (Math.abs(g[i]!) < 1e-3 * gmax) continue;
        const d = after[i]! - before[i]!, want = 1e-3 * Math.abs(g[i]!) / (Math.abs(g[i]!) + 1e-8);
        assert.ok(Math.sign(d) === -Math.sign(g[i]!) && Math.abs(Math.abs(d) - want) < 0.05 * want, `${name}: ${k}[${i}] moved ${d} for a gradient ${g[i]} (expected ${-Math.sign(g[i]!) * want})`);
        checked++;
      }
    }
    assert.ok(checked > 1000, `${name}: ${checked} parameters checked`);
    return true;
  } finally {
    w0.dispose(); w1?.dispose(); base.dispose(); base.checkpoint.dispose();
  }
}

test('one GRPO / CDPO step equals a float64 reference of the same step: no KL, bias, bias + reference with mu 2, mu 2', async () => {
  if (skipWithoutFfmpeg()) return;
  // Missing Python / PyTorch: a counted skip (a failure in CI); a reference that crashes fails (runRef).
  if (!havePython(TORCH)) return skip(noPython(TORCH));
  const dir = tmp('step');
  try {
    setup(dir);
    const cases: [string, Partial<RlOptions>][] = [
      ['grpo', {}],
      ['cdpo', { biasModel: path.join(dir, 'other'), betaBias: 0.3 }],
      ['cdpo-ref-mu2', { biasModel: path.join(dir, 'other'), betaBias: 0.2, betaRef: 0.5, refModel: path.join(dir, 'other'), numIterations: 2 }],
      ['grpo-mu2', { numIterations: 2 }],
    ];
    for (const [name, opts] of cases) if (!(await stepAgainstReference(dir, name, opts))) return skip(noPython(TORCH));
  } finally { rmSync(dir, { recursive: true, force: true }); }
});

test('the bias model really scores: its log-probs of the sampled tokens, not the policy\'s', async () => {
  if (skipWithoutFfmpeg()) return;
  const dir = tmp('bias');
  try {
    setup(dir);
    const out = path.join(dir, 'runs', 'c');
    await trainCdpo({ model: path.join(dir, 'base'), biasModel: path.join(dir, 'other'), data: path.join(dir, 'rows.json'), out, maxSteps: 1, numGenerations: 3,
      maxCompletionLength: 6, saveEvery: 1, progress: false, rewards: [lengthy] });
    const st = JSON.parse(readFileSync(path.join(out, 'checkpoint-1', 'rl_state.json'), 'utf8')) as { buffer: { rows: number[]; samples: BufferSample[] } };
    const rows = JSON.parse(readFileSync(path.join(dir, 'rows.json'), 'utf8')) as Parameters<typeof buildPrompt>[0][];
    for (const [which, want] of [['other', true], ['base', false]] as const) {
      const m = await loadModel(path.join(dir, which));
      for (const s of st.buffer.samples) {
        const p = (await preparePrompt(m.config, m.tokenizer!, undefined, { prompt: buildPrompt(rows[st.buffer.rows[s.prompt]!]!) })).inputIds;
        const ids = Tensor.from(Int32Array.from([...p, ...s.tokens]), [1, p.length + s.tokens.length]);
        const o = await m.forward({ inputIds: ids, logits: 'none' });
        const h = Tensor.from((o.hidden.data as Float32Array).slice((p.length - 1) * m.config.hiddenSize, (p.length - 1 + s.tokens.length) * m.config.hiddenSize), [s.tokens.length, m.config.hiddenSize]);
        const lp = await linearLogprobs(h, m.lmHead, Int32Array.from(s.tokens));
        const same = Array.from(f32(lp.logprobs)).every((v, i) => Math.abs(v - s.bias![i]!) < 1e-4);
        assert.is(same, want, `${which}: the buffer's bias log-probs ${want ? 'are' : 'are not'} this model's`);
      }
      m.dispose(); m.checkpoint.dispose();
    }
    await rejectsLike(trainCdpo({ model: path.join(dir, 'base'), data: path.join(dir, 'rows.json'), out } as RlOptions), TypeError, /biasModel/);
  } finally { rmSync(dir, { recursive: true, force: true }); }
});

test('rewards: format, multiple choice, multi-select partial credit, numerical, free-form; user rewards see every field; advantages', async () => {
  const row = { problem: 'q', solution: '<answer>A,C</answer>', problem_type: 'multiple choice', colour: 'red', extra: { deep: 1 } };
  assert.is(accuracyFor('<think>x</think><answer>A, C</answer>', row), 1);
  assert.is(accuracyFor('<answer>C</answer>', row), 0.5);
  assert.is(accuracyFor('<answer>A,B</answer>', row), 0);
  assert.is(accuracyFor('<answer>3.14159</answer>', { ...row, solution: '<answer>3.14</answer>', problem_type: 'numerical' }), 1);
  assert.is(accuracyFor('<answer>3.2</answer>', { ...row, solution: '<answer>3.14</answer>', problem_type: 'numerical' }), 0);
  assert.ok(Math.abs(rougeL('the red ball wins', 'the red ball') - 2 * 1 * 0.75 / 1.75) < 1e-12);
  assert.is(accuracyFor('<answer>the red ball</answer>', { ...row, solution: '<answer>the red ball</answer>', problem_type: 'free-form' }), 1);
  assert.is(await evalReward('format', '<think>a</think>\n<answer>B</answer>', row, { tokens: [], sample: 0, numGenerations: 1, step: 0, finishReason: 'stop' }), 1);
  assert.is(await evalReward('format', '<answer>B</answer>', row, { tokens: [], sample: 0, numGenerations: 1, step: 0, finishReason: 'stop' }), 0);
  let seen: unknown;
  const v = await evalReward({ name: 'mine', fn: async (c, r, ctx) => { seen = { c, r, ctx }; return null; } }, 'done', row as never, { tokens: [1, 2], sample: 3, numGenerations: 8, step: 5, finishReason: 'length' });
  assert.is(v, null);
  assert.equal(seen, { c: 'done', r: row, ctx: { tokens: [1, 2], sample: 3, numGenerations: 8, step: 5, finishReason: 'length' } });
  await rejectsLike(evalReward(() => NaN, 'x', row as never, { tokens: [], sample: 0, numGenerations: 1, step: 0, finishReason: 'stop' }), TypeError, /finite number or null/);
  // advantagesOf equals the native groupAdvantages where no reward is null; null is excluded.
  const r = [1, 0, 0.5, 1, 2, 2, 2, 2, 0, 3, 1, 1];
  for (const scale of ['group', 'batch', 'none'] as const) {
    const nat = groupAdvantagesSync(Float32Array.from(r), 4, { scale });
    assertRel(advantagesOf(r, 4, scale), f32(nat), 1e-6, `advantages ${scale}`);
  }
  const withNull = advantagesOf([1, null, 0, 2], 4, 'group');
  assert.is(withNull[1], 0);
  assertRel(withNull, [0, 0, -1 / (1 + 1e-4), 1 / (1 + 1e-4)], 1e-9, 'null excluded');
});

test('from the CLI: GRPO raises the mean reward over 30 steps; CDPO ends further from the bias model than GRPO; user reward fields', async () => {
  if (skipWithoutFfmpeg()) return;
  const dir = tmp('learn');
  try {
    let r = CLI(['synth', '--out', 'data', '--train', '16', '--test', '4', '--variant', '0', '--seed', '9'], dir);
    assert.is(r.status, 0, r.stderr);
    r = CLI(['init', '--tokenizer', 'data/tokenizer.json', '--out', 'base', '--preset', 'tiny', '--seed', '4'], dir);
    assert.is(r.status, 0, r.stderr);
    // A short warm-up: the format is half learnt, the rest is for RL to find.
    r = CLI(['train-sft', '--model', 'base', '--data', 'data/train.json', '--out', 'sft', '--max-steps', '35', '--batch-size', '4', '--lr', '3e-3', '--save-dtype', 'f32', '--quiet'], dir);
    assert.is(r.status, 0, r.stderr);
    const rl = ['--data', 'data/train.json', '--max-steps', '30', '--num-generations', '8', '--prompts-per-step', '2', '--max-completion-length', '48', '--lr', '1e-3',
      '--rewards', 'format', '--seed', '1', '--save-dtype', 'f32', '--quiet'];
    r = CLI(['train-grpo', '--model', 'sft', '--out', 'grpo', ...rl], dir);
    assert.is(r.status, 0, r.stderr);
    const rewards = readFileSync(path.join(dir, 'grpo', 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => (JSON.parse(l) as { reward: number }).reward);
    assert.is(rewards.length, 30);
    const first = rewards.slice(0, 5).reduce((a, b) => a + b, 0) / 5, last = rewards.slice(-5).reduce((a, b) => a + b, 0) / 5;
    assert.ok(last > first + 0.2, `mean format reward ${first.toFixed(2)} over the first 5 steps, ${last.toFixed(2)} over the last 5`);
    // CDPO from the same start, pushed away from the SFT model as the bias model, against GRPO scored by it.
    r = CLI(['train-cdpo', '--model', 'sft', '--bias', 'sft', '--out', 'cdpo', '--beta-bias', '0.5', ...rl], dir);
    assert.is(r.status, 0, r.stderr);
    r = CLI(['train-grpo', '--model', 'sft', '--bias', 'sft', '--beta-bias', '0', '--out', 'grpo-scored', ...rl], dir);
    assert.is(r.status, 0, r.stderr);
    const kl = (run: string) => readFileSync(path.join(dir, run, 'metrics.jsonl'), 'utf8').trim().split('\n').slice(-10).map((l) => (JSON.parse(l) as { klBias: number }).klBias);
    const kc = kl('cdpo').reduce((a, b) => a + b, 0) / 10, kg = kl('grpo-scored').reduce((a, b) => a + b, 0) / 10;
    assert.ok(kc > kg, `KL to the bias model over the last 10 steps: CDPO ${kc.toFixed(4)} vs GRPO ${kg.toFixed(4)}`);
  } finally { rmSync(dir, { recursive: true, force: true }); }
});

test('kill -9 during RL and resume: the same final weights as an uninterrupted run', async () => {
  if (skipWithoutFfmpeg()) return;
  const dir = tmp('resume');
  try {
    setup(dir);
    const args = (out: string) => ['train-cdpo', '--model', 'base', '--bias', 'other', '--data', 'rows.json', '--out', out, '--max-steps', '12',
      '--num-generations', '4', '--prompts-per-step', '2', '--steps-per-generation', '2', '--num-iterations', '2', '--max-completion-length', '8', '--lr', '1e-3',
      '--save-every', '1', '--save-dtype', 'f32', '--resume', '--quiet', '--seed', '7'];
    const full = CLI(args('full'), dir);
    assert.is(full.status, 0, `the uninterrupted run: ${full.stderr}`);
    const cut = Math.floor(2 + Math.random() * 8);
    const child = spawn(process.execPath, ['--import', TSX, path.join(ROOT, 'src', 'cli', 'index.ts'), ...args('cut')], { cwd: dir, stdio: 'ignore' });
    const poll = setInterval(() => {
      const f = path.join(dir, 'cut', 'metrics.jsonl');
      if (existsSync(f) && readFileSync(f, 'utf8').split('\n').filter(Boolean).length >= cut) { clearInterval(poll); child.kill('SIGKILL'); }
    }, 5);
    try { await exitOf(child, `train-cdpo (to be killed after step ${cut})`); } finally { clearInterval(poll); }
    const again = CLI(args('cut'), dir);
    assert.is(again.status, 0, again.stderr);
    const a = readSafetensors(path.join(dir, 'full', 'model.safetensors')), b = readSafetensors(path.join(dir, 'cut', 'model.safetensors'));
    for (const [k, t] of a.tensors) assert.equal(Array.from(f32(b.tensors.get(k)!)), Array.from(f32(t)), `${k}: bitwise equal (killed after step ${cut})`);
    a.dispose(); b.dispose();
  } finally { rmSync(dir, { recursive: true, force: true }); }
});

test.run();
