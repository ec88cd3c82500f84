// init: a random Qwen2.5-VL checkpoint folder. Its tensors have Hugging Face's names, shapes (as
// written out by hand below) and dtypes, transformers' initial values; config.json carries the
// tokenizer's size and special ids; the same seed gives the same bytes; loadModel reads it and
// generate() answers a question about a synthetic video; option errors; the CLI.
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';

import {
  buildPrompt, buildWordTokenizer, DEFAULT_CHAT_TEMPLATE, DEFAULT_SCENE, initModel, loadModel, makeScene, preparePrompt, QwenTokenizer,
  PRESETS, readSafetensors, renderScene, synthVocabularyTexts, weightSpecs, writeTokenizerFiles, type Tensor,
} from '../src/index.js';
import { rejectsLike } from './helpers.js';
import { cli } from './synth_fixture.js';

const TMP = mkdtempSync(path.join(tmpdir(), 'vt-init-test-'));
const TOK_DIR = path.join(TMP, 'tok');
const TOK = buildWordTokenizer(synthVocabularyTexts());
writeTokenizerFiles(TOK_DIR, TOK, DEFAULT_CHAT_TEMPLATE);
const TOK_FILE = path.join(TOK_DIR, 'tokenizer.json');
const V = TOK.size;

const f32 = (t: Tensor) => Float32Array.from(t.to('f32').data as Float32Array);

test('tiny: the files, config.json and every tensor\'s name, shape, dtype and initial values', async () => {
  const dir = path.join(TMP, 'tiny');
  const r = await initModel({ tokenizer: TOK_FILE, out: dir, seed: 1 });
  assert.equal(readdirSync(dir).sort(), ['chat_template.json', 'config.json', 'generation_config.json', 'model.safetensors', 'preprocessor_config.json',
    'tokenizer.json', 'tokenizer_config.json']);
  const cfg = JSON.parse(readFileSync(path.join(dir, 'config.json'), 'utf8'));
  assert.is(cfg.architectures[0], 'Qwen2_5_VLForConditionalGeneration');
  assert.is(cfg.model_type, 'qwen2_5_vl');
  assert.is(cfg.vocab_size, V);
  for (const [k, t] of [['image_token_id', '<|image_pad|>'], ['video_token_id', '<|video_pad|>'], ['vision_start_token_id', '<|vision_start|>'],
    ['vision_end_token_id', '<|vision_end|>'], ['eos_token_id', '<|im_end|>'], ['bos_token_id', '<|endoftext|>']] as const) {
    assert.is(cfg[k], TOK.specialIds[t], k);
  }
  assert.equal([cfg.hidden_size, cfg.num_hidden_layers, cfg.num_attention_heads, cfg.num_key_value_heads, cfg.intermediate_size], [64, 2, 4, 2, 128]);
  assert.equal(cfg.rope_scaling, { type: 'mrope', mrope_section: [2, 3, 3] }, 'head dim 16: 8 frequencies split as 16:24:24');
  assert.equal([cfg.vision_config.depth, cfg.vision_config.hidden_size, cfg.vision_config.num_heads, cfg.vision_config.out_hidden_size], [2, 64, 2, 64]);
  const gen = JSON.parse(readFileSync(path.join(dir, 'generation_config.json'), 'utf8'));
  assert.equal(gen.eos_token_id, [TOK.specialIds['<|im_end|>'], TOK.specialIds['<|endoftext|>']]);
  // the Hugging Face layout, written out by hand for this size (C 64, 2 kv heads of 16, F 128, vision 64 x 2, merger 4 x 64)
  const want: Record<string, number[]> = {
    'model.embed_tokens.weight': [V, 64], 'lm_head.weight': [V, 64], 'model.norm.weight': [64],
    'model.layers.1.input_layernorm.weight': [64], 'model.layers.1.post_attention_layernorm.weight': [64],
    'model.layers.1.self_attn.q_proj.weight': [64, 64], 'model.layers.1.self_attn.q_proj.bias': [64],
    'model.layers.1.self_attn.k_proj.weight': [32, 64], 'model.layers.1.self_attn.k_proj.bias': [32],
    'model.layers.1.self_attn.v_proj.weight': [32, 64], 'model.layers.1.self_attn.v_proj.bias': [32], 'model.layers.1.self_attn.o_proj.weight': [64, 64],
    'model.layers.1.mlp.gate_proj.weight': [128, 64], 'model.layers.1.mlp.up_proj.weight': [128, 64], 'model.layers.1.mlp.down_proj.weight': [64, 128],
    'visual.patch_embed.proj.weight': [64, 3, 2, 14, 14], 'visual.blocks.1.norm1.weight': [64], 'visual.blocks.1.norm2.weight': [64],
    'visual.blocks.1.attn.qkv.weight': [192, 64], 'visual.blocks.1.attn.qkv.bias': [192], 'visual.blocks.1.attn.proj.weight': [64, 64], 'visual.blocks.1.attn.proj.bias': [64],
    'visual.blocks.1.mlp.gate_proj.weight': [128, 64], 'visual.blocks.1.mlp.gate_proj.bias': [128], 'visual.blocks.1.mlp.up_proj.weight': [128, 64],
    'visual.blocks.1.mlp.up_proj.bias': [128], 'visual.blocks.1.mlp.down_proj.weight': [64, 128], 'visual.blocks.1.mlp.down_proj.bias': [64],
    'visual.merger.ln_q.weight': [64], 'visual.merger.mlp.0.weight': [256, 256], 'visual.merger.mlp.0.bias': [256],
    'visual.merger.mlp.2.weight': [64, 256], 'visual.merger.mlp.2.bias': [64],
  };
  const st = readSafetensors(path.join(dir, 'model.safetensors'));
  try {
    assert.is(st.metadata.format, 'pt', 'transformers loads safetensors marked format pt');
    assert.is(st.tensors.size, 3 + 2 * 12 + 1 + 2 * 12 + 5, 'embed, norm, lm_head, 12 per layer, patch embed, 12 per vision block, merger');
    for (const [name, shape] of Object.entries(want)) {
      const t = st.tensors.get(name);
      assert.ok(t, `${name} is present`);
      assert.equal(t!.shape, shape, name);
      assert.is(t!.dtype, 'f32', name);
    }
    assert.not.ok(st.tensors.has('visual.patch_embed.proj.bias'), 'Qwen2.5-VL\'s patch embedding has no bias');
    let params = 0;
    const firsts = new Set<number>();
    for (const [name, t] of st.tensors) {
      const v = f32(t);
      params += v.length;
      if (/norm.*\.weight$|ln_q\.weight$/.test(name)) assert.ok(v.every((x) => x === 1), `${name}: ones`);
      else if (name.endsWith('.bias')) assert.ok(v.every((x) => x === 0), `${name}: zeros`);
      else {
        let s = 0, s2 = 0;
        for (const x of v) { s += x; s2 += x * x; }
        const mean = s / v.length, std = Math.sqrt(s2 / v.length - mean * mean);
        const se = 0.02 / Math.sqrt(v.length);
        assert.ok(Math.abs(mean) < 6 * se && Math.abs(std - 0.02) < 0.02 * (6 / Math.sqrt(2 * v.length)) + 1e-4, `${name}: normal(0, 0.02), got mean ${mean}, std ${std}`);
        firsts.add(v[0]!);
      }
    }
    assert.is(params, r.parameters);
    assert.is(firsts.size, [...st.tensors.keys()].filter((n) => !/norm.*\.weight$|ln_q\.weight$|\.bias$/.test(n)).length, 'every tensor draws its own numbers');
    assert.equal(r.tensors, weightSpecs({ ...PRESETS.tiny }, V).map((w) => ({ name: w.name, shape: w.shape })));
  } finally { st.dispose(); }
  // the same seed gives the same bytes; another seed other weights
  const again = path.join(TMP, 'tiny-again'), other = path.join(TMP, 'tiny-other');
  await initModel({ tokenizer: TOK_FILE, out: again, seed: 1 });
  await initModel({ tokenizer: TOK_FILE, out: other, seed: 2 });
  assert.ok(readFileSync(path.join(dir, 'model.safetensors')).equals(readFileSync(path.join(again, 'model.safetensors'))));
  assert.not.ok(readFileSync(path.join(dir, 'model.safetensors')).equals(readFileSync(path.join(other, 'model.safetensors'))));
});

test('loadModel reads it; generate() answers a question about a synthetic video with text', async () => {
  const dir = path.join(TMP, 'tiny');
  if (!existsSync(dir)) await initModel({ tokenizer: TOK_FILE, out: dir, seed: 1 });
  const m = await loadModel(dir);
  try {
    assert.is(m.config.vocabSize, V);
    assert.is(m.config.videoTokenId, TOK.specialIds['<|video_pad|>']);
    assert.ok(m.tokenizer instanceof QwenTokenizer);
    assert.equal([m.processor!.config.minPixels, m.processor!.config.maxPixels], [784, 112 * 56]);
    const scene = makeScene({ ...DEFAULT_SCENE }, 5);
    const frames = renderScene(scene).map((data) => ({ data, height: scene.height, width: scene.width }));
    const prompt = buildPrompt({ problem: 'Which ball finishes first?', options: ['A. red', 'B. blue', 'C. green', 'D. pink'] });
    const videoOptions = { fps: 2, minPixels: 112 * 56, maxPixels: 112 * 56 };
    const p = await preparePrompt(m.config, m.tokenizer!, m.processor!, { prompt, video: frames, videoOptions });
    assert.equal(p.videoGridThw, [[4, 4, 8]], '8 frames of 112x56: 4 x 4 x 8 patches');
    assert.is(Array.from(p.inputIds).filter((t) => t === m.config.videoTokenId).length, 32, '32 video tokens');
    p.dispose();
    const [s] = await m.generate({ prompt, video: frames, videoOptions, maxNewTokens: 12, temperature: 0 });
    assert.is(typeof s!.text, 'string');
    assert.ok(s!.tokens.length >= 1 && s!.tokens.length <= 12);
    assert.is(m.tokenizer!.decode(s!.tokens), s!.text);
    const samples = await m.generate({ prompt, video: frames, videoOptions, maxNewTokens: 6, temperature: 1, n: 8, seed: 3 });
    assert.is(samples.length, 8);
  } finally {
    m.dispose(); m.checkpoint.dispose();
  }
});

test('small, bf16, tied embeddings, sizes from synth.json; errors', async () => {
  const small = await initModel({ preset: 'small', tokenizer: TOK_FILE, out: path.join(TMP, 'small'), dtype: 'bf16', tieWordEmbeddings: true });
  assert.equal([small.config.hidden_size, small.config.num_hidden_layers, small.config.num_attention_heads], [192, 4, 6]);
  assert.equal((small.config.rope_scaling as { mrope_section: number[] }).mrope_section, [4, 6, 6]);
  assert.is(small.config.tie_word_embeddings, true);
  assert.is(small.config.torch_dtype, 'bfloat16');
  const st = readSafetensors(path.join(TMP, 'small', 'model.safetensors'));
  assert.not.ok(st.tensors.has('lm_head.weight'), 'tied: no lm_head');
  assert.is(st.tensors.get('model.layers.3.mlp.up_proj.weight')!.dtype, 'bf16');
  st.dispose();
  const m = await loadModel(path.join(TMP, 'small'));
  assert.is(m.config.hiddenSize, 192);
  m.dispose(); m.checkpoint.dispose();
  // a tokenizer folder with synth.json sizes the image budget to the benchmark's frames
  const tok2 = path.join(TMP, 'tok2');
  writeTokenizerFiles(tok2, TOK, DEFAULT_CHAT_TEMPLATE);
  writeFileSync(path.join(tok2, 'synth.json'), JSON.stringify({ scene: { width: 84, height: 56 }, variant: { width: 56, height: 56 } }));
  await initModel({ tokenizer: path.join(tok2, 'tokenizer.json'), out: path.join(TMP, 'sized') });
  assert.is(JSON.parse(readFileSync(path.join(TMP, 'sized', 'preprocessor_config.json'), 'utf8')).max_pixels, 84 * 56);

  const out = path.join(TMP, 'bad');
  await rejectsLike(initModel({ tokenizer: TOK_FILE, out, preset: 'huge' as never }), RangeError, /one of 'tiny', 'small' for options\.preset but received 'huge'/);
  await rejectsLike(initModel({ tokenizer: TOK_FILE, out, hiddenSize: 72 }), RangeError, /multiple of 16 \* heads \(64\).* for hiddenSize but received 72/);
  await rejectsLike(initModel({ tokenizer: TOK_FILE, out, kvHeads: 3 }), RangeError, /divisor of heads \(4\) for kvHeads/);
  await rejectsLike(initModel({ tokenizer: TOK_FILE, out, visionHeads: 3 }), RangeError, /visionHidden/);
  await rejectsLike(initModel({ tokenizer: TOK_FILE, out, layers: 0 }), RangeError, /layers/);
  await rejectsLike(initModel({ tokenizer: TOK_FILE, out, dtype: 'f16' as never }), RangeError, /options\.dtype/);
  await rejectsLike(initModel({ tokenizer: TOK_FILE, out, vocab: 3 } as never), RangeError, /no such option .* for options\.vocab/);
  await rejectsLike(initModel({ tokenizer: path.join(TMP, 'none.json'), out }), Error, /Cannot read the tokenizer '.*none\.json'/);
  const noVideo = path.join(TMP, 'novideo.json');
  const tj = structuredClone(TOK.tokenizer) as { added_tokens: { content: string }[] };
  tj.added_tokens = tj.added_tokens.filter((t) => t.content !== '<|video_pad|>');
  writeFileSync(noVideo, JSON.stringify(tj));
  await rejectsLike(initModel({ tokenizer: noVideo, out }), RangeError, /token <\|video_pad\|> in .*novideo\.json/);
  await rejectsLike(initModel({ tokenizer: TOK_FILE, out: path.join(TMP, 'tiny') }), Error, /exists: remove it or pass overwrite: true/);
  await rejectsLike(initModel(undefined as never), TypeError, /options object \(with out\) for options/);
  assert.not.ok(existsSync(out));
  assert.equal(readdirSync(TMP).filter((f) => f.includes('.tmp-')), []);
});

test('CLI: init as a user runs it; missing or unknown options exit 2, bad values 1', () => {
  const out = path.join(TMP, 'cli');
  const r = cli('init', '--tokenizer', TOK_FILE, '--out', out, '--seed', '4', '--layers', '3', '--hidden', '96', '--heads', '3', '--kv-heads', '1');
  assert.is(r.status, 0, r.stderr);
  assert.match(r.stdout, new RegExp(`wrote .*cli: Qwen2\\.5-VL \\(tiny\\), hidden 96, 3 layers, vocab ${V}, [\\d,]+ parameters \\(float32\\)`));
  const cfg = JSON.parse(readFileSync(path.join(out, 'config.json'), 'utf8'));
  assert.equal([cfg.hidden_size, cfg.num_hidden_layers, cfg.num_attention_heads, cfg.num_key_value_heads], [96, 3, 3, 1]);
  const noTok = cli('init', '--out', path.join(TMP, 'x'));
  assert.is(noTok.status, 2);
  assert.match(noTok.stderr, /videothinker init: --tokenizer FILE is required/);
  const unknown = cli('init', '--tokenizer', TOK_FILE, '--out', path.join(TMP, 'x'), '--width', '3');
  assert.is(unknown.status, 2);
  assert.match(unknown.stderr, /Unknown option '--width'/);
  const preset = cli('init', '--tokenizer', TOK_FILE, '--out', path.join(TMP, 'x'), '--preset', 'huge');
  assert.is(preset.status, 1);
  assert.match(preset.stderr, /RangeError: Expected one of 'tiny', 'small' for options\.preset/);
  const help = cli('init', '--help');
  assert.is(help.status, 0);
  assert.match(help.stdout, /^Usage: videothinker init --tokenizer FILE --out DIR/);
  assert.not.ok(existsSync(path.join(TMP, 'x')));
});

test.after(() => rmSync(TMP, { recursive: true, force: true }));
test.run();
