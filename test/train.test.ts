// The training loop: AdamW and gradient clipping against torch in float64 (test/ref/optim_ref.py),
// schedules against their formulas, non-finite steps skipped; model.save and loadModel giving the
// same logits (f32, bf16, sharded; the names and dtypes transformers uses); PEFT adapters saved,
// loaded and merged; supervised fine-tuning from the CLI memorising 16 examples; a run killed with
// SIGKILL and resumed ending bitwise where an uninterrupted run ends; SIGINT writing a checkpoint.
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { test } from 'uvu';
import * as assert from 'uvu/assert';

import { AdamW, clipGradNorm, loadModel, readSafetensors, schedule, Tensor, writeSafetensors } from '../src/index.js';
import { assertRel, randomF32, rejectsLike, throwsLike } from './helpers.js';
import { CASES, f32, forwardCase, HF, makeWeights, toModel } from './qwen_fixture.js';
import { exitOf, noPython, runCliTimed, runPython, skip } from './skip.js';
import { skipWithoutFfmpeg } from './synth_fixture.js';
import { collate, mediaInputs } from '../src/train/examples.js';

const ROOT = path.join(path.dirname(fileURLToPath(import.meta.url)), '..');
// Children run in temporary folders: tsx is named by its resolved location, not looked up from there.
const TSX = import.meta.resolve('tsx');
const W = makeWeights(100);

function tmp(tag: string): string { return mkdtempSync(path.join(tmpdir(), `vt-train-${tag}-`)); }

test('AdamW and clipGradNorm equal torch.optim.AdamW / clip_grad_norm_ in float64 over 20 steps', async () => {
  const { model } = toModel(W, 'f32', { train: true });
  const params = model.parameters(), grads = model.grads;
  const init = new Map([...params].map(([k, t]) => [k, f32(t).slice()]));
  const opt = new AdamW(model, { lr: 1e-2, betas: [0.8, 0.95], eps: 1e-6, weightDecay: 0.1 });
  const dir = tmp('adamw');
  try {
    let i = 0;
    const put = (a: Float32Array, shape: readonly number[]) => {
      const file = `t${i++}.bin`;
      writeFileSync(path.join(dir, file), Buffer.from(a.buffer, a.byteOffset, a.byteLength));
      return { file, shape: [...shape] };
    };
    const spec: Record<string, ReturnType<typeof put>> = {};
    for (const [k, v] of init) spec[k] = put(v, params.get(k)!.shape);
    const steps: { lr: number; grads: Record<string, ReturnType<typeof put>>; clip: number | null }[] = [];
    const norms: number[] = [];
    for (let s = 0; s < 20; s++) {
      const lr = 1e-2 * (1 - s / 25);  // a changing rate
      const clip = s % 3 === 0 ? 0.5 : null;  // clipping binds on some steps
      const g: Record<string, ReturnType<typeof put>> = {};
      let k = 0;
      for (const [name, t] of grads) {
        const v = randomF32(t.numel, 1000 * s + k++, s % 2 ? 0.01 : 0.3);
        (t.data as Float32Array).set(v);
        g[name] = put(v, t.shape);
      }
      if (clip !== null) norms.push(await clipGradNorm(model, clip));
      const r = await opt.step({ lr });
      assert.not.ok(r.skipped);
      steps.push({ lr, grads: g, clip });
    }
    const noDecay = [...params.keys()].filter((n) => !opt.decays(n));
    assert.ok(noDecay.includes('model.layers.0.self_attn.q_proj.bias') && noDecay.includes('model.norm.weight') && noDecay.includes('visual.merger.ln_q.weight'));
    assert.ok(opt.decays('model.layers.0.self_attn.q_proj.weight'));
    writeFileSync(path.join(dir, 'case.json'), JSON.stringify({ params: spec, steps, betas: [0.8, 0.95], eps: 1e-6, weight_decay: 0.1, no_decay: noDecay }));
    // Missing Python / PyTorch: a counted skip (a failure in CI); a reference that crashes: a failure.
    if (runPython([path.join(ROOT, 'test', 'ref', 'optim_ref.py'), dir], ['numpy', 'torch']) === null) return skip(noPython(['numpy', 'torch']));
    const out = JSON.parse(readFileSync(path.join(dir, 'out.json'), 'utf8')) as { norms: number[] };
    assertRel(norms, out.norms, 1e-6, 'gradient norms before clipping');
    for (const [k, t] of params) {
      const b = readFileSync(path.join(dir, `out_${k}.bin`));
      const want = new Float64Array(b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength));
      assertRel(f32(t), want, 1e-5, `parameter ${k} after 20 steps`);
      assert.ok(Math.abs(f32(t)[0]! - init.get(k)![0]!) > 0, `${k} moved`);
    }
    assert.is(opt.stepCount, 20);
  } finally {
    rmSync(dir, { recursive: true, force: true });
    opt.dispose(); model.dispose();
  }
});

test('a NaN or infinite gradient skips the step (counted, parameters and moments unchanged)', async () => {
  const { model } = toModel(W, 'f32', { train: true });
  const opt = new AdamW(model, { lr: 0.1 });
  const p = model.parameters().get('model.norm.weight')!;
  for (const g of model.grads.values()) (g.data as Float32Array).fill(0.01);
  await opt.step();
  const before = f32(p).slice(), m = f32(opt.expAvg).slice();
  (model.grads.get('model.layers.1.mlp.up_proj.weight')!.data as Float32Array)[5] = NaN;
  const r = await opt.step();
  assert.ok(r.skipped && Number.isNaN(r.gradNorm));
  assert.is(opt.skippedSteps, 1);
  assert.is(opt.stepCount, 1);
  assert.equal(Array.from(f32(p)), Array.from(before));
  assert.equal(Array.from(f32(opt.expAvg)), Array.from(m));
  (model.grads.get('model.layers.1.mlp.up_proj.weight')!.data as Float32Array)[5] = Infinity;
  assert.ok((await opt.step()).skipped);
  throwsLike(() => new AdamW(toModel(W).model), TypeError, /loaded with \{ train \}/);
  throwsLike(() => new AdamW(model, { betas: [0.9, 1] }), RangeError, /betas below 1/);
  await rejectsLike(clipGradNorm(model, 0), RangeError, /maxNorm/);
  opt.dispose(); model.dispose();
});

test('collate: rows of one prompt send its video once (videoRefs); rows of distinct prompts each theirs', () => {
  const video = (seed: number, t: number) => ({ pixelValuesVideos: Tensor.from(randomF32(t * 4 * 1176, seed), [t * 4, 1176]), videoGridThw: [[t, 2, 2]] as [number, number, number][], secondPerGridTs: [seed / 10] });
  const p = { row: {} as never, ids: Int32Array.from([1, 2]), bytes: 0, ...video(1, 2) };
  const q = { row: {} as never, ids: Int32Array.from([3]), bytes: 0, ...video(2, 1) };
  const text = { row: {} as never, ids: Int32Array.from([4]), bytes: 0 };
  const b = collate([p, q, text, p, p], [[5], [6], [7], [8], [9]]);
  assert.equal(b.videoGridThw, [[2, 2, 2], [1, 2, 2]], 'each distinct video once, in order of first use');
  assert.equal(b.secondPerGridTs, [0.1, 0.2]);
  assert.equal(Array.from(b.videoRefs!), [0, 1, 0, 0], 'per use (rows with a video, in order): the distinct one it shows');
  assert.equal(b.pixelValuesVideos!.shape, [12, 1176]);
  assert.equal(Array.from(f32(b.pixelValuesVideos!).subarray(0, 8 * 1176)), Array.from(f32(p.pixelValuesVideos)), 'p first');
  assert.equal(Array.from(f32(b.pixelValuesVideos!).subarray(8 * 1176)), Array.from(f32(q.pixelValuesVideos)), 'then q');
  assert.equal(Object.keys(mediaInputs(b)).sort(), ['pixelValuesVideos', 'secondPerGridTs', 'videoGridThw', 'videoRefs']);
  b.dispose();
  const c = collate([p, q], [[5], [6]]);
  assert.is(c.videoRefs, undefined, 'no refs when nothing is shared');
  assert.equal(c.videoGridThw, [[2, 2, 2], [1, 2, 2]]);
  c.dispose();
});

test('schedules: warm-up, cosine and linear decay to minLrRatio, constant', () => {
  const c = schedule('cosine', { warmupSteps: 10, totalSteps: 110, minLrRatio: 0.1 });
  assert.is(c(0), 0);
  assert.is(c(5), 0.5);
  assert.is(c(10), 1);
  assert.ok(Math.abs(c(60) - (0.1 + 0.9 * 0.5 * (1 + Math.cos(Math.PI * 0.5)))) < 1e-12);
  assert.ok(Math.abs(c(110) - 0.1) < 1e-12);
  const l = schedule('linear', { warmupSteps: 0, totalSteps: 100 });
  assert.is(l(0), 1);
  assert.ok(Math.abs(l(25) - 0.75) < 1e-12);
  assert.is(l(100), 0);
  const k = schedule('constant', { warmupSteps: 4 });
  assert.equal([0, 1, 2, 3, 4, 1000].map(k), [0, 0.25, 0.5, 0.75, 1, 1]);
  throwsLike(() => schedule('cosine', {}), TypeError, /totalSteps/);
  throwsLike(() => schedule('step' as never), RangeError, /'cosine', 'linear', 'constant' for kind/);
});

/** A checkpoint folder of the tiny model (f32 weights), for loadModel. */
function writeFolder(dir: string, dtype: 'f32' | 'bf16' = 'f32'): void {
  mkdirSync(dir, { recursive: true });
  const tensors = new Map<string, Tensor>();
  for (const [k, v] of W) tensors.set(k, Tensor.from(v, W.shapes.get(k)!, dtype));
  writeSafetensors(path.join(dir, 'model.safetensors'), tensors);
  for (const t of tensors.values()) t.dispose();
  writeFileSync(path.join(dir, 'config.json'), JSON.stringify(HF));
  writeFileSync(path.join(dir, 'generation_config.json'), JSON.stringify({ eos_token_id: 287 }));
}

test('model.save -> loadModel: identical logits (f32, sharded), bf16 rounding, the names and dtypes transformers reads', async () => {
  const dir = tmp('save');
  try {
    writeFolder(path.join(dir, 'src'));
    const m = await loadModel(path.join(dir, 'src'), { train: true });
    // Train a little so that the saved values are the master copy's, not the file's.
    for (const g of m.grads.values()) (g.data as Float32Array).set(randomF32(g.numel, g.numel, 0.1));
    const opt = new AdamW(m, { lr: 1e-2 });
    await opt.step();
    const c = CASES.imageVideo!;
    const want = f32(forwardCase(m, c).logits!).slice();
    await m.save(path.join(dir, 'f32'), { dtype: 'f32' });
    await m.save(path.join(dir, 'sharded'), { dtype: 'f32', maxShardBytes: 200_000 });
    await m.save(path.join(dir, 'bf16'));
    for (const f of ['f32', 'sharded']) {
      const back = await loadModel(path.join(dir, f));
      assert.equal(Array.from(f32(forwardCase(back, c).logits!)), Array.from(want), `${f}: identical logits`);
      back.dispose(); back.checkpoint.dispose();
    }
    assert.ok(existsSync(path.join(dir, 'sharded', 'model.safetensors.index.json')));
    assert.ok(readdirSync(path.join(dir, 'sharded')).filter((f) => /^model-\d{5}-of-\d{5}\.safetensors$/.test(f)).length > 1, 'several shards');
    assert.ok(existsSync(path.join(dir, 'f32', 'generation_config.json')), 'the source folder\'s files are carried over');
    const st = readSafetensors(path.join(dir, 'bf16', 'model.safetensors'));
    assert.equal(new Set(st.tensors.keys()), new Set(W.keys()), 'the checkpoint\'s names');
    assert.ok([...st.tensors.values()].every((t) => t.dtype === 'bf16'));
    assert.equal(st.tensors.get('visual.patch_embed.proj.weight')!.shape, [32, 3, 2, 14, 14], 'the Conv3d weight keeps its 5-D shape');
    assert.is(st.metadata.format, 'pt');
    const cfg = JSON.parse(readFileSync(path.join(dir, 'bf16', 'config.json'), 'utf8')) as { torch_dtype: string; hidden_size: number };
    assert.is(cfg.torch_dtype, 'bfloat16');
    assert.is(cfg.hidden_size, 32);
    // bf16: the logits of a model built from the bf16-rounded master values.
    const rounded = new Map<string, Tensor>();
    for (const [k, t] of m.parameters()) rounded.set(k, t.to('bf16'));
    const ref = toModel(W).model;
    const b16 = await loadModel(path.join(dir, 'bf16'));
    const viaRounded = new (ref.constructor as typeof import('../src/index.js').QwenModel)(ref.config, rounded);
    assert.equal(Array.from(f32(forwardCase(b16, c).logits!)), Array.from(f32(forwardCase(viaRounded, c).logits!)), 'bf16 save = rounded weights');
    st.dispose(); b16.dispose(); b16.checkpoint.dispose(); viaRounded.dispose(); ref.dispose(); opt.dispose(); m.dispose(); m.checkpoint.dispose();
  } finally { rmSync(dir, { recursive: true, force: true }); }
});

test('LoRA: a saved PEFT adapter loads with the same logits and merges into the weights', async () => {
  const dir = tmp('lora');
  try {
    writeFolder(path.join(dir, 'base'));
    const m = await loadModel(path.join(dir, 'base'), { train: { lora: { rank: 4, alpha: 8, targets: ['q_proj', 'v_proj', 'down_proj', 'qkv'] } } });
    for (const [k, t] of m.parameters()) if (k.endsWith('lora_B.weight')) (t.data as Float32Array).set(randomF32(t.numel, t.numel, 0.3));
    const c = CASES.imageVideo!;
    const withAdapter = f32(forwardCase(m, c).logits!).slice();
    const base = await loadModel(path.join(dir, 'base'));
    const plain = f32(forwardCase(base, c).logits!).slice();
    assert.ok(withAdapter.some((v, i) => Math.abs(v - plain[i]!) > 1e-3), 'the adapter changes the logits');
    m.saveAdapter(path.join(dir, 'adapter'), path.join(dir, 'base'));
    const ac = JSON.parse(readFileSync(path.join(dir, 'adapter', 'adapter_config.json'), 'utf8')) as Record<string, unknown>;
    assert.equal([ac.peft_type, ac.r, ac.lora_alpha], ['LORA', 4, 8]);
    const keys = [...readSafetensors(path.join(dir, 'adapter', 'adapter_model.safetensors')).tensors.keys()];
    assert.ok(keys.includes('base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight'), 'PEFT names');
    const loaded = await loadModel(path.join(dir, 'base'), { adapter: path.join(dir, 'adapter') });
    assert.equal(Array.from(f32(forwardCase(loaded, c).logits!)), Array.from(withAdapter), 'the loaded adapter gives the same logits');
    loaded.mergeAdapter();
    assertRel(f32(forwardCase(loaded, c).logits!), withAdapter, 1e-5, 'merged weights give the adapter\'s logits');
    assert.ok([...loaded.parameters()].filter(([k]) => k.endsWith('lora_B.weight')).every(([, t]) => f32(t).every((v) => v === 0)), 'B zeroed after the merge');
    await loaded.save(path.join(dir, 'merged'), { dtype: 'f32' });
    const merged = await loadModel(path.join(dir, 'merged'));
    assertRel(f32(forwardCase(merged, c).logits!), withAdapter, 1e-5, 'the merged checkpoint');
    writeFileSync(path.join(dir, 'adapter', 'adapter_config.json'), JSON.stringify({ ...ac, r: 5 }));
    await rejectsLike(loadModel(path.join(dir, 'base'), { adapter: path.join(dir, 'adapter') }), RangeError, /lora_A\.weight of shape \[5, 32\]/);
    for (const x of [m, base, loaded, merged]) { x.dispose(); x.checkpoint.dispose(); }
  } finally { rmSync(dir, { recursive: true, force: true }); }
});

// ---- supervised fine-tuning from the CLI, on the synthetic benchmark ----
// Each CLI run has a time limit (test/skip.ts: 300 s; a hang fails its test with the command).
const CLI = (args: string[], opts: { cwd: string }) => runCliTimed(args, opts);

function synthAndBase(dir: string, train: number): void {
  let r = CLI(['synth', '--out', 'data', '--train', String(train), '--test', '4', '--variant', '0', '--seed', '3'], { cwd: dir });
  assert.is(r.status, 0, `synth: ${r.stderr}`);
  r = CLI(['init', '--tokenizer', 'data/tokenizer.json', '--out', 'base', '--preset', 'tiny', '--seed', '2'], { cwd: dir });
  assert.is(r.status, 0, `init: ${r.stderr}`);
}

test('train-sft from the CLI memorises 16 examples (loss < 0.05, greedy answers right)', async () => {
  if (skipWithoutFfmpeg()) return;
  const dir = tmp('sft');
  try {
    synthAndBase(dir, 16);
    const r = CLI(['train-sft', '--model', 'base', '--data', 'data/train.json', '--out', 'runs/sft', '--epochs', '150', '--batch-size', '4',
      '--lr', '3e-3', '--schedule', 'cosine', '--warmup-steps', '10', '--save-dtype', 'f32', '--quiet'], { cwd: dir });
    assert.is(r.status, 0, `train-sft: ${r.stderr}`);
    const lines = readFileSync(path.join(dir, 'runs', 'sft', 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as { step: number; loss: number; seconds: number; optimizerSeconds: number });
    assert.is(lines.length, 600);
    assert.ok(lines.every((l) => l.optimizerSeconds > 0 && l.optimizerSeconds < l.seconds), 'the optimizer\'s time is a part of each step\'s');
    assert.ok(lines.at(-1)!.loss < 0.05, `final loss ${lines.at(-1)!.loss}`);
    assert.ok(lines[0]!.loss > 2, `first loss ${lines[0]!.loss}`);
    const e = CLI(['eval', 'runs/sft', '--data', 'data/train.json', '--out', 'eval.json'], { cwd: dir });
    assert.is(e.status, 0, `eval: ${e.stderr}`);
    const rep = JSON.parse(readFileSync(path.join(dir, 'eval.json'), 'utf8')) as { overall: { accuracy: number; count: number } };
    assert.is(rep.overall.count, 16);
    assert.is(rep.overall.accuracy, 1, 'every greedy answer right');
  } finally { rmSync(dir, { recursive: true, force: true }); }
});

test('train-sft --precision bf16 (every GEMM of the step with bf16 products) trains as the f32 run does', async () => {
  if (skipWithoutFfmpeg()) return;
  const dir = tmp('sft-bf16');
  try {
    synthAndBase(dir, 8);
    const losses = (run: string) => readFileSync(path.join(dir, 'runs', run, 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => (JSON.parse(l) as { loss: number }).loss);
    for (const [run, precision] of [['f32', 'f32'], ['bf16', 'bf16']] as const) {
      const r = CLI(['train-sft', '--model', 'base', '--data', 'data/train.json', '--out', `runs/${run}`, '--epochs', '40', '--batch-size', '4',
        '--lr', '3e-3', '--warmup-steps', '5', '--seed', '1', '--precision', precision, '--quiet'], { cwd: dir });
      assert.is(r.status, 0, `train-sft ${precision}: ${r.stderr}`);
    }
    const f = losses('f32'), b = losses('bf16');
    assert.is(b.length, 80);
    // The first step sees the same weights: its loss differs only by the bf16 products' rounding ...
    assert.ok(Math.abs(b[0]! - f[0]!) < 0.02 * f[0]! && b[0] !== f[0], `first losses f32 ${f[0]}, bf16 ${b[0]}`);
    // ... and training works as well: the last 10 steps' mean loss falls as far.
    const tail = (x: number[]) => x.slice(-10).reduce((s, v) => s + v, 0) / 10;
    assert.ok(tail(b) < 0.2 * b[0]! && tail(b) < 2 * tail(f) + 0.05, `bf16 tail ${tail(b)} (f32 ${tail(f)}, first ${b[0]})`);
  } finally { rmSync(dir, { recursive: true, force: true }); }
});

test('kill -9 at a random step, resume: the same final weights as an uninterrupted run; SIGINT writes a checkpoint', async () => {
  if (skipWithoutFfmpeg()) return;
  const dir = tmp('resume');
  try {
    synthAndBase(dir, 12);
    const args = (out: string) => ['train-sft', '--model', 'base', '--data', 'data/train.json', '--out', out, '--max-steps', '24', '--batch-size', '2',
      '--grad-accum', '2', '--lr', '2e-3', '--schedule', 'cosine', '--warmup-steps', '3', '--save-every', '1', '--save-dtype', 'f32', '--resume', '--quiet'];
    const full = CLI(args('runs/full'), { cwd: dir });
    assert.is(full.status, 0, `the uninterrupted run: ${full.stderr}`);
    // --resume-from: another run's checkpoint, continued in a new folder, ends where that run ended.
    const fresh = (out: string) => args(out).filter((x) => x !== '--resume');
    const kept = readdirSync(path.join(dir, 'runs', 'full')).map((f) => /^checkpoint-(\d+)$/.exec(f)).filter((m) => m !== null).map((m) => Number(m![1])).sort((x, y) => x - y);
    const from = kept[0]!;
    assert.ok(from < 24, `the full run keeps a checkpoint before its end: ${kept.join(', ')}`);
    const br = CLI([...fresh('runs/branch'), '--resume-from', `runs/full/checkpoint-${from}`], { cwd: dir });
    assert.is(br.status, 0, `resumed from another run's checkpoint: ${br.stderr}`);
    {
      const a = readSafetensors(path.join(dir, 'runs', 'full', 'model.safetensors'));
      const b = readSafetensors(path.join(dir, 'runs', 'branch', 'model.safetensors'));
      for (const [k, t] of a.tensors) assert.equal(Array.from(f32(b.tensors.get(k)!)), Array.from(f32(t)), `${k}: bitwise equal after --resume-from checkpoint-${from}`);
      a.dispose(); b.dispose();
      const n = readFileSync(path.join(dir, 'runs', 'branch', 'metrics.jsonl'), 'utf8').trim().split('\n').length;
      assert.is(n, 24 - from, `the branch ran steps ${from + 1} to 24 only`);
    }
    const bad = CLI([...fresh('runs/bad'), '--resume-from', 'runs/nothing'], { cwd: dir });
    assert.is.not(bad.status, 0);
    assert.match(bad.stderr, /Expected resume to be a checkpoint folder .* but received 'runs\/nothing'/);
    assert.not.ok(existsSync(path.join(dir, 'runs', 'bad', 'metrics.jsonl')), 'nothing trained');
    const both = CLI([...args('runs/bad'), '--resume-from', 'runs/full'], { cwd: dir });
    assert.is.not(both.status, 0);
    assert.match(both.stderr, /--resume or --resume-from DIR, not both/);
    // The interrupted run: killed when its metrics reach a random step, then resumed (twice).
    const kill = async (at: number) => {
      const child = spawn(process.execPath, ['--import', TSX, path.join(ROOT, 'src', 'cli', 'index.ts'), ...args('runs/cut')], { cwd: dir, stdio: 'ignore' });
      const poll = setInterval(() => {
        const f = path.join(dir, 'runs', 'cut', 'metrics.jsonl');
        const n = existsSync(f) ? readFileSync(f, 'utf8').split('\n').filter(Boolean).length : 0;
        if (n >= at) { clearInterval(poll); child.kill('SIGKILL'); }
      }, 5);
      try { await exitOf(child, `train-sft (to be killed at step ${at})`); } finally { clearInterval(poll); }
    };
    const first = 3 + Math.floor(Math.random() * 8);
    await kill(first);
    await kill(first + 5);
    const cut = CLI(args('runs/cut'), { cwd: dir });
    assert.is(cut.status, 0, `the resumed run: ${cut.stderr}`);
    const a = readSafetensors(path.join(dir, 'runs', 'full', 'model.safetensors'));
    const b = readSafetensors(path.join(dir, 'runs', 'cut', 'model.safetensors'));
    for (const [k, t] of a.tensors) assert.equal(Array.from(f32(b.tensors.get(k)!)), Array.from(f32(t)), `${k}: bitwise equal after kill -9 and resume (killed at steps ${first}, ${first + 5})`);
    const ma = readFileSync(path.join(dir, 'runs', 'full', 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => (JSON.parse(l) as { loss: number }).loss);
    const mb = readFileSync(path.join(dir, 'runs', 'cut', 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => (JSON.parse(l) as { loss: number }).loss);
    assert.equal(mb, ma, 'one metrics line per step, the same losses');
    a.dispose(); b.dispose();
    // SIGINT: the step finishes, a checkpoint is written, exit code 130.
    const child = spawn(process.execPath, ['--import', TSX, path.join(ROOT, 'src', 'cli', 'index.ts'), ...args('runs/int').filter((x) => x !== '--save-every' && x !== '1'), '--save-every', '0'], { cwd: dir, stdio: 'ignore' });
    const poll = setInterval(() => {
      const f = path.join(dir, 'runs', 'int', 'metrics.jsonl');
      if (existsSync(f) && readFileSync(f, 'utf8').split('\n').filter(Boolean).length >= 2) { clearInterval(poll); child.kill('SIGINT'); }
    }, 5);
    let code: number | null;
    try { code = (await exitOf(child, 'train-sft (to be stopped by SIGINT)')).code; } finally { clearInterval(poll); }
    assert.is(code, 130);
    const ck = readdirSync(path.join(dir, 'runs', 'int')).filter((f) => f.startsWith('checkpoint-'));
    assert.is(ck.length, 1, `one checkpoint on SIGINT: ${ck.join(', ')}`);
    assert.ok(existsSync(path.join(dir, 'runs', 'int', ck[0]!, 'trainer_state.json')));
  } finally { rmSync(dir, { recursive: true, force: true }); }
});

test.run();
