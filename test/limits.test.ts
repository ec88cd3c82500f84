// Sizes and values at and past the limits (issue 14): tensors over 4 GiB (item 1), configs that
// ask for absurd sizes or nonsense values (items 4, 6, 13), secondPerGridTs as a Tensor (item 10),
// token ids that do not fit (item 12). Each of these crashed, hung or silently changed an answer.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';

import { generate, generateStream } from '../src/infer/generate.js';
import { loadModel } from '../src/infer/load.js';
import { QwenModel } from '../src/infer/model.js';
import { qwenConfigFromHF, windowIndex } from '../src/model/index.js';
import { Tensor } from '../src/tensor.js';
import { writeTinyCheckpoint } from './ckpt_fixture.js';
import { rejectsLike, throwsLike } from './helpers.js';
import { HF, makeWeights, PATCH, toModel, VE, VID, VS } from './qwen_fixture.js';

const dir = mkdtempSync(path.join(tmpdir(), 'vt-limits-'));
test.after(() => rmSync(dir, { recursive: true, force: true }));

// ---- item 1: views and copies of tensors over 4 GiB ----------------------------------------

test('a tensor over 4 GiB: .data is a RangeError (it crashed), slices of it read, toArray of all of it is a RangeError', () => {
  // Allocated, never touched: the pages cost nothing until written.
  const t = Tensor.empty([2 ** 30 + 16]);
  throwsLike(() => t.data, RangeError, /fits a JS ArrayBuffer .* for data but received a view on 4294967360 bytes/);
  throwsLike(() => t.toArray(), RangeError, /at most 4294967296 bytes for toArray\(\).*4294967360 bytes/);
  const head = t.slice(0, 0, 4);
  assert.is(head.toArray().length, 4, 'a slice at the start');
  const tail = t.slice(0, 2 ** 30 + 12);
  assert.is(tail.toArray().length, 4, 'a slice past 4 GiB');
  throwsLike(() => head.data, RangeError, /for data/);  // a view still covers the whole memory
  const v = t.view([2 ** 29 + 8, 2]);
  assert.equal(v.slice(0, 2 ** 29 + 7).toArray().length, 2);
  for (const x of [t, head, tail, v]) x.dispose();
  // exactly 4 GiB still has a view
  const u = Tensor.empty([2 ** 32], 'u8');
  assert.is(u.data.length, 2 ** 32);
  u.dispose();
});

test('generate: one sample with a KV cache over 4 GiB decodes in place; n samples that would need to copy it are refused first', async () => {
  // 4 layers x 8 kv heads x 64 dims x 4 bytes = 8 KiB per token and K/V: 600k tokens make 4.9 GB each.
  const big = { ...HF, hidden_size: 512, num_attention_heads: 8, num_key_value_heads: 8, num_hidden_layers: 4, intermediate_size: 32,
    rope_scaling: { type: 'mrope', mrope_section: [8, 12, 12] } } as typeof HF;
  const { vision_config: _v, ...text } = big;
  const w = makeWeights(3, big);
  for (const k of [...w.keys()]) if (k.startsWith('visual.')) w.delete(k);
  const { model } = toModel(w, 'f32', {}, text as typeof HF);
  const maxNewTokens = 600_000;
  const got: number[] = [];
  for await (const e of generateStream(model, { inputIds: [1, 2, 3], maxNewTokens, temperature: 0 })) {
    got.push(e.token);
    if (got.length === 3) break;
  }
  const small = await generate(model, { inputIds: [1, 2, 3], maxNewTokens: 3, temperature: 0 });
  assert.equal(got, small[0]!.tokens, 'the same tokens as with a small cache');
  await rejectsLike(generate(model, { inputIds: [1, 2, 3], maxNewTokens, n: 2 }), RangeError, /n and maxNewTokens whose KV cache fits .* n = 2, maxNewTokens = 600000/);
  await rejectsLike(generate(model, { inputIds: [1, 2, 3], maxNewTokens: 2 ** 24 }), RangeError, /maxNewTokens <= 16777213 .* but received 16777216/);
  await rejectsLike(generate(model, { inputIds: [1, 2, 3], maxNewTokens: 2 ** 40 }), RangeError, /in \[1, 16777216\] for maxNewTokens/);
  model.dispose();
});

// ---- items 4, 6, 13: config values, checked before anything is allocated ------------------

async function loadWith(config: Record<string, unknown> | string) {
  const ck = mkdtempSync(path.join(dir, 'cfg-'));
  writeTinyCheckpoint(ck, { config, tokenizer: false });
  try { return await loadModel(ck); } finally { rmSync(ck, { recursive: true, force: true }); }
}

test('config.json with absurd or nonsense sizes: a named error before allocation (1e9 layers ran the heap out and aborted)', async () => {
  const cases: [Record<string, unknown> | string, new (...a: never[]) => Error, RegExp][] = [
    [{ ...HF, num_hidden_layers: 1e9 }, RangeError, /integer in \[0, 1024\] for config\.num_hidden_layers but received 1000000000/],
    [JSON.stringify(HF).replace('"num_hidden_layers":2', '"num_hidden_layers":1e400'), TypeError, /an integer for config\.num_hidden_layers but received Infinity/],
    [{ ...HF, num_hidden_layers: -1 }, RangeError, /config\.num_hidden_layers but received -1/],
    [{ ...HF, num_hidden_layers: 0.5 }, TypeError, /an integer for config\.num_hidden_layers but received 0\.5/],
    [{ ...HF, rope_theta: 0 }, RangeError, /positive number for config\.rope_theta but received 0/],
    [{ ...HF, rope_theta: -5 }, RangeError, /config\.rope_theta/],
    [{ ...HF, hidden_size: 2 ** 40 }, RangeError, /config\.hidden_size/],
    [{ ...HF, vocab_size: 1e12 }, RangeError, /config\.vocab_size/],
    [{ ...HF, intermediate_size: 'big' }, TypeError, /an integer for config\.intermediate_size but received 'big'/],
    [{ ...HF, rms_norm_eps: -1e-6 }, RangeError, /positive number for config\.rms_norm_eps/],
    [{ ...HF, rms_norm_eps: '1e-6' }, TypeError, /a finite number for config\.rms_norm_eps but received '1e-6'/],
    [{ ...HF, vision_config: { ...HF.vision_config, depth: 1e9 } }, RangeError, /config\.vision_config\.depth/],
    [{ ...HF, vision_config: { ...HF.vision_config, window_size: 0 } }, RangeError, /config\.vision_config\.window_size but received 0/],
    [{ ...HF, vision_config: { ...HF.vision_config, window_size: 27 } }, RangeError, /window_size >= spatial_merge_size x patch_size \(28\) but received 27/],
    [{ ...HF, vision_config: { ...HF.vision_config, spatial_merge_size: 0 } }, RangeError, /config\.vision_config\.spatial_merge_size but received 0/],
    [{ ...HF, vision_config: { ...HF.vision_config, fullatt_block_indexes: [7] } }, RangeError, /fullatt_block_indexes\[0\]/],
    [{ ...HF, num_key_value_heads: 3 }, RangeError, /multiple of num_key_value_heads but received 3/],
  ];
  for (const [cfg, type, re] of cases) await rejectsLike(loadWith(cfg), type, re, typeof cfg === 'string' ? cfg.slice(0, 40) : JSON.stringify(cfg).slice(0, 60));
  // the same values straight into qwenConfigFromHF
  throwsLike(() => qwenConfigFromHF({ ...HF, num_hidden_layers: 1e9 }), RangeError, /num_hidden_layers/);
  // a window narrower than a merged patch in a hand-made config: an error, not a loop without end
  throwsLike(() => windowIndex([[1, 4, 4]], 0, 2, 14), RangeError, /windowSize >= merge x patch \(28\) but received 0/);
  // a valid config still loads
  const m = await loadWith(HF);
  m.dispose(); m.checkpoint.dispose();
});

// ---- item 10: secondPerGridTs as a Tensor --------------------------------------------------

test('secondPerGridTs as a Tensor gives the logits of the same array (it was ignored: 1 s per grid step)', () => {
  const { model } = toModel(makeWeights(100));
  const grid: [number, number, number][] = [[2, 4, 4]];
  const ids = Int32Array.from([5, VS, ...new Array<number>(8).fill(VID), VE, 7]);
  const pixels = Tensor.from(new Float32Array(2 * 4 * 4 * PATCH).map((_, i) => Math.sin(i)), [32, PATCH]);
  const run = (spg: number[] | Tensor | undefined) => {
    const out = model.forwardSync({ inputIds: ids, pixelValuesVideos: pixels, videoGridThw: grid, ...(spg ? { secondPerGridTs: spg } : {}) });
    const l = Array.from(out.logits!.toArray() as Float32Array);
    out.dispose();
    return l;
  };
  const arr = run([0.25]);
  for (const t of [Tensor.from([0.25]), Tensor.from(new Float32Array([0.25]).map(Number), [1], 'f16')]) {
    assert.equal(run(t), arr, `a ${t.dtype} Tensor`);
    t.dispose();
  }
  assert.not.equal(run(undefined), arr, 'the default (1 s) gives other logits, so the comparison can fail');
  throwsLike(() => run(Tensor.from([-1])), RangeError, /secondPerGridTs\[0\]/);
  pixels.dispose(); model.dispose();
});

// ---- item 12: token ids -------------------------------------------------------------------

test('token ids that do not fit are RangeErrors in forward and generate (2^32 + 5 acted as 5, 1.7 as 1, NaN as 0)', async () => {
  const { model } = toModel(makeWeights(100));
  const V = HF.vocab_size;
  for (const ids of [[2 ** 32 + 5], [1.7], [NaN], [-0.5], [-1], [V], [1, 2, 2 ** 31]]) {
    await rejectsLike(generate(model, { inputIds: ids, maxNewTokens: 1 }), RangeError, new RegExp(`token ids in \\[0, ${V}\\) for inputIds but received`), `generate ${ids}`);
    await rejectsLike(model.forward({ inputIds: ids }), RangeError, /for inputIds but received/, `forward ${ids}`);
  }
  await rejectsLike(generate(model, { inputIds: Int32Array.from([1, V + 3]), maxNewTokens: 1 }), RangeError, /received 303 at index 1/);
  await rejectsLike(generate(model, { inputIds: ['1'] as never, maxNewTokens: 1 }), TypeError, /inputIds\[0\]/);
  const wide = Tensor.from(new BigInt64Array([1n, 2n ** 32n + 5n]), [1, 2]);
  await rejectsLike(model.forward({ inputIds: wide }), RangeError, /received 4294967301 at index 1/);
  wide.dispose();
  const ok = await generate(model, { inputIds: [1, 2, V - 1], maxNewTokens: 2, temperature: 0 });
  assert.is(ok[0]!.tokens.length, 2);
  // temperatures: 0 is greedy; a positive one too small for float math is refused
  for (const t of [1e-50, 1e-320, -1, NaN]) await rejectsLike(generate(model, { inputIds: [1], maxNewTokens: 1, temperature: t }), t !== t ? TypeError : RangeError, /temperature/, `T=${t}`);
  const tiny = await generate(model, { inputIds: [1, 2], maxNewTokens: 3, temperature: 1e-6, seed: 1 });
  const greedy = await generate(model, { inputIds: [1, 2], maxNewTokens: 3, temperature: 0 });
  assert.equal(tiny[0]!.tokens, greedy[0]!.tokens, 'T = 1e-6 samples the argmax');
  assert.ok(tiny[0]!.logprobs.every(Number.isFinite), 'finite log-probs at T = 1e-6');
  model.dispose();
});

void QwenModel; void writeFileSync;
test.run();
