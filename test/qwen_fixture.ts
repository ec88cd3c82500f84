// A tiny random Qwen2.5-VL (hidden 32, 2 decoder layers with 4 query / 2 key-value heads, a
// 3-block vision tower with one full-attention block), its inputs, and the independent float64
// PyTorch reference (test/ref/qwen_ref.py) run on them: forward outputs, and with cotangents or
// LoRA adapters, every parameter's gradient. Shared by test/qwen.test.ts and test/grad.test.ts.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import { QwenModel, qwenConfigFromHF, type GridThw, type NetworkOptions } from '../src/index.js';
import { Tensor } from '../src/tensor.js';
import { randomF32 } from './helpers.js';
import { runPython } from './skip.js';

export { PY } from './skip.js';
const REF = path.join(path.dirname(fileURLToPath(import.meta.url)), 'ref', 'qwen_ref.py');
export const f32 = (t: Tensor) => t.data as Float32Array;

export const HF = {
  architectures: ['Qwen2_5_VLForConditionalGeneration'],
  hidden_size: 32, num_hidden_layers: 2, num_attention_heads: 4, num_key_value_heads: 2, intermediate_size: 64,
  vocab_size: 300, rms_norm_eps: 1e-6, rope_theta: 1000000, tie_word_embeddings: false,
  rope_scaling: { type: 'mrope', mrope_section: [1, 2, 1] },
  image_token_id: 290, video_token_id: 291, vision_start_token_id: 292, vision_end_token_id: 293,
  vision_config: {
    depth: 3, hidden_size: 32, num_heads: 2, intermediate_size: 48, out_hidden_size: 32, patch_size: 14,
    temporal_patch_size: 2, spatial_merge_size: 2, window_size: 112, fullatt_block_indexes: [1], tokens_per_second: 2, in_channels: 3,
  },
};
export type HFConfig = typeof HF;
export const PATCH = 3 * 2 * 14 * 14;
export const IMG = 290, VID = 291, VS = 292, VE = 293;

export type Weights = Map<string, Float32Array> & { shapes: Map<string, number[]> };

/** Random weights with Hugging Face names and shapes (f32 values; norms near 1). */
export function makeWeights(seed: number, hf: HFConfig = HF): Weights {
  const m = new Map<string, Float32Array>() as Weights;
  m.shapes = new Map();
  let s = seed;
  const add = (name: string, shape: number[], scale: number, offset = 0) => {
    const n = shape.reduce((a, b) => a * b, 1);
    const v = randomF32(n, s++, scale);
    if (offset) for (let i = 0; i < n; i++) v[i]! += offset;
    m.set(name, v); m.shapes.set(name, shape);
  };
  const C = hf.hidden_size, F = hf.intermediate_size, D = C / hf.num_attention_heads, KV = hf.num_key_value_heads * D;
  add('model.embed_tokens.weight', [hf.vocab_size, C], 0.5);
  for (let l = 0; l < hf.num_hidden_layers; l++) {
    const p = `model.layers.${l}.`;
    add(p + 'input_layernorm.weight', [C], 0.1, 1); add(p + 'post_attention_layernorm.weight', [C], 0.1, 1);
    add(p + 'self_attn.q_proj.weight', [C, C], 0.2); add(p + 'self_attn.q_proj.bias', [C], 0.2);
    add(p + 'self_attn.k_proj.weight', [KV, C], 0.2); add(p + 'self_attn.k_proj.bias', [KV], 0.2);
    add(p + 'self_attn.v_proj.weight', [KV, C], 0.2); add(p + 'self_attn.v_proj.bias', [KV], 0.2);
    add(p + 'self_attn.o_proj.weight', [C, C], 0.2);
    add(p + 'mlp.gate_proj.weight', [F, C], 0.2); add(p + 'mlp.up_proj.weight', [F, C], 0.2); add(p + 'mlp.down_proj.weight', [C, F], 0.15);
  }
  add('model.norm.weight', [C], 0.1, 1);
  if (!hf.tie_word_embeddings) add('lm_head.weight', [hf.vocab_size, C], 0.3);
  const vc = hf.vision_config;
  const V = vc.hidden_size, VF = vc.intermediate_size;
  add('visual.patch_embed.proj.weight', [V, 3, 2, 14, 14], 0.03);
  for (let l = 0; l < vc.depth; l++) {
    const p = `visual.blocks.${l}.`;
    add(p + 'norm1.weight', [V], 0.1, 1); add(p + 'norm2.weight', [V], 0.1, 1);
    add(p + 'attn.qkv.weight', [3 * V, V], 0.2); add(p + 'attn.qkv.bias', [3 * V], 0.2);
    add(p + 'attn.proj.weight', [V, V], 0.2); add(p + 'attn.proj.bias', [V], 0.2);
    add(p + 'mlp.gate_proj.weight', [VF, V], 0.2); add(p + 'mlp.gate_proj.bias', [VF], 0.2);
    add(p + 'mlp.up_proj.weight', [VF, V], 0.2); add(p + 'mlp.up_proj.bias', [VF], 0.2);
    add(p + 'mlp.down_proj.weight', [V, VF], 0.2); add(p + 'mlp.down_proj.bias', [V], 0.2);
  }
  add('visual.merger.ln_q.weight', [V], 0.1, 1);
  add('visual.merger.mlp.0.weight', [4 * V, 4 * V], 0.1); add('visual.merger.mlp.0.bias', [4 * V], 0.1);
  add('visual.merger.mlp.2.weight', [C, 4 * V], 0.1); add('visual.merger.mlp.2.bias', [C], 0.1);
  return m;
}

/** The weights as tensors of `dtype`, and the f32 values they hold (what the reference gets). */
export function toTensors(w: Weights, dtype: 'f32' | 'bf16' = 'f32'): { tensors: Map<string, Tensor>; stored: Map<string, Float32Array> } {
  const tensors = new Map<string, Tensor>();
  const stored = new Map<string, Float32Array>();
  for (const [k, v] of w) {
    const t = Tensor.from(v, w.shapes.get(k)!, dtype);
    tensors.set(k, t);
    const b = t.to('f32'); stored.set(k, f32(b).slice()); b.dispose();
  }
  return { tensors, stored };
}

export function toModel(w: Weights, dtype: 'f32' | 'bf16' = 'f32', opts: NetworkOptions = {}, hf: HFConfig = HF): { model: QwenModel; stored: Map<string, Float32Array> } {
  const { tensors, stored } = toTensors(w, dtype);
  return { model: new QwenModel(qwenConfigFromHF(hf), tensors, opts), stored };
}

export interface Case {
  ids: number[][];
  mask?: number[][];
  image?: { grid: GridThw[]; pixels: Float32Array };
  video?: { grid: GridThw[]; pixels: Float32Array; spg?: number[] };
}
export type RefOut = Record<string, Float64Array> & { deltas: number[]; grads: Map<string, Float64Array> };

export interface RefExtras {
  /** Cotangents: the reference returns d/dW of sum(hidden * dHidden) + sum(logits * dLogits). */
  dHidden?: Float32Array;
  dLogits?: Float32Array;
  /** LoRA factors by PEFT name (module.lora_A.weight / lora_B.weight) with their shapes. */
  lora?: { rank: number; alpha: number; weights: Map<string, { v: Float32Array; shape: number[] }> };
  config?: HFConfig;
}

/** Runs the float64 reference; null where Python/PyTorch is missing (the caller records a skip; CI fails there). */
export function runRef(c: Case, weights: Map<string, Float32Array>, shapes: Map<string, number[]>, extras: RefExtras = {}): RefOut | null {
  const dir = mkdtempSync(path.join(tmpdir(), 'vt-qwen-'));
  const hf = extras.config ?? HF;
  try {
    const spec: Record<string, { file: string; dtype: string; shape: number[] }> = {};
    let i = 0;
    const put = (a: Float32Array | Int32Array, shape: number[]) => {
      const file = `t${i++}.bin`;
      writeFileSync(path.join(dir, file), Buffer.from(a.buffer, a.byteOffset, a.byteLength));
      return { file, dtype: a instanceof Float32Array ? '<f4' : '<i4', shape };
    };
    for (const [k, v] of weights) spec[k] = put(v, shapes.get(k)!);
    const inputs: Record<string, ReturnType<typeof put>> = {};
    const B = c.ids.length, L = c.ids[0]!.length;
    inputs.input_ids = put(Int32Array.from(c.ids.flat()), [B, L]);
    if (c.mask) inputs.attention_mask = put(Int32Array.from(c.mask.flat()), [B, L]);
    if (c.image) inputs.pixel_values = put(c.image.pixels, [c.image.pixels.length / PATCH, PATCH]);
    if (c.video) inputs.pixel_values_videos = put(c.video.pixels, [c.video.pixels.length / PATCH, PATCH]);
    const more: Record<string, unknown> = {};
    if (extras.dHidden) more.d_hidden = put(extras.dHidden, [B, L, hf.hidden_size]);
    if (extras.dLogits) more.d_logits = put(extras.dLogits, [B, L, hf.vocab_size]);
    if (extras.lora) {
      const lw: Record<string, ReturnType<typeof put>> = {};
      for (const [k, { v, shape }] of extras.lora.weights) lw[k] = put(v, shape);
      more.lora = { rank: extras.lora.rank, alpha: extras.lora.alpha, weights: lw };
    }
    writeFileSync(path.join(dir, 'case.json'), JSON.stringify({
      config: hf, weights: spec, inputs, image_grid_thw: c.image?.grid, video_grid_thw: c.video?.grid, second_per_grid_ts: c.video?.spg, ...more,
    }));
    // null only when Python/torch is missing (the caller skips); a reference that fails is a failure
    if (runPython([REF, dir], ['numpy', 'torch']) === null) return null;
    const meta = JSON.parse(readFileSync(path.join(dir, 'out.json'), 'utf8')) as { deltas: number[]; shapes: Record<string, number[]>; grads?: Record<string, number[]> };
    const read = (file: string) => {
      const b = readFileSync(path.join(dir, file));
      return new Float64Array(b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength));
    };
    const out = { deltas: meta.deltas, grads: new Map() } as RefOut;
    for (const k of Object.keys(meta.shapes)) out[k] = read(`out_${k}.bin`);
    for (const k of Object.keys(meta.grads ?? {})) out.grads.set(k, read(`grad_${k}.bin`));
    return out;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** Rows of [B, L, X] where mask is 1 (padding positions are unspecified in both). */
export function keep(a: ArrayLike<number>, mask: number[][] | undefined, X: number): number[] {
  if (!mask) return Array.from(a);
  const out: number[] = [];
  mask.flat().forEach((m, i) => { if (m) for (let x = 0; x < X; x++) out.push(a[i * X + x]!); });
  return out;
}

export const videoGrid: GridThw[] = [[2, 10, 6]]; // merged 5 x 3 per frame: windows of 4 x 4 do not divide it
export const imageGrid: GridThw[] = [[1, 4, 8]]; // merged 2 x 4: the reference pads a whole empty window column
export const videoPixels = randomF32(2 * 10 * 6 * PATCH, 7);
export const imagePixels = randomF32(1 * 4 * 8 * PATCH, 8);
export const CASES: Record<string, Case> = {
  video: { ids: [[5, 6, VS, ...new Array<number>(30).fill(VID), VE, 7, 8]], video: { grid: videoGrid, pixels: videoPixels, spg: [1.5] } },
  imageVideo: {
    ids: [[1, VS, ...new Array<number>(8).fill(IMG), VE, 9, VS, ...new Array<number>(30).fill(VID), VE, 10, 11]],
    image: { grid: imageGrid, pixels: imagePixels }, video: { grid: videoGrid, pixels: videoPixels },
  },
  // 11 tokens: the prompt path (fused attention kernel, rows as cache segments) with left padding.
  paddedText: {
    ids: [[0, 0, 0, 17, 18, 19, 20, 30, 31, 32, 33], [21, 22, 23, 24, 25, 26, 27, 28, 29, 40, 41]],
    mask: [[0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1], [1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1]],
  },
};

/** The model's forward on a case (synchronous). */
export function forwardCase(m: QwenModel, c: Case, extra: { grad?: boolean } = {}) {
  return m.forwardSync({
    inputIds: Tensor.from(Int32Array.from(c.ids.flat()), [c.ids.length, c.ids[0]!.length]),
    attentionMask: c.mask ? Tensor.from(Int32Array.from(c.mask.flat()), [c.ids.length, c.ids[0]!.length]) : undefined,
    pixelValues: c.image ? Tensor.from(c.image.pixels, [c.image.pixels.length / PATCH, PATCH]) : undefined,
    imageGridThw: c.image?.grid,
    pixelValuesVideos: c.video ? Tensor.from(c.video.pixels, [c.video.pixels.length / PATCH, PATCH]) : undefined,
    videoGridThw: c.video?.grid,
    secondPerGridTs: c.video?.spg,
    ...extra,
  });
}
