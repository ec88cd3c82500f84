// The training core: every parameter's gradient (both towers, merger, embeddings, norms, biases,
// LM head) against PyTorch autograd in float64 (test/ref/qwen_ref.py) on the tiny random
// Qwen2.5-VL of qwen_fixture.ts, through both entry points (dHidden, dLogits), tied and untied
// embeddings, LoRA against the reference with merged weights; finite differences of the f32
// network itself; recomputation bitwise equal; frozen prefixes; inference on a training model;
// and the errors of misuse.
import { test } from 'uvu';
import * as assert from 'uvu/assert';

import { Tensor } from '../src/tensor.js';
import { memoryStats } from '../src/backend.js';
import type { QwenModel } from '../src/index.js';
import { assertRel, randomF32, rejectsLike, throwsLike } from './helpers.js';
import { noPython, skip } from './skip.js';
import { CASES, HF, IMG, PATCH, VE, VID, VS, f32, forwardCase, keep, makeWeights, runRef, toModel, imageGrid, imagePixels, videoGrid, videoPixels,
  type Case, type HFConfig } from './qwen_fixture.js';

const W = makeWeights(100);
// The image after the video: placeholders in either order must take their own embeddings.
const videoImage: Case = {
  ids: [[3, VS, ...new Array<number>(30).fill(VID), VE, 4, VS, ...new Array<number>(8).fill(IMG), VE, 12]],
  image: { grid: imageGrid, pixels: imagePixels }, video: { grid: videoGrid, pixels: videoPixels, spg: [0.5] },
};
const GRAD_CASES: Record<string, Case> = { ...CASES, videoImage };

/** A cotangent for [B, L, X] outputs, zero at padding positions (those are not part of the model). */
function cotangent(c: Case, X: number, seed: number): Float32Array {
  const B = c.ids.length, L = c.ids[0]!.length;
  const d = randomF32(B * L * X, seed);
  if (c.mask) c.mask.flat().forEach((m, i) => { if (!m) d.fill(0, i * X, (i + 1) * X); });
  return d;
}

/** Every gradient of the model against the reference's, by relative error per tensor. */
function compareGrads(model: QwenModel, ref: Map<string, Float64Array>, tol: number, what: string, names?: string[]): void {
  const grads = model.grads;
  assert.ok(grads.size > 0, 'the model has gradients');
  for (const name of names ?? [...grads.keys()]) {
    const g = grads.get(name);
    assert.ok(g, `${what}: gradient of ${name}`);
    const want = ref.get(name);
    assert.ok(want, `${what}: the reference has a gradient for ${name}`);
    assertRel(f32(g!), want!, tol, `${what}: ${name}`);
  }
}

for (const [name, c] of Object.entries(GRAD_CASES)) {
  test(`gradients vs PyTorch float64 autograd (dHidden): ${name}`, () => {
    const { model, stored } = toModel(W, 'f32', { train: true });
    const dHidden = cotangent(c, HF.hidden_size, 11);
    const ref = runRef(c, stored, W.shapes, { dHidden });
    if (!ref) return skip(noPython(['torch']));
    const out = forwardCase(model, c, { grad: true });
    assertRel(keep(f32(out.hidden), c.mask, HF.hidden_size), keep(ref.hidden!, c.mask, HF.hidden_size), 3e-5, 'hidden (same forward)');
    model.backwardSync(out, { dHidden: Tensor.from(dHidden, out.hidden.shape) });
    // Every trainable parameter, checked: lm_head gets nothing through dHidden (zero both sides).
    assert.equal(new Set(model.grads.keys()), new Set(W.keys()), 'one gradient per checkpoint parameter');
    compareGrads(model, ref.grads, 1e-4, name);
    out.dispose();
    model.dispose();
  });
}

for (const tied of [false, true]) {
  test(`gradients vs PyTorch float64 autograd (dLogits), ${tied ? 'tied' : 'untied'} embeddings`, () => {
    const hf: HFConfig = { ...HF, tie_word_embeddings: tied };
    const w = tied ? makeWeights(100, hf) : W;
    const { model, stored } = toModel(w, 'f32', { train: true }, hf);
    const c = CASES.imageVideo!;
    const dLogits = cotangent(c, HF.vocab_size, 12);
    const ref = runRef(c, stored, w.shapes, { dLogits, config: hf });
    if (!ref) return skip(noPython(['torch']));
    const out = forwardCase(model, c, { grad: true });
    model.backwardSync(out, { dLogits: Tensor.from(dLogits, out.logits!.shape) });
    compareGrads(model, ref.grads, 1e-4, tied ? 'tied' : 'untied');
    if (tied) {
      assert.not.ok(model.grads.has('lm_head.weight'));
      assert.equal(Array.from(f32(model.lmHeadGrad!)), Array.from(f32(model.grads.get('model.embed_tokens.weight')!)), 'the LM head gradient is the embedding\'s');
    }
    model.dispose();
  });
}

test('dHidden and dLogits entry points agree; backward adds into the gradients; zeroGrad', () => {
  const { model } = toModel(W, 'f32', { train: true });
  const c = CASES.video!;
  const dLogits = cotangent(c, HF.vocab_size, 13);
  const a = forwardCase(model, c, { grad: true });
  model.backwardSync(a, { dLogits: Tensor.from(dLogits, a.logits!.shape) });
  const viaLogits = new Map([...model.grads].map(([k, v]) => [k, f32(v).slice()]));
  model.zeroGrad();
  for (const g of model.grads.values()) assert.ok(f32(g).every((x) => x === 0), 'zeroGrad zeroes');
  // dHidden = dLogits @ lm_head in float64; the head's own gradient is dLogits^T hidden.
  const head = f32(model.parameters().get('lm_head.weight')!);
  const L = c.ids[0]!.length, C = HF.hidden_size, V = HF.vocab_size;
  const dh = new Float32Array(L * C);
  for (let t = 0; t < L; t++) for (let k = 0; k < C; k++) {
    let s = 0;
    for (let v = 0; v < V; v++) s += dLogits[t * V + v]! * head[v * C + k]!;
    dh[t * C + k] = s;
  }
  const b = forwardCase(model, c, { grad: true });
  model.backwardSync(b, { dHidden: Tensor.from(dh, b.hidden.shape) });
  for (const [k, v] of model.grads) {
    if (k === 'lm_head.weight') continue;
    assertRel(f32(v), viaLogits.get(k)!, 1e-5, `entry points agree: ${k}`);
  }
  // A second backward on a second forward adds the same again.
  const once = new Map([...model.grads].map(([k, v]) => [k, f32(v).slice()]));
  const c2 = forwardCase(model, c, { grad: true });
  model.backwardSync(c2, { dHidden: Tensor.from(dh, c2.hidden.shape) });
  for (const [k, v] of model.grads) assertRel(f32(v), once.get(k)!.map((x) => 2 * x), 1e-6, `accumulates: ${k}`);
  model.dispose();
});

test('shared media: rows that share a video (videoRefs) get the forward and the gradients of the video sent once per row', () => {
  // Rows 0 and 2 show video A, row 1 video B (other pixels, other seconds per grid step).
  const pixB = randomF32(videoPixels.length, 71);
  const row = (k: number) => [3 + k, VS, ...new Array<number>(30).fill(VID), VE, 7 + k, 8];
  const ids = Tensor.from(Int32Array.from([...row(0), ...row(1), ...row(2)]), [3, row(0).length]);
  const cat = (...xs: Float32Array[]) => { const o = new Float32Array(xs.reduce((a, x) => a + x.length, 0)); let at = 0; for (const x of xs) { o.set(x, at); at += x.length; } return o; };
  const run = (shared: boolean) => {
    const { model } = toModel(W, 'f32', { train: true });
    const px = shared ? cat(videoPixels, pixB) : cat(videoPixels, pixB, videoPixels);
    const out = model.forwardSync({
      inputIds: ids, grad: true, pixelValuesVideos: Tensor.from(px, [px.length / PATCH, PATCH]),
      videoGridThw: shared ? [videoGrid[0]!, videoGrid[0]!] : [videoGrid[0]!, videoGrid[0]!, videoGrid[0]!],
      secondPerGridTs: shared ? [0.5, 1.5] : [0.5, 1.5, 0.5], ...(shared ? { videoRefs: [0, 1, 0] } : {}),
    });
    const hidden = f32(out.hidden).slice();
    const positions = out.positionIds.slice();
    model.backwardSync(out, { dHidden: Tensor.from(randomF32(hidden.length, 72), out.hidden.shape) });
    const grads = new Map([...model.grads].map(([k, v]) => [k, f32(v).slice()]));
    out.dispose();
    model.dispose();
    return { hidden, positions, grads };
  };
  const once = run(true), each = run(false);
  assert.equal(once.positions, each.positions, 'the same M-RoPE positions (seconds per grid step follow the refs)');
  assertRel(once.hidden, each.hidden, 1e-6, 'the same forward');
  for (const [k, g] of each.grads) {
    assertRel(once.grads.get(k)!, g, k.startsWith('visual.') ? 1e-5 : 1e-6, `the same gradient: ${k}`);
  }
  assert.ok(each.grads.get('visual.patch_embed.proj.weight')!.some((x) => x !== 0), 'the vision tower has a gradient');
  // errors: refs that point nowhere, or that do not match the placeholders, or refs without pixels
  const { model } = toModel(W, 'f32', { train: true });
  const two = { inputIds: ids, pixelValuesVideos: Tensor.from(cat(videoPixels, pixB), [2 * videoPixels.length / PATCH, PATCH]), videoGridThw: [videoGrid[0]!, videoGrid[0]!] };
  throwsLike(() => model.forwardSync({ ...two, videoRefs: [0, 2, 0] }), RangeError, /integers in \[0, 1\] .* for videoRefs\[1\] but received 2/);
  throwsLike(() => model.forwardSync({ ...two, videoRefs: [0, 1] }), RangeError, /as many video tokens in inputIds as video embeddings \(2 uses through videoRefs\) \(60\) but found 90/);
  throwsLike(() => model.forwardSync({ inputIds: ids, videoRefs: [0] }), TypeError, /videoRefs only with the pixels it refers to \(pixelValuesVideos\)/);
  model.dispose();
});

test('finite differences of the f32 network on a scalar of every parameter kind', () => {
  const { model } = toModel(W, 'f32', { train: true });
  const c = CASES.imageVideo!;
  const R = cotangent(c, HF.hidden_size, 21);
  const loss = () => {
    const o = forwardCase(model, c);
    const h = f32(o.hidden);
    let s = 0;
    for (let i = 0; i < h.length; i++) s += h[i]! * R[i]!;
    o.dispose();
    return s;
  };
  const out = forwardCase(model, c, { grad: true });
  model.backwardSync(out, { dHidden: Tensor.from(R, out.hidden.shape) });
  const params = model.parameters(), grads = model.grads;
  const kinds = ['model.embed_tokens.weight', 'model.layers.0.input_layernorm.weight', 'model.layers.1.post_attention_layernorm.weight',
    'model.layers.0.self_attn.q_proj.weight', 'model.layers.0.self_attn.q_proj.bias', 'model.layers.1.self_attn.k_proj.weight',
    'model.layers.1.self_attn.v_proj.bias', 'model.layers.0.self_attn.o_proj.weight', 'model.layers.1.mlp.gate_proj.weight',
    'model.layers.0.mlp.up_proj.weight', 'model.layers.1.mlp.down_proj.weight', 'model.norm.weight', 'visual.patch_embed.proj.weight',
    'visual.blocks.0.norm1.weight', 'visual.blocks.2.norm2.weight', 'visual.blocks.1.attn.qkv.weight', 'visual.blocks.0.attn.qkv.bias',
    'visual.blocks.2.attn.proj.weight', 'visual.blocks.1.mlp.gate_proj.bias', 'visual.blocks.0.mlp.down_proj.weight', 'visual.merger.ln_q.weight',
    'visual.merger.mlp.0.weight', 'visual.merger.mlp.2.bias'];
  for (const name of kinds) {
    const p = f32(params.get(name)!), g = f32(grads.get(name)!);
    let k = 0;
    for (let i = 0; i < g.length; i++) if (Math.abs(g[i]!) > Math.abs(g[k]!)) k = i;
    const h = 1e-2, x0 = p[k]!;
    p[k] = x0 + h; const lp = loss(); p[k] = x0 - h; const lm = loss(); p[k] = x0;
    const fd = (lp - lm) / (2 * h);
    // f32 forward: differences of ~1e2-sized losses carry ~1e-5 absolute noise, so 2e-3 relative.
    assert.ok(Math.abs(fd - g[k]!) <= 2e-3 * Math.abs(fd), `${name}[${k}]: gradient ${g[k]} vs finite difference ${fd}`);
  }
  model.dispose();
});

test("recompute: 'layer' gives bitwise the gradients of 'none' and holds fewer activations", () => {
  const c = CASES.imageVideo!;
  const R = cotangent(c, HF.hidden_size, 31);
  const run = (recompute: 'none' | 'layer') => {
    const { model } = toModel(W, 'f32', { train: { recompute } });
    const before = memoryStats().liveBytes;
    const out = forwardCase(model, c, { grad: true });
    const held = memoryStats().liveBytes - before; // what the forward keeps for the backward
    model.backwardSync(out, { dHidden: Tensor.from(R, out.hidden.shape) });
    const g = new Map([...model.grads].map(([k, v]) => [k, f32(v).slice()]));
    model.dispose();
    return { g, held };
  };
  const none = run('none'), layer = run('layer');
  for (const [k, v] of none.g) assert.equal(Array.from(layer.g.get(k)!), Array.from(v), `bitwise: ${k}`);
  assert.ok(layer.held > 0 && layer.held < none.held, `'layer' holds fewer activation bytes (${layer.held} against ${none.held})`);
});

test('freeze: frozen prefixes get no gradient buffer and no work; the rest is unchanged', () => {
  const c = CASES.imageVideo!;
  const R = cotangent(c, HF.hidden_size, 41);
  const full = toModel(W, 'f32', { train: true }).model;
  const frozen = toModel(W, 'f32', { train: { freeze: ['visual.', 'model.layers.0.'] } }).model;
  for (const m of [full, frozen]) {
    const out = forwardCase(m, c, { grad: true });
    m.backwardSync(out, { dHidden: Tensor.from(R, out.hidden.shape) });
  }
  const names = [...frozen.grads.keys()];
  assert.ok(names.length > 0 && names.every((n) => !n.startsWith('visual.') && !n.startsWith('model.layers.0.')), 'no frozen gradient');
  assert.equal(new Set(frozen.parameters().keys()), new Set(names), 'parameters() are the trainable ones');
  assert.ok(names.includes('model.embed_tokens.weight') && names.includes('model.layers.1.mlp.up_proj.weight'));
  for (const n of names) assert.equal(Array.from(f32(frozen.grads.get(n)!)), Array.from(f32(full.grads.get(n)!)), `unchanged: ${n}`);
  // Frozen weights stay as given (no f32 master copy): the checkpoint's tensor itself is read.
  assert.is(frozen.flat.master!.numel < full.flat.master!.numel, true);
  full.dispose(); frozen.dispose();
});

test('LoRA: only adapters train; their gradients equal the reference with merged weights W + (alpha/r) B A', () => {
  const c = CASES.imageVideo!;
  const rank = 3, alpha = 6;
  const { model, stored } = toModel(W, 'f32', { train: { lora: { rank, alpha, targets: ['q_proj', 'down_proj', 'qkv', 'proj'], seed: 5 } } });
  const params = model.parameters();
  const names = [...params.keys()];
  assert.ok(names.length > 0 && names.every((n) => /\.lora_[AB]\.weight$/.test(n)), 'only adapters are parameters');
  assert.ok(names.includes('model.layers.1.self_attn.q_proj.lora_A.weight') && names.includes('visual.blocks.2.attn.proj.lora_B.weight') &&
    names.includes('visual.blocks.0.attn.qkv.lora_A.weight') && names.includes('visual.blocks.1.mlp.down_proj.lora_B.weight'));
  assert.not.ok(names.some((n) => n.includes('k_proj') || n.includes('merger')), 'untargeted modules have no adapter');
  // PEFT's start: B = 0 (the model is unchanged), A uniform in +-1/sqrt(in).
  const A = f32(params.get('model.layers.0.self_attn.q_proj.lora_A.weight')!);
  assert.ok(A.every((v) => Math.abs(v) <= 1 / Math.sqrt(HF.hidden_size)) && A.some((v) => v !== 0));
  assert.ok(f32(params.get('model.layers.0.self_attn.q_proj.lora_B.weight')!).every((v) => v === 0));
  // Give B values so that A gets a gradient too, then compare with the reference.
  let s = 900;
  const lw = new Map<string, { v: Float32Array; shape: number[] }>();
  for (const [n, t] of params) {
    if (n.endsWith('lora_B.weight')) f32(t).set(randomF32(t.numel, s++, 0.2));
    lw.set(n, { v: f32(t).slice(), shape: [...t.shape] });
  }
  const dHidden = cotangent(c, HF.hidden_size, 51);
  const ref = runRef(c, stored, W.shapes, { dHidden, lora: { rank, alpha, weights: lw } });
  if (!ref) return skip(noPython(['torch']));
  const out = forwardCase(model, c, { grad: true });
  assertRel(f32(out.hidden), ref.hidden!, 3e-5, 'hidden with adapters');
  model.backwardSync(out, { dHidden: Tensor.from(dHidden, out.hidden.shape) });
  compareGrads(model, ref.grads, 1e-4, 'lora');
  model.dispose();
});

test('inference on a training model equals the inference model (forward and generate)', async () => {
  const { model: inf } = toModel(W);
  const { model: tr } = toModel(W, 'f32', { train: true });
  for (const c of Object.values(GRAD_CASES)) {
    const a = forwardCase(inf, c), b = forwardCase(tr, c);
    assert.equal(Array.from(f32(a.logits!)), Array.from(f32(b.logits!)), 'bitwise equal logits');
  }
  const c = CASES.imageVideo!;
  const opts = {
    inputIds: c.ids[0]!, pixelValues: Tensor.from(c.image!.pixels, [c.image!.pixels.length / PATCH, PATCH]), imageGridThw: c.image!.grid,
    pixelValuesVideos: Tensor.from(c.video!.pixels, [c.video!.pixels.length / PATCH, PATCH]), videoGridThw: c.video!.grid,
    maxNewTokens: 6, temperature: 1, n: 3, seed: 7,
  };
  assert.equal(await tr.generate(opts), await inf.generate(opts), 'the same samples');
  inf.dispose(); tr.dispose();
});

test('misuse: clear errors, no crash', async () => {
  const { model: inf } = toModel(W);
  const { model } = toModel(W, 'f32', { train: true });
  const c = CASES.video!;
  throwsLike(() => forwardCase(inf, c, { grad: true }), TypeError, /loaded with \{ train \} for grad: true/);
  const plain = forwardCase(model, c);
  throwsLike(() => model.backwardSync(plain, { dHidden: Tensor.zeros(plain.hidden.shape) }), TypeError, /forward with grad: true/);
  const out = forwardCase(model, c, { grad: true });
  throwsLike(() => model.backwardSync(out, {}), TypeError, /dLogits or dHidden/);
  throwsLike(() => model.backwardSync(out, { dHidden: Tensor.zeros([1, 3, 32]) }), RangeError, /dHidden of shape \[1, 36, 32\] but received \[1, 3, 32\]/);
  throwsLike(() => model.backwardSync(out, { dLogits: Tensor.zeros([1, 36, 300], 'bf16') }), TypeError, /dtype f32 for dLogits/);
  model.backwardSync(out, { dHidden: Tensor.zeros(out.hidden.shape) });
  throwsLike(() => model.backwardSync(out, { dHidden: Tensor.zeros(out.hidden.shape) }), TypeError, /not yet used by backward/);
  const gone = forwardCase(model, c, { grad: true });
  gone.dispose();
  await rejectsLike(model.backward(gone, { dHidden: Tensor.zeros(gone.hidden.shape) }), TypeError, /not disposed/);
  const noLogits = model.forwardSync({ inputIds: [1, 2, 3], logits: 'none', grad: true });
  throwsLike(() => model.backwardSync(noLogits, { dLogits: Tensor.zeros([1, 3, 300]) }), TypeError, /no logits/);
  await rejectsLike(model.forward({ inputIds: [1, 2], grad: true, cache: model.createCache(1, 4) }), TypeError, /no cache with grad/);
  throwsLike(() => model.forwardSync({ inputIds: Tensor.from(Int32Array.from([5, 6, 7, 8, 9, 10]), [2, 3]), attentionMask: Tensor.from(Int32Array.from([0, 1, 1, 1, 0, 1]), [2, 3]) }),
    RangeError, /one run of 1s \(padding before or after\) but row 1 has a gap/, 'a mask with a gap');
  throwsLike(() => toModel(W, 'f32', { train: { lora: { rank: 2, dropout: 0.1 } } }), RangeError, /train\.lora\.dropout/);
  throwsLike(() => toModel(W, 'f32', { train: { lora: { rank: 2, targets: ['nothing'] } } }), RangeError, /match some linear layers/);
  throwsLike(() => toModel(W, 'f32', { train: { recompute: 'all' as never } }), RangeError, /'none', 'layer' for train\.recompute/);
  // A forward result disposed after its backward started: the job keeps what it needs.
  const busy = forwardCase(model, c, { grad: true });
  const p = model.backward(busy, { dHidden: Tensor.from(cotangent(c, HF.hidden_size, 3), busy.hidden.shape) });
  busy.dispose();
  await p;
  // A model disposed while a job runs: the job finishes, later calls fail cleanly.
  const q = model.forward({ inputIds: [1, 2, 3] });
  model.dispose();
  const r = await q;
  assert.is(r.hidden.shape[2], 32);
  throwsLike(() => model.forwardSync({ inputIds: [1, 2] }), TypeError, /disposed/);
  inf.dispose();
});

test.run();
