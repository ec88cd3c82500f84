// A randomly initialised Qwen2.5-VL checkpoint folder in Hugging Face layout, sized for the
// synthetic benchmark: config.json (Qwen2_5_VLForConditionalGeneration), model.safetensors
// (Hugging Face names and shapes; weights as transformers initialises them: normal(0, 0.02) for
// linear, convolution and embedding weights, zero biases, ones for RMSNorm), the tokenizer files,
// the chat template, preprocessor_config.json and generation_config.json. loadModel reads it; so
// should transformers (same names, shapes and config fields; not tested here, transformers is not
// installed).
import { copyFileSync, existsSync, mkdirSync, readFileSync, renameSync, rmSync } from 'node:fs';
import path from 'node:path';

import { checkInteger, checkOneOf, checkOptions, rangeError, typeError } from './errors.js';
import { DEFAULT_CHAT_TEMPLATE, Tensor, writeSafetensors } from './index.js';
import { hash32 } from './data/random.js';
import { writeJsonAtomic } from './files.js';

/** The sizes of a model. */
export interface ModelShape {
  hiddenSize: number;
  layers: number;
  heads: number;
  kvHeads: number;
  intermediateSize: number;
  visionDepth: number;
  visionHidden: number;
  visionHeads: number;
  visionIntermediate: number;
  tieWordEmbeddings: boolean;
}

/**
 * tiny: one RL step (8 completions of ~30 tokens and the backward) should take about a second on
 * 2 cores. small: four times the width budget, for when tiny cannot learn the task.
 */
export const PRESETS: Readonly<Record<'tiny' | 'small', Readonly<ModelShape>>> = Object.freeze({
  tiny: { hiddenSize: 64, layers: 2, heads: 4, kvHeads: 2, intermediateSize: 128, visionDepth: 2, visionHidden: 64, visionHeads: 2, visionIntermediate: 128, tieWordEmbeddings: false },
  small: { hiddenSize: 192, layers: 4, heads: 6, kvHeads: 2, intermediateSize: 512, visionDepth: 4, visionHidden: 128, visionHeads: 4, visionIntermediate: 256, tieWordEmbeddings: false },
});

export interface InitOptions extends Partial<ModelShape> {
  /** 'tiny' (default) or 'small'; the other options override its sizes. */
  preset?: 'tiny' | 'small';
  /** tokenizer.json (its folder's tokenizer_config.json and chat_template.json are copied too). */
  tokenizer: string;
  /** Output folder (must not exist unless `overwrite`). */
  out: string;
  /** Seed of the weights (default 1). */
  seed?: number;
  /** Stored dtype of the weights (default 'f32'). */
  dtype?: 'f32' | 'bf16';
  /** preprocessor_config.json's pixel budget (default: from synth.json beside the tokenizer, else 28*28 to 112*56). */
  minPixels?: number;
  maxPixels?: number;
  overwrite?: boolean;
}

export interface InitResult {
  dir: string;
  /** config.json as written. */
  config: Record<string, unknown>;
  parameters: number;
  /** Every weight's name and shape, in file order. */
  tensors: { name: string; shape: number[] }[];
}

const SHAPE_KEYS: (keyof ModelShape)[] = ['hiddenSize', 'layers', 'heads', 'kvHeads', 'intermediateSize', 'visionDepth', 'visionHidden', 'visionHeads', 'visionIntermediate', 'tieWordEmbeddings'];
const INIT_KEYS = new Set<string>([...SHAPE_KEYS, 'preset', 'tokenizer', 'out', 'seed', 'dtype', 'minPixels', 'maxPixels', 'overwrite']);
const NEEDED = ['<|endoftext|>', '<|im_end|>', '<|vision_start|>', '<|vision_end|>', '<|image_pad|>', '<|video_pad|>'] as const;

function checkShape(s: ModelShape): ModelShape {
  checkInteger('hiddenSize', s.hiddenSize, 8, 16384);
  checkInteger('layers', s.layers, 1, 256);
  checkInteger('heads', s.heads, 1, 256);
  checkInteger('kvHeads', s.kvHeads, 1, 256);
  checkInteger('intermediateSize', s.intermediateSize, 1, 1 << 16);
  checkInteger('visionDepth', s.visionDepth, 1, 256);
  checkInteger('visionHidden', s.visionHidden, 8, 16384);
  checkInteger('visionHeads', s.visionHeads, 1, 256);
  checkInteger('visionIntermediate', s.visionIntermediate, 1, 1 << 16);
  if (typeof s.tieWordEmbeddings !== 'boolean') throw typeError('tieWordEmbeddings', 'a boolean', s.tieWordEmbeddings);
  // M-RoPE splits head_dim / 2 frequencies 1 : 1.5 : 1.5 over time, height and width (Qwen2.5-VL: 16, 24, 24).
  if (s.hiddenSize % s.heads || (s.hiddenSize / s.heads) % 16) throw rangeError('hiddenSize', `a multiple of 16 * heads (${16 * s.heads}): a head dimension divisible by 16 for M-RoPE`, s.hiddenSize);
  if (s.heads % s.kvHeads) throw rangeError('kvHeads', `a divisor of heads (${s.heads})`, s.kvHeads);
  // The vision tower's 2-D rotary takes a quarter of its head dimension for each axis.
  if (s.visionHidden % s.visionHeads || (s.visionHidden / s.visionHeads) % 4) throw rangeError('visionHidden', `a multiple of 4 * visionHeads (${4 * s.visionHeads})`, s.visionHidden);
  return s;
}

/** The token ids the config needs, found among the tokenizer's added tokens (or vocabulary). */
function tokenizerIds(tj: Record<string, unknown>, file: string): { size: number; ids: Record<string, number> } {
  const model = tj.model as { vocab?: unknown } | undefined;
  const vocab = model?.vocab;
  const ids: Record<string, number> = {};
  let max = -1;
  if (vocab && typeof vocab === 'object' && !Array.isArray(vocab)) for (const [t, id] of Object.entries(vocab as Record<string, number>)) { ids[t] = id; max = Math.max(max, id); }
  else if (Array.isArray(vocab)) vocab.forEach((e, i) => { if (Array.isArray(e)) ids[String(e[0])] = i; max = Math.max(max, i); });
  for (const a of (tj.added_tokens as { id: number; content: string }[] | undefined) ?? []) { ids[a.content] = a.id; max = Math.max(max, a.id); }
  for (const t of NEEDED) if (ids[t] === undefined) throw new RangeError(`Expected the token ${t} in ${file} (a Qwen2.5-VL model needs it) but it is missing`);
  return { size: max + 1, ids };
}

/** config.json of a Qwen2.5-VL model of this shape (transformers' field names). */
export function hfConfig(s: ModelShape, vocabSize: number, ids: Record<string, number>, dtype: 'f32' | 'bf16'): Record<string, unknown> {
  const half = s.hiddenSize / s.heads / 2, t = half / 4;
  return {
    architectures: ['Qwen2_5_VLForConditionalGeneration'], model_type: 'qwen2_5_vl',
    attention_dropout: 0.0, bos_token_id: ids['<|endoftext|>'], eos_token_id: ids['<|im_end|>'], hidden_act: 'silu',
    hidden_size: s.hiddenSize, initializer_range: 0.02, intermediate_size: s.intermediateSize, max_position_embeddings: 32768,
    max_window_layers: s.layers, num_attention_heads: s.heads, num_hidden_layers: s.layers, num_key_value_heads: s.kvHeads,
    rms_norm_eps: 1e-6, rope_theta: 1000000.0, sliding_window: 32768, tie_word_embeddings: s.tieWordEmbeddings,
    torch_dtype: dtype === 'bf16' ? 'bfloat16' : 'float32', transformers_version: '4.49.0', use_cache: true, use_sliding_window: false,
    vocab_size: vocabSize,
    vision_start_token_id: ids['<|vision_start|>'], vision_end_token_id: ids['<|vision_end|>'],
    ...(ids['<|vision_pad|>'] !== undefined ? { vision_token_id: ids['<|vision_pad|>'] } : {}),
    image_token_id: ids['<|image_pad|>'], video_token_id: ids['<|video_pad|>'],
    rope_scaling: { type: 'mrope', mrope_section: [t, (half - t) / 2, (half - t) / 2] },
    vision_config: {
      model_type: 'qwen2_5_vl', depth: s.visionDepth, hidden_act: 'silu', hidden_size: s.visionHidden, intermediate_size: s.visionIntermediate,
      num_heads: s.visionHeads, in_chans: 3, out_hidden_size: s.hiddenSize, patch_size: 14, spatial_merge_size: 2, spatial_patch_size: 14,
      temporal_patch_size: 2, tokens_per_second: 2, window_size: 112, fullatt_block_indexes: [s.visionDepth - 1], initializer_range: 0.02,
    },
  };
}

/** Names, shapes and initial values ('normal' std 0.02, 'zeros', 'ones') of every weight, in Hugging Face order. */
export function weightSpecs(s: ModelShape, vocabSize: number): { name: string; shape: number[]; init: 'normal' | 'zeros' | 'ones' }[] {
  const out: { name: string; shape: number[]; init: 'normal' | 'zeros' | 'ones' }[] = [];
  const add = (name: string, shape: number[], init: 'normal' | 'zeros' | 'ones' = 'normal') => out.push({ name, shape, init });
  const C = s.hiddenSize, D = C / s.heads, KV = s.kvHeads * D, F = s.intermediateSize;
  add('model.embed_tokens.weight', [vocabSize, C]);
  for (let l = 0; l < s.layers; l++) {
    const p = `model.layers.${l}.`;
    add(p + 'input_layernorm.weight', [C], 'ones');
    add(p + 'self_attn.q_proj.weight', [C, C]); add(p + 'self_attn.q_proj.bias', [C], 'zeros');
    add(p + 'self_attn.k_proj.weight', [KV, C]); add(p + 'self_attn.k_proj.bias', [KV], 'zeros');
    add(p + 'self_attn.v_proj.weight', [KV, C]); add(p + 'self_attn.v_proj.bias', [KV], 'zeros');
    add(p + 'self_attn.o_proj.weight', [C, C]);
    add(p + 'post_attention_layernorm.weight', [C], 'ones');
    add(p + 'mlp.gate_proj.weight', [F, C]); add(p + 'mlp.up_proj.weight', [F, C]); add(p + 'mlp.down_proj.weight', [C, F]);
  }
  add('model.norm.weight', [C], 'ones');
  if (!s.tieWordEmbeddings) add('lm_head.weight', [vocabSize, C]);
  const V = s.visionHidden, VF = s.visionIntermediate;
  add('visual.patch_embed.proj.weight', [V, 3, 2, 14, 14]);
  for (let l = 0; l < s.visionDepth; l++) {
    const p = `visual.blocks.${l}.`;
    add(p + 'norm1.weight', [V], 'ones'); add(p + 'norm2.weight', [V], 'ones');
    add(p + 'attn.qkv.weight', [3 * V, V]); add(p + 'attn.qkv.bias', [3 * V], 'zeros');
    add(p + 'attn.proj.weight', [V, V]); add(p + 'attn.proj.bias', [V], 'zeros');
    add(p + 'mlp.gate_proj.weight', [VF, V]); add(p + 'mlp.gate_proj.bias', [VF], 'zeros');
    add(p + 'mlp.up_proj.weight', [VF, V]); add(p + 'mlp.up_proj.bias', [VF], 'zeros');
    add(p + 'mlp.down_proj.weight', [V, VF]); add(p + 'mlp.down_proj.bias', [V], 'zeros');
  }
  add('visual.merger.ln_q.weight', [V], 'ones');
  add('visual.merger.mlp.0.weight', [4 * V, 4 * V]); add('visual.merger.mlp.0.bias', [4 * V], 'zeros');
  add('visual.merger.mlp.2.weight', [C, 4 * V]); add('visual.merger.mlp.2.bias', [C], 'zeros');
  return out;
}

/** The benchmark's frame size from synth.json beside the tokenizer, if it is there. */
function synthFrameArea(tokenizerFile: string): number | undefined {
  const meta = path.join(path.dirname(tokenizerFile), 'synth.json');
  if (!existsSync(meta)) return undefined;
  try {
    const m = JSON.parse(readFileSync(meta, 'utf8')) as { scene?: { width?: number; height?: number }; variant?: { width?: number; height?: number } };
    const a = (s?: { width?: number; height?: number }) => (s?.width && s?.height ? s.width * s.height : 0);
    return Math.max(a(m.scene), a(m.variant)) || undefined;
  } catch {
    return undefined;
  }
}

/** Writes a randomly initialised checkpoint folder (built beside `out`, then renamed into place). */
export async function initModel(options: InitOptions): Promise<InitResult> {
  if (options === undefined) throw typeError('options', 'an options object (with out)', options);
  const o = checkOptions('options', options);
  for (const k of Object.keys(o)) if (!INIT_KEYS.has(k)) throw rangeError(`options.${k}`, `no such option (known: ${[...INIT_KEYS].join(', ')})`, (o as unknown as Record<string, unknown>)[k]);
  const preset = checkOneOf('options.preset', o.preset ?? 'tiny', ['tiny', 'small']);
  const shape = { ...PRESETS[preset] };
  for (const k of SHAPE_KEYS) if (o[k] !== undefined) (shape as Record<string, unknown>)[k] = o[k];
  checkShape(shape);
  if (typeof o.tokenizer !== 'string' || o.tokenizer === '') throw typeError('options.tokenizer', 'a tokenizer.json path', o.tokenizer);
  if (typeof o.out !== 'string' || o.out === '') throw typeError('options.out', 'an output folder path', o.out);
  const seed = checkInteger('options.seed', o.seed ?? 1, 0, 2 ** 32 - 1);
  const dtype = checkOneOf('options.dtype', o.dtype ?? 'f32', ['f32', 'bf16']);
  const area = synthFrameArea(o.tokenizer);
  const minPixels = checkInteger('options.minPixels', o.minPixels ?? 28 * 28, 1);
  const maxPixels = checkInteger('options.maxPixels', o.maxPixels ?? area ?? 112 * 56, minPixels);
  if (o.overwrite !== undefined && typeof o.overwrite !== 'boolean') throw typeError('options.overwrite', 'a boolean', o.overwrite);

  let tj: Record<string, unknown>;
  try {
    tj = JSON.parse(readFileSync(o.tokenizer, 'utf8')) as Record<string, unknown>;
  } catch (e) {
    throw new Error(`Cannot read the tokenizer '${o.tokenizer}': ${(e as Error).message}`, { cause: e });
  }
  const { size: vocabSize, ids } = tokenizerIds(tj, o.tokenizer);
  const config = hfConfig(shape, vocabSize, ids, dtype);
  const specs = weightSpecs(shape, vocabSize);

  const out = path.resolve(o.out);
  if (existsSync(out) && !o.overwrite) throw new Error(`The output folder ${out} exists: remove it or pass overwrite: true (--force)`);
  const tmp = `${out}.tmp-${process.pid}-${Date.now().toString(36)}`;
  mkdirSync(tmp, { recursive: true });
  const tensors = new Map<string, Tensor>();
  try {
    let parameters = 0;
    specs.forEach((w, i) => {
      const n = w.shape.reduce((a, b) => a * b, 1);
      parameters += n;
      // One seed per tensor from its position: the same seed gives the same weights on any thread count.
      const t = w.init === 'normal' ? Tensor.randn(w.shape, { seed: hash32(seed, i), std: 0.02, dtype })
        : w.init === 'ones' ? Tensor.from(new Float32Array(n).fill(1), w.shape, dtype) : Tensor.zeros(w.shape, dtype);
      tensors.set(w.name, t);
    });
    writeSafetensors(path.join(tmp, 'model.safetensors'), tensors, { format: 'pt' });
    writeJsonAtomic(path.join(tmp, 'config.json'), config);
    copyFileSync(o.tokenizer, path.join(tmp, 'tokenizer.json'));
    const tokDir = path.dirname(o.tokenizer);
    for (const f of ['tokenizer_config.json', 'chat_template.json']) if (existsSync(path.join(tokDir, f))) copyFileSync(path.join(tokDir, f), path.join(tmp, f));
    if (!existsSync(path.join(tmp, 'chat_template.json'))) writeJsonAtomic(path.join(tmp, 'chat_template.json'), { chat_template: DEFAULT_CHAT_TEMPLATE });
    writeJsonAtomic(path.join(tmp, 'preprocessor_config.json'), {
      image_processor_type: 'Qwen2VLImageProcessor', processor_class: 'Qwen2_5_VLProcessor',
      min_pixels: minPixels, max_pixels: maxPixels, patch_size: 14, temporal_patch_size: 2, merge_size: 2,
      image_mean: [0.48145466, 0.4578275, 0.40821073], image_std: [0.26862954, 0.26130258, 0.27577711],
      do_resize: true, do_rescale: true, rescale_factor: 1 / 255, do_normalize: true, do_convert_rgb: true,
    });
    writeJsonAtomic(path.join(tmp, 'generation_config.json'), {
      bos_token_id: ids['<|endoftext|>'], pad_token_id: ids['<|endoftext|>'], eos_token_id: [ids['<|im_end|>'], ids['<|endoftext|>']],
      do_sample: false, transformers_version: '4.49.0',
    });
    let old: string | null = null;
    if (existsSync(out)) { old = `${out}.old-${process.pid}-${Date.now().toString(36)}`; renameSync(out, old); }
    renameSync(tmp, out);
    if (old) rmSync(old, { recursive: true, force: true });
    return { dir: out, config, parameters, tensors: specs.map((w) => ({ name: w.name, shape: w.shape })) };
  } catch (e) {
    rmSync(tmp, { recursive: true, force: true });
    throw e;
  } finally {
    for (const t of tensors.values()) t.dispose();
  }
}
