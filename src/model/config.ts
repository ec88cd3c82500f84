// The network's settings: a Hugging Face config.json (Qwen2_5_VLForConditionalGeneration, with the
// text settings at the top level or under text_config, or a text-only Qwen2ForCausalLM)
// normalised and validated before anything is allocated, and the parameter names and shapes the
// network expects.
import { typeError } from '../errors.js';

/** The vision tower's settings (Hugging Face `vision_config`). */
export interface QwenVisionConfig {
  depth: number;
  hiddenSize: number;
  numHeads: number;
  intermediateSize: number;
  outHiddenSize: number;
  patchSize: number;
  temporalPatchSize: number;
  spatialMergeSize: number;
  windowSize: number;
  fullattBlockIndexes: number[];
  tokensPerSecond: number;
  inChannels: number;
}
/** The settings the network needs (a normalised Hugging Face config.json). */
export interface QwenConfig {
  hiddenSize: number;
  numLayers: number;
  numHeads: number;
  numKvHeads: number;
  intermediateSize: number;
  vocabSize: number;
  rmsNormEps: number;
  ropeTheta: number;
  /** M-RoPE frequency counts for the t, h, w position streams (sum = head dim / 2). */
  mropeSection: [number, number, number];
  tieWordEmbeddings: boolean;
  imageTokenId: number;
  videoTokenId: number;
  visionStartTokenId: number;
  vision?: QwenVisionConfig;
}

type Json = Record<string, unknown>;
// Sizes far beyond any real model: a config asking for more is refused before allocation.
const MAX_SIZE = 2 ** 20, MAX_LAYERS = 1024, MAX_VOCAB = 2 ** 24;

function int(o: Json, k: string, min: number, max: number, d?: number, where = 'config'): number {
  const v = o[k] ?? d;
  if (typeof v !== 'number' || !Number.isInteger(v)) throw typeError(`${where}.${k}`, 'an integer', v);
  if (v < min || v > max) throw new RangeError(`Expected an integer in [${min}, ${max}] for ${where}.${k} but received ${v}`);
  return v;
}
function pos(o: Json, k: string, d?: number, where = 'config'): number {
  const v = o[k] ?? d;
  if (typeof v !== 'number' || !Number.isFinite(v)) throw typeError(`${where}.${k}`, 'a finite number', v);
  if (!(v > 0)) throw new RangeError(`Expected a positive number for ${where}.${k} but received ${v}`);
  return v;
}

/** Normalises and validates a Hugging Face config.json object. */
export function qwenConfigFromHF(json: unknown): QwenConfig {
  if (typeof json !== 'object' || json === null || Array.isArray(json)) throw typeError('config', 'an object (config.json)', json);
  const top = json as Json;
  const t = (typeof top.text_config === 'object' && top.text_config !== null ? { ...top, ...(top.text_config as Json) } : top);
  const heads = int(t, 'num_attention_heads', 1, 4096);
  const hidden = int(t, 'hidden_size', 1, MAX_SIZE);
  const D = hidden / heads;
  if (!Number.isInteger(D) || D % 2) throw new RangeError(`Expected hidden_size / num_attention_heads to be an even integer but received ${hidden} / ${heads}`);
  const kv = int(t, 'num_key_value_heads', 1, heads, heads);
  if (heads % kv) throw new RangeError(`Expected num_attention_heads (${heads}) to be a multiple of num_key_value_heads but received ${kv}`);
  const rs = (t.rope_scaling ?? top.rope_scaling) as Json | null | undefined;
  let section: [number, number, number];
  if (rs && Array.isArray(rs.mrope_section)) {
    const s = rs.mrope_section as unknown[];
    section = [0, 1, 2].map((i) => int({ v: s[i] ?? 0 }, 'v', 0, D / 2, undefined, `config.rope_scaling.mrope_section[${i}]`)) as [number, number, number];
    if (section[0] + section[1] + section[2] !== D / 2) throw new RangeError(`Expected mrope_section summing to ${D / 2} (head dim / 2) but received [${section.join(', ')}]`);
  } else {
    section = [D / 2, 0, 0]; // text-only: one stream, plain 1-D rotary
  }
  const vocab = int(t, 'vocab_size', 1, MAX_VOCAB);
  const token = (k: string, d: number) => {
    const v = top[k] ?? d;
    if (typeof v !== 'number' || !Number.isInteger(v) || v < 0) throw typeError(`config.${k}`, 'a non-negative integer', v);
    return v;
  };
  const cfg: QwenConfig = {
    hiddenSize: hidden,
    numLayers: int(t, 'num_hidden_layers', 0, MAX_LAYERS),
    numHeads: heads,
    numKvHeads: kv,
    intermediateSize: int(t, 'intermediate_size', 1, MAX_SIZE * 8),
    vocabSize: vocab,
    rmsNormEps: pos(t, 'rms_norm_eps', 1e-6),
    ropeTheta: pos(t, 'rope_theta', 1000000),
    mropeSection: section,
    tieWordEmbeddings: Boolean(t.tie_word_embeddings ?? top.tie_word_embeddings ?? false),
    imageTokenId: token('image_token_id', 151655),
    videoTokenId: token('video_token_id', 151656),
    visionStartTokenId: token('vision_start_token_id', 151652),
  };
  const vc = top.vision_config as Json | undefined;
  if (vc !== undefined && vc !== null) {
    if (typeof vc !== 'object' || Array.isArray(vc)) throw typeError('config.vision_config', 'an object', vc);
    const w = 'config.vision_config';
    const vh = int(vc, 'hidden_size', 1, MAX_SIZE, undefined, w), vheads = int(vc, 'num_heads', 1, 4096, undefined, w);
    if (vh % vheads || (vh / vheads) % 4) throw new RangeError(`Expected vision_config.hidden_size / num_heads to be a multiple of 4 but received ${vh} / ${vheads}`);
    const depth = int(vc, 'depth', 0, MAX_LAYERS, undefined, w);
    const full = (vc.fullatt_block_indexes as unknown[] | undefined) ?? [];
    if (!Array.isArray(full)) throw typeError(`${w}.fullatt_block_indexes`, 'an array of block indexes', full);
    full.forEach((b, i) => int({ v: b }, 'v', 0, Math.max(depth - 1, 0), undefined, `${w}.fullatt_block_indexes[${i}]`));
    const patch = int(vc, 'patch_size', 1, 1024, 14, w), merge = int(vc, 'spatial_merge_size', 1, 64, 2, w);
    const windowSize = int(vc, 'window_size', 1, 1 << 20, 112, w);
    if (windowSize < merge * patch) throw new RangeError(`Expected vision_config.window_size >= spatial_merge_size x patch_size (${merge * patch}) but received ${windowSize}`);
    cfg.vision = {
      depth,
      hiddenSize: vh,
      numHeads: vheads,
      intermediateSize: int(vc, 'intermediate_size', 1, MAX_SIZE * 8, undefined, w),
      outHiddenSize: int(vc, 'out_hidden_size', 1, MAX_SIZE, hidden, w),
      patchSize: patch,
      temporalPatchSize: int(vc, 'temporal_patch_size', 1, 64, 2, w),
      spatialMergeSize: merge,
      windowSize,
      fullattBlockIndexes: full as number[],
      tokensPerSecond: pos(vc, 'tokens_per_second', 2, w),
      inChannels: int(vc, 'in_channels', 1, 64, typeof vc.in_chans === 'number' ? vc.in_chans : 3, w),
    };
    if (cfg.vision.outHiddenSize !== hidden) throw new RangeError(`Expected vision_config.out_hidden_size = hidden_size (${hidden}) but received ${cfg.vision.outHiddenSize}`);
  }
  return cfg;
}

/** Hugging Face names across transformers versions map to one spelling (visual.*, model.layers.*). */
export function canonicalName(name: string): string {
  if (name.startsWith('model.language_model.')) return 'model.' + name.slice('model.language_model.'.length);
  if (name.startsWith('model.visual.')) return name.slice('model.'.length);
  return name;
}

/** Linear modules of each decoder layer and vision block, with their (out, in) shapes and bias. */
export interface LinearModule { name: string; out: number; in: number; bias: boolean }

/**
 * Every parameter the network reads, by Hugging Face name, with its shape (the patch embedding's
 * as stored, [C, in_channels, temporal, patch, patch]), and the linear modules (LoRA targets).
 */
export function parameterShapes(cfg: QwenConfig): { shapes: Map<string, number[]>; linears: LinearModule[] } {
  const shapes = new Map<string, number[]>();
  const linears: LinearModule[] = [];
  const C = cfg.hiddenSize, D = C / cfg.numHeads, KV = cfg.numKvHeads * D, F = cfg.intermediateSize;
  const lin = (name: string, out: number, inp: number, bias: boolean) => {
    shapes.set(`${name}.weight`, [out, inp]);
    if (bias) shapes.set(`${name}.bias`, [out]);
    linears.push({ name, out, in: inp, bias });
  };
  shapes.set('model.embed_tokens.weight', [cfg.vocabSize, C]);
  for (let l = 0; l < cfg.numLayers; l++) {
    const p = `model.layers.${l}.`;
    shapes.set(p + 'input_layernorm.weight', [C]);
    shapes.set(p + 'post_attention_layernorm.weight', [C]);
    lin(p + 'self_attn.q_proj', C, C, true);
    lin(p + 'self_attn.k_proj', KV, C, true);
    lin(p + 'self_attn.v_proj', KV, C, true);
    lin(p + 'self_attn.o_proj', C, C, false);
    lin(p + 'mlp.gate_proj', F, C, false);
    lin(p + 'mlp.up_proj', F, C, false);
    lin(p + 'mlp.down_proj', C, F, false);
  }
  shapes.set('model.norm.weight', [C]);
  if (!cfg.tieWordEmbeddings) shapes.set('lm_head.weight', [cfg.vocabSize, C]);
  const v = cfg.vision;
  if (v) {
    const vC = v.hiddenSize, U = v.spatialMergeSize ** 2;
    shapes.set('visual.patch_embed.proj.weight', [vC, v.inChannels, v.temporalPatchSize, v.patchSize, v.patchSize]);
    for (let l = 0; l < v.depth; l++) {
      const p = `visual.blocks.${l}.`;
      shapes.set(p + 'norm1.weight', [vC]);
      shapes.set(p + 'norm2.weight', [vC]);
      lin(p + 'attn.qkv', 3 * vC, vC, true);
      lin(p + 'attn.proj', vC, vC, true);
      lin(p + 'mlp.gate_proj', v.intermediateSize, vC, true);
      lin(p + 'mlp.up_proj', v.intermediateSize, vC, true);
      lin(p + 'mlp.down_proj', vC, v.intermediateSize, true);
    }
    shapes.set('visual.merger.ln_q.weight', [vC]);
    lin('visual.merger.mlp.0', U * vC, U * vC, true);
    lin('visual.merger.mlp.2', v.outHiddenSize, U * vC, true);
  }
  return { shapes, linears };
}
