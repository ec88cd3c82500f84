// The Qwen2.5-VL network on a tiny random config against an independent float64 PyTorch
// reference (test/ref/qwen_ref.py): vision embeddings, M-RoPE position ids, final hidden states
// and logits for a video whose grid does not divide into whole windows, an image plus a video in
// one prompt, and a left-padded text-only batch; KV-cache decoding against full recompute; bf16
// weights; input errors.
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { test } from 'uvu';
import * as assert from 'uvu/assert';

import { generate, generateStream } from '../src/infer/generate.js';
import { sampleRows } from '../src/infer/rollout.js';
import { loadModel, preparePrompt, QwenTokenizer, VIDEOTHINKER_VIDEO_OPTIONS } from '../src/index.js';
import { QwenProcessor } from '../src/inputs/processor.js';
import { writeSafetensors } from '../src/model/safetensors.js';
import { QwenModel, qwenConfigFromHF, windowIndex } from '../src/index.js';
import { Tensor } from '../src/tensor.js';
import { tinyTokenizer } from './fixtures.js';
import { assertRel, randomF32, rejectsLike, relErr } from './helpers.js';
import { noPython, skip } from './skip.js';
import { CASES, f32, forwardCase, HF, makeWeights, PATCH, runRef, toModel, keep, VID, type Case } from './qwen_fixture.js';

const W = makeWeights(100);
const { model, stored } = toModel(W);
function ours(c: Case, m = model) {
  return forwardCase(m, c);
}

for (const [name, c] of Object.entries(CASES)) {
  test(`vs PyTorch float64: ${name}`, () => {
    const ref = runRef(c, stored, W.shapes);
    if (!ref) return skip(noPython(['torch']));
    const C = HF.hidden_size;
    if (c.video) {
      const e = model.visionForwardSync(Tensor.from(c.video.pixels, [c.video.pixels.length / PATCH, PATCH]), c.video.grid);
      assertRel(f32(e), ref.video_embeds!, 2e-5, `${name} video embeddings`);
    }
    if (c.image) {
      const e = model.visionForwardSync(Tensor.from(c.image.pixels, [c.image.pixels.length / PATCH, PATCH]), c.image.grid);
      assertRel(f32(e), ref.image_embeds!, 2e-5, `${name} image embeddings`);
    }
    const out = ours(c);
    const B = c.ids.length, L = c.ids[0]!.length;
    // Position ids: exact on real tokens.
    const pos = keep(Array.from({ length: B * L }, (_, i) => i), c.mask, 1);
    for (let s = 0; s < 3; s++) for (const i of pos) assert.is(out.positionIds[s * B * L + i], ref.position_ids![s * B * L + i], `${name} position ids stream ${s} token ${i}`);
    assertRel(keep(f32(out.hidden), c.mask, C), keep(ref.hidden!, c.mask, C), 3e-5, `${name} hidden states`);
    assertRel(keep(f32(out.logits!), c.mask, HF.vocab_size), keep(ref.logits!, c.mask, HF.vocab_size), 3e-5, `${name} logits`);
  });
}

test('KV-cache decoding equals full recompute (multimodal prompt and padded batch)', async () => {
  for (const c of [CASES.imageVideo!, CASES.paddedText!]) {
    const full = ours(c);
    const B = c.ids.length, L = c.ids[0]!.length, V = HF.vocab_size;
    const P = L - 3;
    const cache = model.createCache(B, L + 2);
    const pre: Case = { ...c, ids: c.ids.map((r) => r.slice(0, P)), mask: c.mask?.map((r) => r.slice(0, P)) };
    const o1 = await model.forward({
      inputIds: Tensor.from(Int32Array.from(pre.ids.flat()), [B, P]),
      attentionMask: pre.mask ? Tensor.from(Int32Array.from(pre.mask.flat()), [B, P]) : undefined,
      pixelValues: c.image ? Tensor.from(c.image.pixels, [c.image.pixels.length / PATCH, PATCH]) : undefined, imageGridThw: c.image?.grid,
      pixelValuesVideos: c.video ? Tensor.from(c.video.pixels, [c.video.pixels.length / PATCH, PATCH]) : undefined, videoGridThw: c.video?.grid,
      cache,
    });
    const fl = f32(full.logits!);
    const want = (t: number) => Array.from({ length: B * V }, (_, i) => fl[(Math.floor(i / V) * L + t) * V + (i % V)]!);
    const got1 = Array.from({ length: B * V }, (_, i) => f32(o1.logits!)[(Math.floor(i / V) * P + P - 1) * V + (i % V)]!);
    assertRel(got1, want(P - 1), 1e-5, 'prefill logits');
    for (let t = P; t < L; t++) {
      const o = await model.forward({ inputIds: Tensor.from(Int32Array.from(c.ids.map((r) => r[t]!)), [B, 1]), cache, logits: 'last' });
      assertRel(f32(o.logits!), want(t), 1e-5, `decode step ${t}`);
    }
    assert.is(cache.past, L);
    cache.dispose();
  }
});

test('bf16 weights: the network equals the reference run on the bf16 values', () => {
  const { model: m16, stored: s16 } = toModel(W, 'bf16');
  const c = CASES.imageVideo!;
  const ref = runRef(c, s16, W.shapes);
  if (!ref) return skip(noPython(['torch']));
  const out = ours(c, m16);
  assertRel(f32(out.logits!), ref.logits!, 3e-5, 'bf16 logits');
  // bf16 rounding changes the answer measurably: the comparison above is not vacuous.
  assert.ok(relErr(f32(out.logits!), runRef(c, stored, W.shapes)!.logits!) > 1e-4);
});

test('window index: windows of whole merged tokens, a permutation', () => {
  const { index, cuWindow } = windowIndex([[2, 10, 6], [1, 4, 8]], 112, 2, 14);
  assert.equal([...index].sort((a, b) => a - b), Array.from({ length: 38 }, (_, i) => i));
  assert.is(cuWindow[cuWindow.length - 1], 38 * 4);
  // Frame 0 of the video: 5 x 3 merged tokens in windows of 4 x 4 -> a 4 x 3 window then a 1 x 3 one.
  assert.equal(Array.from(cuWindow.slice(0, 3)), [0, 48, 60]);
});

test('input errors name the argument', async () => {
  const ids = Tensor.from(Int32Array.from([1, 2, 300]), [1, 3]);
  await rejectsLike(model.forward({ inputIds: ids }), RangeError, /token ids in \[0, 300\) for inputIds but received 300 at index 2/);
  const ok = Tensor.from(Int32Array.from([1, VID, 2]), [1, 3]);
  await rejectsLike(model.forward({ inputIds: ok, pixelValuesVideos: Tensor.zeros([10, PATCH]), videoGridThw: [[1, 4, 4]] }), RangeError, /pixel values of shape \[16, 1176\]/);
  await rejectsLike(model.forward({ inputIds: ok, pixelValuesVideos: Tensor.zeros([8, PATCH]), videoGridThw: [[2, 2, 2]] }), RangeError, /as many video tokens in inputIds as video embeddings \(2\) but found 1/);
  await rejectsLike(model.forward({ inputIds: ok, attentionMask: Tensor.from(Int32Array.from([1, 1]), [1, 2]) }), RangeError, /attentionMask of shape \[1, 3\]/);
  const small = model.createCache(1, 2);
  await rejectsLike(model.forward({ inputIds: ok, cache: small }), RangeError, /at most 2 new tokens/);
  assert.throws(() => new QwenModel(qwenConfigFromHF(HF), new Map()), /Expected weight model.embed_tokens.weight/);
});

/** log softmax(logits / temperature) of row `pos` of full-recompute logits [1, L, V]. */
function logSoftmaxAt(logits: Float32Array, pos: number, V: number, temperature: number): Float64Array {
  const row = logits.subarray(pos * V, (pos + 1) * V);
  const t = temperature > 0 ? temperature : 1;
  let mx = -Infinity;
  for (const v of row) mx = Math.max(mx, v / t);
  let z = 0;
  for (const v of row) z += Math.exp(v / t - mx);
  return Float64Array.from(row, (v) => v / t - mx - Math.log(z));
}

test('generate: greedy tokens and log-probs equal full recompute of the grown sequence', async () => {
  const c = CASES.imageVideo!;
  const V = HF.vocab_size;
  const [s] = await generate(model, {
    inputIds: c.ids[0]!, pixelValues: Tensor.from(c.image!.pixels, [c.image!.pixels.length / PATCH, PATCH]), imageGridThw: c.image!.grid,
    pixelValuesVideos: Tensor.from(c.video!.pixels, [c.video!.pixels.length / PATCH, PATCH]), videoGridThw: c.video!.grid,
    maxNewTokens: 5, temperature: 0,
  });
  assert.is(s!.tokens.length, 5);
  assert.is(s!.finishReason, 'length');
  const full = ours({ ...c, ids: [[...c.ids[0]!, ...s!.tokens]] });
  const fl = f32(full.logits!);
  const L = c.ids[0]!.length;
  s!.tokens.forEach((tok, i) => {
    const lsm = logSoftmaxAt(fl, L - 1 + i, V, 0);
    let arg = 0;
    for (let j = 1; j < V; j++) if (lsm[j]! > lsm[arg]!) arg = j;
    assert.is(tok, arg, `greedy token ${i}`);
    assert.ok(Math.abs(s!.logprobs[i]! - lsm[tok]!) < 1e-4, `logprob ${i}: ${s!.logprobs[i]} vs ${lsm[tok]}`);
  });
});

test('generate: n samples share one prefill; each one is its own sequence; seeds reproduce', async () => {
  const prompt = [3, 14, 15, 92, 65];
  const V = HF.vocab_size;
  const opts = { inputIds: prompt, maxNewTokens: 6, temperature: 0.8, topK: 50, topP: 0.95, n: 3, seed: 1234, stopTokens: [7] };
  const a = await generate(model, opts), b = await generate(model, opts), c = await generate(model, { ...opts, seed: 99 });
  assert.equal(a, b, 'the same seed gives the same samples');
  assert.not.equal(a.map((x) => x.tokens), c.map((x) => x.tokens), 'another seed gives other samples');
  assert.not.equal(a[0]!.tokens, a[1]!.tokens, 'the n samples differ');
  for (const s of a) {
    if (s.finishReason === 'stop') assert.is(s.tokens[s.tokens.length - 1], 7);
    else assert.is(s.tokens.length, 6);
    const full = ours({ ids: [[...prompt, ...s.tokens]] });
    s.tokens.forEach((tok, i) => {
      const lsm = logSoftmaxAt(f32(full.logits!), prompt.length - 1 + i, V, 0.8);
      assert.ok(Math.abs(s.logprobs[i]! - lsm[tok]!) < 1e-4, `sample logprob ${i}: ${s.logprobs[i]} vs ${lsm[tok]}`);
    });
  }
});

test('native sampling: top-k and top-p keep the right sets; frequencies follow the probabilities; log-probs; streams', async () => {
  const row = [0.1, 2.0, -1.0, 1.5, 0.0, 1.9];
  const p = row.map((v) => Math.exp(v));
  const z = p.reduce((x, y) => x + y, 0);
  // N rows of the same logits, each its own stream: N independent draws.
  const count = async (s: { temperature: number; topP: number; topK: number }, N: number) => {
    const logits = Tensor.from(Float32Array.from({ length: N * 6 }, (_, i) => row[i % 6]!), [N, 6]);
    const r = await sampleRows(logits, Array.from({ length: N }, (_, i): [number, number] => [7, i]), new Array<number>(N).fill(0), s);
    logits.dispose();
    const c = new Array<number>(6).fill(0);
    for (const t of r.tokens) c[t]!++;
    return { c, r };
  };
  assert.equal((await count({ temperature: 1, topP: 1, topK: 1 }, 50)).c.map((x) => x > 0), [false, true, false, false, false, false]);
  assert.equal((await count({ temperature: 1, topP: 1, topK: 3 }, 3000)).c.map((x) => x > 0), [false, true, false, true, false, true]);
  // Sorted probabilities 0.351, 0.318, 0.213, 0.053, ...: nucleus 0.6 keeps two tokens, 0.7 keeps three.
  assert.equal((await count({ temperature: 1, topP: 0.6, topK: 0 }, 3000)).c.map((x) => x > 0), [false, true, false, false, false, true]);
  assert.equal((await count({ temperature: 1, topP: 0.7, topK: 0 }, 3000)).c.map((x) => x > 0), [false, true, false, true, false, true]);
  const N = 40000;
  const all = await count({ temperature: 1, topP: 1, topK: 0 }, N);
  all.c.forEach((c, i) => {
    const q = p[i]! / z, sd = Math.sqrt(N * q * (1 - q));
    assert.ok(Math.abs(c - N * q) < 5 * sd, `token ${i}: ${c} draws vs ${(N * q).toFixed(0)} expected`);
  });
  // The log-prob is under softmax(logits / T), before truncation.
  const { r } = await count({ temperature: 0.5, topP: 0.7, topK: 0 }, 20);
  const lz = Math.log(row.map((v) => Math.exp(v / 0.5)).reduce((x, y) => x + y, 0));
  r.tokens.forEach((t, i) => assert.ok(Math.abs(r.logprobs[i]! - (row[t]! / 0.5 - lz)) < 1e-5, 'temperature log-prob'));
  // Greedy: the argmax with its T = 1 log-prob; a row of -inf gives -inf; NaN is reported.
  const g = await count({ temperature: 0, topP: 1, topK: 0 }, 3);
  assert.equal(Array.from(g.r.tokens), [1, 1, 1]);
  const bad = Tensor.from(Float32Array.from([-Infinity, -Infinity, 1, NaN]), [2, 2]);
  const b = await sampleRows(bad, [[1, 1], [1, 2]], [0, 0], { temperature: 1, topP: 1, topK: 0 });
  assert.is(b.logprobs[0], -Infinity);
  assert.ok(Number.isNaN(b.logprobs[1]!));
  // A row's draw depends only on its stream and counter: the same in any batch.
  const one = await sampleRows(Tensor.from(Float32Array.from(row), [1, 6]), [[7, 123]], [5], { temperature: 1, topP: 1, topK: 0 });
  const many = await sampleRows(Tensor.from(Float32Array.from([...row, ...row, ...row]), [3, 6]), [[9, 9], [7, 123], [1, 2]], [0, 5, 3], { temperature: 1, topP: 1, topK: 0 });
  assert.is(many.tokens[1], one.tokens[0]);
  await rejectsLike(sampleRows(Tensor.zeros([1, 3]), [[0, 0]], [0], { temperature: 1e-50, topP: 1, topK: 0 }), RangeError, /temperature/);
});

test('generateStream: tokens stream while the event loop runs; AbortSignal stops it; errors', async () => {
  let ticks = 0;
  const timer = setInterval(() => ticks++, 0);
  const events: number[] = [];
  let ticksAtFirst = -1;
  for await (const e of generateStream(model, { inputIds: [1, 2, 3], maxNewTokens: 8, temperature: 0, n: 2 })) {
    if (ticksAtFirst < 0) ticksAtFirst = ticks;
    events.push(e.token);
  }
  clearInterval(timer);
  assert.is(events.length, 16);
  assert.ok(ticks > ticksAtFirst, 'timers ran between streamed tokens');
  const ac = new AbortController();
  let got = 0;
  await rejectsLike((async () => {
    for await (const _ of generateStream(model, { inputIds: [1, 2, 3], maxNewTokens: 50, signal: ac.signal, seed: 1 })) { if (++got === 2) ac.abort(); }
  })(), Error, /abort/i);
  assert.is(got, 2);
  await rejectsLike(generate(model, { inputIds: [1, 2], topP: 0 }), RangeError, /topP/);
  await rejectsLike(generate(model, { inputIds: [1, 2], n: 0 }), RangeError, /for n/);
  await rejectsLike(generate(model, { inputIds: [] }), RangeError, /at least one prompt token/);
});

test('loadModel: a checkpoint folder written by the package (bf16 safetensors) gives the in-memory model\'s logits', async () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'vt-qwen-ckpt-'));
  try {
    const tensors = new Map<string, Tensor>();
    for (const [k, v] of W) tensors.set(k, Tensor.from(v, W.shapes.get(k)!, 'bf16'));
    writeSafetensors(path.join(dir, 'model.safetensors'), tensors);
    writeFileSync(path.join(dir, 'config.json'), JSON.stringify(HF));
    const loaded = await loadModel(dir);
    const { model: m16 } = toModel(W, 'bf16');
    const c = CASES.imageVideo!;
    const a = ours(c, loaded), b = ours(c, m16);
    assert.equal(Array.from(f32(a.logits!)), Array.from(f32(b.logits!)));
    assert.is(loaded.weights.get('visual.blocks.0.attn.qkv.weight')!.dtype, 'bf16');
    loaded.dispose(); loaded.checkpoint.dispose();
  } finally { rmSync(dir, { recursive: true, force: true }); }
});

test('loadModel: a folder without config.json gives a clear error; config.json normalisation', async () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'vt-qwen-empty-'));
  try {
    await rejectsLike(loadModel(dir), RangeError, /config\.json: a Hugging Face checkpoint folder/);
  } finally { rmSync(dir, { recursive: true, force: true }); }
  await rejectsLike(loadModel(''), TypeError, /checkpoint folder path for dir/);
  const c = qwenConfigFromHF({ ...HF, rope_scaling: { rope_type: 'default', mrope_section: [2, 1, 1] }, text_config: { hidden_size: 32, num_attention_heads: 4 } });
  assert.equal(c.mropeSection, [2, 1, 1]);
  assert.is(c.vision!.windowSize, 112);
  const text = qwenConfigFromHF({ hidden_size: 64, num_hidden_layers: 2, num_attention_heads: 4, num_key_value_heads: 2, intermediate_size: 128, vocab_size: 50, tie_word_embeddings: true });
  assert.equal(text.mropeSection, [8, 0, 0]);
  assert.is(text.tieWordEmbeddings, true);
  assert.is(text.vision, undefined);
});

// ---- the whole path: a checkpoint folder with tokenizer, chat template and processor config ----
const HAVE_FFMPEG = spawnSync('ffmpeg', ['-version']).status === 0;
const TOK = tinyTokenizer('what is in the video? the cat sat on the mat. what happens in this clip, and why? the the the', 20);
/** A custom template (no system turn, "Q:"/"A:" turns) to show that the checkpoint's own is used. */
const CHAT = "{%- for m in messages -%}{{ '<|im_start|>' + m.role + ' ' }}{%- for c in m.content -%}{%- if c.type == 'video' -%}{{ '<|vision_start|><|video_pad|><|vision_end|>' }}{%- elif c.type == 'image' -%}{{ '<|vision_start|><|image_pad|><|vision_end|>' }}{%- else -%}{{ 'Q: ' + c.text }}{%- endif -%}{%- endfor -%}{{ '<|im_end|>' }}{%- endfor -%}{%- if add_generation_prompt -%}{{ '<|im_start|>assistant A:' }}{%- endif -%}";

function writeChatCheckpoint(dir: string): void {
  const tensors = new Map<string, Tensor>();
  for (const [k, v] of W) tensors.set(k, Tensor.from(v, W.shapes.get(k)!));
  writeSafetensors(path.join(dir, 'model.safetensors'), tensors);
  for (const t of tensors.values()) t.dispose();
  writeFileSync(path.join(dir, 'config.json'), JSON.stringify(HF));
  writeFileSync(path.join(dir, 'tokenizer.json'), JSON.stringify(TOK.json));
  writeFileSync(path.join(dir, 'tokenizer_config.json'), JSON.stringify({ eos_token: '<|endoftext|>', pad_token: '<|endoftext|>' }));
  writeFileSync(path.join(dir, 'chat_template.json'), JSON.stringify({ chat_template: CHAT }));
  writeFileSync(path.join(dir, 'generation_config.json'), JSON.stringify({ eos_token_id: [287, 285] }));
  writeFileSync(path.join(dir, 'preprocessor_config.json'), JSON.stringify({ min_pixels: 28 * 28 * 2, max_pixels: 28 * 28 * 16, patch_size: 14, temporal_patch_size: 2, merge_size: 2 }));
}

/** Random RGB frames (H x W x 3 u8). */
function frames(n: number, H: number, Wd: number, seed: number): { data: Uint8Array; height: number; width: number }[] {
  return Array.from({ length: n }, (_, i) => ({ data: Uint8Array.from(randomF32(H * Wd * 3, seed + i, 1), (v) => Math.floor((v + 1) * 127.5)), height: H, width: Wd }));
}

test('generate({ video, prompt }): the checkpoint\'s tokenizer, chat template and processor give the same tokens as the low-level call', async () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'vt-qwen-chat-'));
  try {
    writeChatCheckpoint(dir);
    const m = await loadModel(dir);
    assert.ok(m.tokenizer && m.processor, 'tokenizer and processor loaded');
    assert.equal(m.tokenizer!.eosTokenIds, [285, 287], 'stop tokens from tokenizer_config.json, generation_config.json and <|im_end|>');
    const video = frames(5, 50, 70, 600);  // 5 frames: padded to 6 (temporal patch 2); 50 x 70 is no multiple of 28
    const videoOptions = { fps: 2, minPixels: 28 * 28 * 2, maxPixels: 28 * 28 * 6 };
    const question = 'What is in the video?';
    // the prompt as the template renders it, and its video tokens expanded
    const p = await preparePrompt(m.config, m.tokenizer!, m.processor!, { video, prompt: question, videoOptions });
    assert.is(p.text, `<|im_start|>user <|vision_start|><|video_pad|><|vision_end|>Q: ${question}<|im_end|><|im_start|>assistant A:`);
    const direct = m.processor!.videoSync(video, videoOptions);
    const [t, h, w] = direct.gridThw[0]!;
    assert.equal(p.videoGridThw, direct.gridThw);
    assert.equal(p.secondPerGridTs, direct.secondPerGridTs);
    assert.is(t, 3, '5 frames -> 3 temporal patches');
    assert.is(relErr(f32(p.pixelValuesVideos!), f32(direct.pixelValues)), 0, 'the same pixels');
    const base = Array.from(m.tokenizer!.encode(p.text));
    const k = base.indexOf(291);
    const want = [...base.slice(0, k), ...new Array<number>((t * h * w) / 4).fill(291), ...base.slice(k + 1)];
    assert.equal(Array.from(p.inputIds), want, 'placeholder expanded to t*h*w/4 video tokens');
    // high level against low level: greedy tokens and log-probs
    const hi = await m.generate({ video, prompt: question, videoOptions, maxNewTokens: 6, temperature: 0 });
    const lo = await generate(m, { inputIds: p.inputIds, pixelValuesVideos: direct.pixelValues, videoGridThw: direct.gridThw,
      secondPerGridTs: direct.secondPerGridTs, maxNewTokens: 6, temperature: 0, stopTokens: [285, 287] });
    assert.equal(hi[0]!.tokens, lo[0]!.tokens, 'tokens');
    assert.equal(hi[0]!.logprobs, lo[0]!.logprobs, 'log-probs');
    assert.is(hi[0]!.text, m.tokenizer!.decode(hi[0]!.tokens));
    // streaming: the text deltas add up to the text
    let streamed = '';
    for await (const e of m.generateStream({ video, prompt: question, videoOptions, maxNewTokens: 6, temperature: 0 })) streamed += e.text ?? '';
    assert.is(streamed, hi[0]!.text);
    // messages with an image and a video, n samples
    const image = frames(1, 40, 30, 700)[0]!;
    const messages = [{ role: 'user', content: [{ type: 'image' as const, image }, { type: 'video' as const }, { type: 'text' as const, text: 'Why?' }] }];
    const two = await m.generate({ messages, video, videoOptions, maxNewTokens: 3, n: 2, seed: 5 });
    assert.is(two.length, 2);
    for (const s of two) assert.ok(s.tokens.length >= 1 && s.tokens.length <= 3 && typeof s.text === 'string');
    // errors
    await rejectsLike(m.generate({ prompt: question, inputIds: [1, 2] }), TypeError, /no inputIds with prompt/);
    await rejectsLike(m.generate({ prompt: question, video: '/no/such/clip.mp4', n: 0 }), RangeError, /integer >= 1 for n but received 0/, 'sampling options fail before any decoding');
    await rejectsLike(m.generate({ prompt: question, messages }), TypeError, /exactly one of prompt/);
    await rejectsLike(m.generate({ messages: [{ role: 'user', content: [{ type: 'image' as const }, { type: 'text' as const, text: 'x' }] }], images: [image, image] }), RangeError, /as many images as image parts in messages \(1\) but received 2/);
    await rejectsLike(m.generate({ messages: [{ role: 'user', content: [{ type: 'video' as const }] }] }), TypeError, /video \(in the part or as video\)/);
    await rejectsLike(m.generate({ messages: [{ role: 'user', content: [{ type: 'audio' as never }] }] }), TypeError, /'text', 'image' or 'video' for messages\[0\]\.content\[0\]\.type/);
    await rejectsLike(model.generate({ prompt: question }), TypeError, /a model with a tokenizer/);
    p.dispose(); direct.pixelValues.dispose();
    m.dispose(); m.checkpoint.dispose();
  } finally { rmSync(dir, { recursive: true, force: true }); }
});

test('generate({ video: file }): a video file decoded by ffmpeg answers like its frames (needs ffmpeg)', async () => {
  if (!HAVE_FFMPEG) return skip('ffmpeg not on PATH');
  const dir = mkdtempSync(path.join(tmpdir(), 'vt-qwen-file-'));
  try {
    writeChatCheckpoint(dir);
    const file = path.join(dir, 'clip.mp4');
    const r = spawnSync('ffmpeg', ['-v', 'error', '-f', 'lavfi', '-i', 'testsrc=size=64x48:rate=4:duration=2', '-pix_fmt', 'yuv420p', '-c:v', 'libx264', '-crf', '18', file], { timeout: 120_000 });
    assert.is(r.status, 0, `ffmpeg could write the test clip: ${r.stderr}`);
    const m = await loadModel(dir);
    const videoOptions = { fps: 2, minPixels: 28 * 28 * 2, maxPixels: 28 * 28 * 6 };
    const fromFile = await m.processor!.video(file, videoOptions);
    assert.is(fromFile.gridThw[0]![0], 2, '2 s at 2 fps: 4 frames, 2 temporal patches');
    const hi = await m.generate({ video: file, prompt: 'What happens in this clip?', videoOptions, maxNewTokens: 4, temperature: 0 });
    const p = await preparePrompt(m.config, m.tokenizer!, m.processor!, { video: file, prompt: 'What happens in this clip?', videoOptions });
    assert.is(relErr(f32(p.pixelValuesVideos!), f32(fromFile.pixelValues)), 0, 'the same pixels through the prompt path');
    const lo = await generate(m, { inputIds: p.inputIds, pixelValuesVideos: fromFile.pixelValues, videoGridThw: fromFile.gridThw,
      secondPerGridTs: fromFile.secondPerGridTs, maxNewTokens: 4, temperature: 0, stopTokens: m.tokenizer!.eosTokenIds });
    assert.equal(hi[0]!.tokens, lo[0]!.tokens);
    const ac = new AbortController();
    ac.abort();
    await rejectsLike(m.generate({ video: file, prompt: 'x', videoOptions, signal: ac.signal }), Error, /abort/i);
    // an image file (PNG through ffmpeg) answers like its decoded pixels, which equal ffmpeg's own rgb24 output
    const png = path.join(dir, 'still.png');
    assert.is(spawnSync('ffmpeg', ['-v', 'error', '-f', 'lavfi', '-i', 'testsrc=size=60x44:rate=1', '-frames:v', '1', png], { timeout: 120_000 }).status, 0);
    const raw = spawnSync('ffmpeg', ['-v', 'error', '-i', png, '-f', 'rawvideo', '-pix_fmt', 'rgb24', '-'], { timeout: 120_000 });
    const still = { data: new Uint8Array(raw.stdout), height: 44, width: 60 };
    assert.is(still.data.length, 44 * 60 * 3);
    const byFile = await m.generate({ images: [png], prompt: 'What is this?', maxNewTokens: 4, temperature: 0 });
    const byPixels = await m.generate({ images: [still], prompt: 'What is this?', maxNewTokens: 4, temperature: 0 });
    assert.equal(byFile[0]!.tokens, byPixels[0]!.tokens, 'image file = its pixels');
    assert.equal(byFile[0]!.logprobs, byPixels[0]!.logprobs);
    await rejectsLike(m.generate({ images: [path.join(dir, 'missing.png')], prompt: 'x' }), Error, /missing\.png/);
    // the README's example and HTTP service, run as a user would, answer what generate() answers
    const exOpts = VIDEOTHINKER_VIDEO_OPTIONS;
    const q = 'What happens in this clip?';
    const [want] = await m.generate({ video: file, prompt: q, videoOptions: exOpts, maxNewTokens: 8, temperature: 0 });
    const root = path.join(path.dirname(fileURLToPath(import.meta.url)), '..');
    const ex = spawnSync(process.execPath, ['--import', 'tsx', 'examples/video_qa.ts', dir, file, q, '8'], { cwd: root, encoding: 'utf8', timeout: 120_000 });
    assert.is(ex.status, 0, `video_qa.ts exits 0: ${ex.stderr}`);
    assert.is(ex.stdout, want!.text + '\n', 'video_qa.ts prints the answer');
    const cli = spawnSync(process.execPath, ['--import', 'tsx', 'src/cli/index.ts', 'ask', dir, q, '--video', file, '--max-new-tokens', '8'], { cwd: root, encoding: 'utf8', timeout: 120_000 });
    assert.is(cli.status, 0, `videothinker ask exits 0: ${cli.stderr}`);
    assert.is(cli.stdout, want!.text + '\n', 'videothinker ask prints the answer');
    const badCli = spawnSync(process.execPath, ['--import', 'tsx', 'src/cli/index.ts', 'ask', dir, q, '--video', file, '--temperature', 'hot'], { cwd: root, encoding: 'utf8', timeout: 120_000 });
    assert.is(badCli.status, 1);
    assert.match(badCli.stderr, /TypeError: Expected a number for --temperature but received 'hot'/);
    const srv = spawn(process.execPath, ['--import', 'tsx', 'examples/http_service.ts', dir, '0'], { cwd: root, stdio: ['ignore', 'pipe', 'inherit'] });
    try {
      const port = await new Promise<number>((resolve, reject) => {
        let out = '';
        const timer = setTimeout(() => reject(new Error('http_service.ts did not listen within 120 s')), 120_000);
        srv.stdout.on('data', (d) => { out += d; const k = /listening on :(\d+)/.exec(out); if (k) { clearTimeout(timer); resolve(Number(k[1])); } });
        srv.on('exit', (c) => { clearTimeout(timer); reject(new Error(`http_service.ts exited with ${c}`)); });
      });
      const res = await fetch(`http://127.0.0.1:${port}/ask`, { method: 'POST', body: JSON.stringify({ video: file, question: q, maxNewTokens: 8 }), signal: AbortSignal.timeout(120_000) });
      assert.is(res.status, 200);
      const events = (await res.text()).split('\n\n').filter((x) => x.startsWith('data: ')).map((x) => JSON.parse(x.slice(6)) as { text?: string; done: string | null });
      assert.is(events.map((e) => e.text ?? '').join(''), want!.text, 'the service streams the answer');
      assert.is(events.at(-1)!.done, want!.finishReason, 'the last event ends the sample');
      const bad = await fetch(`http://127.0.0.1:${port}/ask`, { method: 'POST', body: '{"video": 3}', signal: AbortSignal.timeout(120_000) });
      assert.is(bad.status, 400);
    } finally { srv.kill(); }
    p.dispose(); fromFile.pixelValues.dispose();
    m.dispose(); m.checkpoint.dispose();
  } finally { rmSync(dir, { recursive: true, force: true }); }
});

test.run();
