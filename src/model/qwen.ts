// The Qwen2.5-VL network on the CPU: vision tower (3D patch embedding, 2D rotary, window / full
// attention blocks, 2x2 patch merger), Qwen2 decoder with GQA and M-RoPE, KV cache, and the
// reference's position ids for text, images and videos. Weights use Hugging Face tensor names and
// stay in their stored dtype; activations are f32. Heavy work runs as native jobs: the decoder
// layer stack of one step is a single job, so the Promise forms keep the event loop free.
import { checkInteger, checkOptions, typeError } from '../errors.js';
import { Tensor } from '../tensor.js';
import {
  call, embeddingJob, geluJob, linearJob, rmsNormJob, ropeJob, runAsync, runSync, swigluJob,
  type DecoderDims, type Program,
} from './qwen_ops.js';
import { native } from '../native.js';
import { attention, attentionSync, type AttentionResult } from '../kernels/attention.js';
import { generate, generateStream, type GenerateEvent, type GenerateOptions, type GeneratedSample } from './generate.js';
import type { QwenProcessor } from './processor.js';
import type { QwenTokenizer } from './tokenizer.js';

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
const num = (o: Json, k: string, d?: number): number => {
  const v = o[k] ?? d;
  if (typeof v !== 'number') throw typeError(`config.${k}`, 'a number', v);
  return v;
};

/**
 * Normalises a Hugging Face config.json object (Qwen2_5_VLForConditionalGeneration, with the text
 * settings at the top level or under text_config, or a text-only Qwen2ForCausalLM).
 */
export function qwenConfigFromHF(json: unknown): QwenConfig {
  if (typeof json !== 'object' || json === null) throw typeError('config', 'an object (config.json)', json);
  const top = json as Json;
  const t = (typeof top.text_config === 'object' && top.text_config !== null ? { ...top, ...(top.text_config as Json) } : top);
  const heads = num(t, 'num_attention_heads');
  const hidden = num(t, 'hidden_size');
  const D = hidden / heads;
  const rs = (t.rope_scaling ?? top.rope_scaling) as Json | null | undefined;
  let section: [number, number, number];
  if (rs && Array.isArray(rs.mrope_section)) {
    const s = rs.mrope_section as number[];
    section = [s[0] ?? 0, s[1] ?? 0, s[2] ?? 0];
  } else {
    section = [D / 2, 0, 0]; // text-only: one stream, plain 1-D rotary
  }
  const vc = top.vision_config as Json | undefined;
  const cfg: QwenConfig = {
    hiddenSize: hidden,
    numLayers: num(t, 'num_hidden_layers'),
    numHeads: heads,
    numKvHeads: num(t, 'num_key_value_heads', heads),
    intermediateSize: num(t, 'intermediate_size'),
    vocabSize: num(t, 'vocab_size'),
    rmsNormEps: num(t, 'rms_norm_eps', 1e-6),
    ropeTheta: num(t, 'rope_theta', 1000000),
    mropeSection: section,
    tieWordEmbeddings: Boolean(t.tie_word_embeddings ?? top.tie_word_embeddings ?? false),
    imageTokenId: num(top, 'image_token_id', 151655),
    videoTokenId: num(top, 'video_token_id', 151656),
    visionStartTokenId: num(top, 'vision_start_token_id', 151652),
  };
  if (vc) {
    cfg.vision = {
      depth: num(vc, 'depth'),
      hiddenSize: num(vc, 'hidden_size'),
      numHeads: num(vc, 'num_heads'),
      intermediateSize: num(vc, 'intermediate_size'),
      outHiddenSize: num(vc, 'out_hidden_size', hidden),
      patchSize: num(vc, 'patch_size', 14),
      temporalPatchSize: num(vc, 'temporal_patch_size', 2),
      spatialMergeSize: num(vc, 'spatial_merge_size', 2),
      windowSize: num(vc, 'window_size', 112),
      fullattBlockIndexes: (vc.fullatt_block_indexes as number[] | undefined) ?? [],
      tokensPerSecond: num(vc, 'tokens_per_second', 2),
      inChannels: num(vc, 'in_channels', num(vc, 'in_chans', 3)),
    };
  }
  return cfg;
}

/** Hugging Face names across transformers versions map to one spelling (visual.*, model.layers.*). */
export function canonicalName(name: string): string {
  if (name.startsWith('model.language_model.')) return 'model.' + name.slice('model.language_model.'.length);
  if (name.startsWith('model.visual.')) return name.slice('model.'.length);
  return name;
}

/** Grid of one image or video in patches: [t, h, w]. */
export type GridThw = readonly [number, number, number];

/** Inputs of forward(), as the reference processor produces them. */
export interface QwenInputs {
  /** Token ids [B, L] (i32 or i64 Tensor) or one sequence as an Int32Array / number[]. */
  inputIds: Tensor | Int32Array | readonly number[];
  /** 1 for real tokens, 0 for padding, [B, L]. */
  attentionMask?: Tensor | Int32Array | readonly number[];
  pixelValues?: Tensor;
  imageGridThw?: readonly GridThw[] | Tensor;
  pixelValuesVideos?: Tensor;
  videoGridThw?: readonly GridThw[] | Tensor;
  /** Seconds per temporal grid step of each video (default 1). */
  secondPerGridTs?: readonly number[];
  /** Append to (and attend over) this cache; positions continue from it. */
  cache?: KVCache;
  /** Logits for every position (default) or only each row's last. */
  logits?: 'all' | 'last' | 'none';
}
export interface QwenOutputs {
  /** [B, L, V] (or [B, 1, V] with logits: 'last'). */
  logits?: Tensor;
  /** The final normed hidden states [B, L, C]. */
  hidden: Tensor;
  /** M-RoPE position ids [3, B, L]. */
  positionIds: Int32Array;
}

/** The key/value cache of a batch: per layer K and V [B, maxLen, Hkv, D] f32. */
export class KVCache {
  past = 0;
  readonly k: Tensor[];
  readonly v: Tensor[];
  /** 1 where a cached key is a real token (padding excluded), [B, maxLen]. */
  readonly keyMask: Tensor;
  /** Per row: next M-RoPE position = cache position + delta (the reference's rope_deltas). */
  ropeDeltas: number[];
  constructor(readonly batch: number, readonly maxLen: number, layers: number, kvHeads: number, headDim: number) {
    this.k = []; this.v = [];
    for (let l = 0; l < layers; l++) {
      this.k.push(Tensor.empty([batch, maxLen, kvHeads, headDim]));
      this.v.push(Tensor.empty([batch, maxLen, kvHeads, headDim]));
    }
    this.keyMask = Tensor.zeros([batch, maxLen], 'u8');
    this.ropeDeltas = new Array<number>(batch).fill(0);
  }
  /** A cache of `n` rows, each a copy of row `row` of this one (n samples sharing one prefill). */
  expand(row: number, n: number): KVCache {
    const c = new KVCache(n, this.maxLen, this.k.length, this.k[0]?.shape[2] ?? 0, this.k[0]?.shape[3] ?? 0);
    const per = this.maxLen * (this.k[0]?.shape[2] ?? 0) * (this.k[0]?.shape[3] ?? 0);
    const used = this.past * (this.k[0]?.shape[2] ?? 0) * (this.k[0]?.shape[3] ?? 0);
    for (let l = 0; l < this.k.length; l++) {
      for (const [src, dst] of [[this.k[l]!, c.k[l]!], [this.v[l]!, c.v[l]!]] as const) {
        const s = (src.data as Float32Array).subarray(row * per, row * per + used);
        const d = dst.data as Float32Array;
        for (let i = 0; i < n; i++) d.set(s, i * per);
      }
    }
    const km = (this.keyMask.data as Uint8Array).subarray(row * this.maxLen, (row + 1) * this.maxLen);
    for (let i = 0; i < n; i++) (c.keyMask.data as Uint8Array).set(km, i * this.maxLen);
    c.past = this.past;
    c.ropeDeltas = new Array<number>(n).fill(this.ropeDeltas[row] ?? 0);
    return c;
  }
  dispose(): void {
    for (const t of [...this.k, ...this.v, this.keyMask]) t.dispose();
  }
}

function toRows(name: string, v: Tensor | Int32Array | readonly number[]): { data: Int32Array; B: number; L: number } {
  if (v instanceof Tensor) {
    if (v.dtype !== 'i32' && v.dtype !== 'i64') throw new TypeError(`Expected dtype i32 or i64 for ${name} but received ${v.dtype}`);
    if (v.ndim !== 2 && v.ndim !== 1) throw new RangeError(`Expected 2 dimensions [B, L] for ${name} but received shape [${v.shape.join(', ')}]`);
    const c = v.contiguous();
    const raw = c.data as Int32Array | BigInt64Array;
    const data = raw instanceof BigInt64Array ? Int32Array.from(raw, (x) => Number(x)) : Int32Array.from(raw);
    if (c !== v) c.dispose();
    return { data, B: v.ndim === 2 ? v.shape[0]! : 1, L: v.shape[v.ndim - 1]! };
  }
  if (v instanceof Int32Array) return { data: v, B: 1, L: v.length };
  if (Array.isArray(v)) return { data: Int32Array.from(v as number[]), B: 1, L: v.length };
  throw typeError(name, 'a Tensor [B, L], an Int32Array or an array of numbers', v);
}
function toGrids(name: string, g: readonly GridThw[] | Tensor | undefined): GridThw[] {
  if (g === undefined) return [];
  let rows: number[][];
  if (g instanceof Tensor) {
    const d = Array.from(g.contiguous().data as Int32Array | BigInt64Array, Number);
    rows = [];
    for (let i = 0; i + 3 <= d.length; i += 3) rows.push(d.slice(i, i + 3));
  } else if (Array.isArray(g)) rows = g.map((r) => [...(r as number[])]);
  else throw typeError(name, 'an array of [t, h, w] or an integer Tensor [n, 3]', g);
  return rows.map((r, i) => {
    if (r.length !== 3) throw new RangeError(`Expected [t, h, w] for ${name}[${i}] but received [${r.join(', ')}]`);
    r.forEach((x, j) => checkInteger(`${name}[${i}][${j}]`, x, 1));
    return [r[0]!, r[1]!, r[2]!] as const;
  });
}

/** The window order of the merged tokens and the window boundaries in patches (get_window_index). */
export function windowIndex(grids: readonly GridThw[], windowSize: number, merge: number, patch: number): { index: Int32Array; cuWindow: Int32Array } {
  const vw = Math.floor(windowSize / merge / patch);
  const index: number[] = [];
  const cu: number[] = [0];
  let base = 0;
  for (const [t, h, w] of grids) {
    const gh = h / merge, gw = w / merge;
    const nwh = Math.ceil(gh / vw), nww = Math.ceil(gw / vw);
    for (let tt = 0; tt < t; tt++) {
      for (let wh = 0; wh < nwh; wh++) {
        for (let ww = 0; ww < nww; ww++) {
          let n = 0;
          for (let y = wh * vw; y < Math.min(gh, (wh + 1) * vw); y++) {
            for (let x = ww * vw; x < Math.min(gw, (ww + 1) * vw); x++) { index.push(base + (tt * gh + y) * gw + x); n++; }
          }
          // Empty windows (the reference pads a whole extra window when gh % vw == 0) add nothing.
          if (n > 0) cu.push(cu[cu.length - 1]! + n * merge * merge);
        }
      }
    }
    base += t * gh * gw;
  }
  return { index: Int32Array.from(index), cuWindow: Int32Array.from(cu) };
}

/** Row and column of every patch, in the processor's order (merge blocks of merge x merge). */
export function visionPositions(grids: readonly GridThw[], merge: number): Int32Array {
  const n = grids.reduce((a, [t, h, w]) => a + t * h * w, 0);
  const pos = new Int32Array(2 * n);
  let i = 0;
  for (const [t, h, w] of grids) {
    for (let tt = 0; tt < t; tt++) {
      for (let bh = 0; bh < h / merge; bh++) {
        for (let bw = 0; bw < w / merge; bw++) {
          for (let dy = 0; dy < merge; dy++) {
            for (let dx = 0; dx < merge; dx++) { pos[i] = bh * merge + dy; pos[n + i] = bw * merge + dx; i++; }
          }
        }
      }
    }
  }
  return pos;
}

/**
 * M-RoPE position ids [3, B, L] and the per-row deltas (get_rope_index of the reference):
 * text advances all three streams together; an image or video block of grid (t, h, w) takes
 * t * h/2 * w/2 tokens with temporal index floor(frame * secondsPerGrid * tokensPerSecond),
 * row and column indices, all offset by the position after the preceding text; padding gets 1.
 */
export function ropeIndex(cfg: QwenConfig, ids: Int32Array, B: number, L: number, mask: Int32Array | null,
  imageGrids: readonly GridThw[], videoGrids: readonly GridThw[], secondPerGridTs?: readonly number[]): { positions: Int32Array; deltas: number[] } {
  const pos = new Int32Array(3 * B * L).fill(1);
  const deltas: number[] = [];
  const merge = cfg.vision?.spatialMergeSize ?? 2;
  const tps = cfg.vision?.tokensPerSecond ?? 2;
  let imgI = 0, vidI = 0;
  for (let b = 0; b < B; b++) {
    const idx: number[] = [];
    for (let l = 0; l < L; l++) if (!mask || mask[b * L + l] === 1) idx.push(l);
    const toks = idx.map((l) => ids[b * L + l]!);
    const out: number[][] = [[], [], []];
    let st = 0, next = 0;
    const text = (n: number) => { for (let i = 0; i < n; i++) for (let s = 0; s < 3; s++) out[s]!.push(next + i); next += n; };
    while (true) {
      let ed = -1, grid: GridThw | undefined, spg = 0;
      for (let i = st; i < toks.length; i++) {
        if (toks[i] === cfg.imageTokenId && imgI < imageGrids.length) { ed = i; grid = imageGrids[imgI++]; spg = 0; break; }
        if (toks[i] === cfg.videoTokenId && vidI < videoGrids.length) { ed = i; spg = secondPerGridTs?.[vidI] ?? 1; grid = videoGrids[vidI++]; break; }
      }
      if (ed < 0 || !grid) break;
      text(ed - st);
      const [t, h, w] = [grid[0], grid[1] / merge, grid[2] / merge];
      let mx = next;
      for (let tt = 0; tt < t; tt++) {
        const ti = Math.trunc(tt * spg * tps);
        for (let y = 0; y < h; y++) {
          for (let x = 0; x < w; x++) {
            out[0]!.push(next + ti); out[1]!.push(next + y); out[2]!.push(next + x);
            mx = Math.max(mx, next + ti, next + y, next + x);
          }
        }
      }
      next = mx + 1;
      st = ed + t * h * w;
    }
    text(toks.length - st);
    idx.forEach((l, i) => { for (let s = 0; s < 3; s++) pos[(s * B + b) * L + l] = out[s]![i]!; });
    deltas.push(next - L);
  }
  return { positions: pos, deltas };
}

/** Weights of one decoder layer under the native step's names. */
const LAYER_KEYS: Record<string, string> = {
  ln1: 'input_layernorm.weight', ln2: 'post_attention_layernorm.weight',
  wq: 'self_attn.q_proj.weight', bq: 'self_attn.q_proj.bias', wk: 'self_attn.k_proj.weight', bk: 'self_attn.k_proj.bias',
  wv: 'self_attn.v_proj.weight', bv: 'self_attn.v_proj.bias', wo: 'self_attn.o_proj.weight',
  wg: 'mlp.gate_proj.weight', wu: 'mlp.up_proj.weight', wd: 'mlp.down_proj.weight',
};

/** A Qwen2.5-VL (or Qwen2) network over a map of Hugging Face-named weights. */
export class QwenModel {
  readonly config: QwenConfig;
  readonly weights: Map<string, Tensor>;
  readonly headDim: number;
  /** The checkpoint's tokenizer and chat template (set by loadModel when the folder has tokenizer.json). */
  tokenizer?: QwenTokenizer;
  /** The image / video processor (loadModel: from preprocessor_config.json, or the defaults). */
  processor?: QwenProcessor;
  #invFreq: Tensor;
  #sections: Tensor;
  #visionInvFreq?: Tensor;

  constructor(config: QwenConfig, weights: Map<string, Tensor>) {
    this.config = config;
    this.weights = new Map([...weights].map(([k, v]) => [canonicalName(k), v]));
    this.headDim = config.hiddenSize / config.numHeads;
    const D = this.headDim;
    if (!Number.isInteger(D) || D % 2) throw new RangeError(`Expected hidden_size / num_attention_heads to be an even integer but received ${config.hiddenSize} / ${config.numHeads}`);
    const s = config.mropeSection;
    if (s[0] + s[1] + s[2] !== D / 2) throw new RangeError(`Expected mrope_section summing to ${D / 2} (head dim / 2) but received [${s.join(', ')}]`);
    const inv = new Float32Array(D / 2);
    for (let j = 0; j < D / 2; j++) inv[j] = 1 / Math.pow(config.ropeTheta, (2 * j) / D);
    this.#invFreq = Tensor.from(inv);
    this.#sections = Tensor.from(Int32Array.from(s));
    const need = ['model.embed_tokens.weight', 'model.norm.weight'];
    for (let l = 0; l < config.numLayers; l++) for (const k of Object.values(LAYER_KEYS)) need.push(`model.layers.${l}.${k}`);
    for (const n of need) if (!this.weights.has(n)) throw new RangeError(`Expected weight ${n} in the checkpoint but it is missing`);
    if (config.vision) {
      const vd = config.vision.hiddenSize / config.vision.numHeads;
      const vinv = new Float32Array(vd / 2);
      for (let j = 0; j < vd / 2; j++) vinv[j] = 1 / Math.pow(10000, (2 * (j % (vd / 4))) / (vd / 2));
      this.#visionInvFreq = Tensor.from(vinv);
    }
  }

  #w(name: string): Tensor {
    const t = this.weights.get(name);
    if (!t) throw new RangeError(`Expected weight ${name} in the checkpoint but it is missing`);
    return t;
  }
  #wOpt(name: string): Tensor | null { return this.weights.get(name) ?? null; }
  get lmHead(): Tensor { return this.#wOpt('lm_head.weight') ?? this.#w('model.embed_tokens.weight'); }

  /** A KV cache for `batch` rows of up to `maxLen` tokens. */
  createCache(batch: number, maxLen: number): KVCache {
    checkInteger('batch', batch, 1);
    checkInteger('maxLen', maxLen, 1);
    return new KVCache(batch, maxLen, this.config.numLayers, this.config.numKvHeads, this.headDim);
  }

  // ---- vision tower ----
  *#vision(pixels: Tensor, grids: readonly GridThw[]): Program<Tensor> {
    const vc = this.config.vision;
    if (!vc) throw new TypeError('Expected a checkpoint with a vision tower (vision_config) for pixel inputs');
    const m = vc.spatialMergeSize, unit = m * m;
    const K = vc.inChannels * vc.temporalPatchSize * vc.patchSize * vc.patchSize;
    const N = grids.reduce((a, [t, h, w]) => a + t * h * w, 0);
    grids.forEach(([, h, w], i) => { if (h % m || w % m) throw new RangeError(`Expected grid h and w divisible by ${m} for grid ${i} but received [${grids[i]!.join(', ')}]`); });
    if (pixels.ndim !== 2 || pixels.shape[0] !== N || pixels.shape[1] !== K) {
      throw new RangeError(`Expected pixel values of shape [${N}, ${K}] (the grids' patches) but received [${pixels.shape.join(', ')}]`);
    }
    const C = vc.hiddenSize, H = vc.numHeads, D = C / H;
    const px = pixels.dtype === 'f32' ? pixels.contiguous() : pixels.to('f32');
    const pw = this.#w('visual.patch_embed.proj.weight');
    const pw2 = pw.reshape([C, K]);
    const x0 = yield* call(linearJob(px, pw2));
    pw2.dispose();
    if (px !== pixels) px.dispose();
    // Window order: groups of `unit` patches (one merged token each) move together.
    const { index, cuWindow } = windowIndex(grids, vc.windowSize, m, vc.patchSize);
    const reorder = (src: Float32Array, width: number, dst: Float32Array) => {
      for (let i = 0; i < index.length; i++) dst.set(src.subarray(index[i]! * unit * width, (index[i]! + 1) * unit * width), i * unit * width);
    };
    let x = Tensor.empty([N, C]);
    reorder(x0.data as Float32Array, C, x.data as Float32Array);
    x0.dispose();
    const pos = visionPositions(grids, m);
    const posR = new Int32Array(2 * N);
    reorder(pos.subarray(0, N) as unknown as Float32Array, 1, posR.subarray(0, N) as unknown as Float32Array);
    reorder(pos.subarray(N) as unknown as Float32Array, 1, posR.subarray(N) as unknown as Float32Array);
    const posT = Tensor.from(posR, [2, N]);
    const sec = Tensor.from(Int32Array.from([D / 4, D / 4]));
    const cuFull: number[] = [0];
    for (const [t, h, w] of grids) for (let i = 0; i < t; i++) cuFull.push(cuFull[cuFull.length - 1]! + h * w);
    const cuF = Tensor.from(Int32Array.from(cuFull)), cuW = Tensor.from(cuWindow);
    const eps = 1e-6, scale = 1 / Math.sqrt(D);
    for (let l = 0; l < vc.depth; l++) {
      const p = `visual.blocks.${l}.`;
      const cu = vc.fullattBlockIndexes.includes(l) ? cuF : cuW;
      const h = yield* call(rmsNormJob(x, this.#w(p + 'norm1.weight'), eps));
      const qkv = yield* call(linearJob(h, this.#w(p + 'attn.qkv.weight'), this.#wOpt(p + 'attn.qkv.bias')));
      h.dispose();
      const q = Tensor.empty([N, H, D]), k = Tensor.empty([N, H, D]), v = Tensor.empty([N, H, D]);
      const qd = qkv.data as Float32Array, qa = q.data as Float32Array, ka = k.data as Float32Array, va = v.data as Float32Array;
      for (let i = 0; i < N; i++) {
        qa.set(qd.subarray(i * 3 * C, i * 3 * C + C), i * C);
        ka.set(qd.subarray(i * 3 * C + C, i * 3 * C + 2 * C), i * C);
        va.set(qd.subarray(i * 3 * C + 2 * C, i * 3 * C + 3 * C), i * C);
      }
      qkv.dispose();
      yield* call(ropeJob(q, posT, this.#visionInvFreq!, sec));
      yield* call(ropeJob(k, posT, this.#visionInvFreq!, sec));
      // Windows and whole frames are segments of the fused attention kernel (src/kernels/attention.ts).
      const opts = { cuSeqlensQ: cu, cuSeqlensK: cu, causal: false, scale };
      const r = yield* call<AttentionResult>({ run: (async: boolean) => (async ? attention(q, k, v, opts) : attentionSync(q, k, v, opts)) });
      r.lse.dispose();
      const a = r.out;
      q.dispose(); k.dispose(); v.dispose();
      const a2 = a.reshape([N, C]);
      a.dispose();
      const o = yield* call(linearJob(a2, this.#w(p + 'attn.proj.weight'), this.#wOpt(p + 'attn.proj.bias')));
      a2.dispose();
      addInto(x, o); o.dispose();
      const h2 = yield* call(rmsNormJob(x, this.#w(p + 'norm2.weight'), eps));
      const g = yield* call(linearJob(h2, this.#w(p + 'mlp.gate_proj.weight'), this.#wOpt(p + 'mlp.gate_proj.bias')));
      const u = yield* call(linearJob(h2, this.#w(p + 'mlp.up_proj.weight'), this.#wOpt(p + 'mlp.up_proj.bias')));
      h2.dispose();
      const s = yield* call(swigluJob(g, u));
      g.dispose(); u.dispose();
      const d = yield* call(linearJob(s, this.#w(p + 'mlp.down_proj.weight'), this.#wOpt(p + 'mlp.down_proj.bias')));
      s.dispose();
      addInto(x, d); d.dispose();
    }
    posT.dispose(); sec.dispose(); cuF.dispose(); cuW.dispose();
    const ln = yield* call(rmsNormJob(x, this.#w('visual.merger.ln_q.weight'), eps));
    x.dispose();
    const ln4 = ln.reshape([N / unit, C * unit]);
    ln.dispose();
    const m1 = yield* call(linearJob(ln4, this.#w('visual.merger.mlp.0.weight'), this.#wOpt('visual.merger.mlp.0.bias')));
    ln4.dispose();
    const ge = yield* call(geluJob(m1));
    m1.dispose();
    const m2 = yield* call(linearJob(ge, this.#w('visual.merger.mlp.2.weight'), this.#wOpt('visual.merger.mlp.2.bias')));
    ge.dispose();
    // Back to the processor's order (the inverse of the window permutation).
    const Co = m2.shape[1]!;
    const out = Tensor.empty([N / unit, Co]);
    const md = m2.data as Float32Array, od = out.data as Float32Array;
    for (let i = 0; i < index.length; i++) od.set(md.subarray(i * Co, (i + 1) * Co), index[i]! * Co);
    m2.dispose();
    x = out;
    return x;
  }

  /** Vision embeddings [N / merge^2, outHidden] of pixel values [N, C*tp*p*p] for the given grids. */
  async visionForward(pixels: Tensor, grids: readonly GridThw[] | Tensor): Promise<Tensor> {
    return runAsync(this.#vision(pixels, toGrids('grids', grids)));
  }
  /** The synchronous form of visionForward(). */
  visionForwardSync(pixels: Tensor, grids: readonly GridThw[] | Tensor): Tensor {
    return runSync(this.#vision(pixels, toGrids('grids', grids)));
  }

  // ---- decoder ----
  *#forward(inp: QwenInputs): Program<QwenOutputs> {
    const o = checkOptions('inputs', inp);
    const cfg = this.config;
    const { data: ids, B, L } = toRows('inputIds', o.inputIds);
    let mask: Int32Array | null = null;
    if (o.attentionMask !== undefined) {
      const mr = toRows('attentionMask', o.attentionMask);
      if (mr.B !== B || mr.L !== L) throw new RangeError(`Expected attentionMask of shape [${B}, ${L}] (as inputIds) but received [${mr.B}, ${mr.L}]`);
      mask = mr.data;
    }
    const V = cfg.vocabSize;
    ids.forEach((id, i) => { if (id < 0 || id >= V) throw new RangeError(`Expected token ids in [0, ${V}) for inputIds but received ${id} at index ${i}`); });
    const cache = o.cache;
    if (cache && cache.batch !== B) throw new RangeError(`Expected inputIds with ${cache.batch} rows (the cache's batch) but received ${B}`);
    if (cache && cache.past + L > cache.maxLen) throw new RangeError(`Expected at most ${cache.maxLen - cache.past} new tokens (the cache's room) but received ${L}`);
    const C = cfg.hiddenSize;
    const idsT = Tensor.from(ids);
    const x = (yield* call(embeddingJob(idsT, this.#w('model.embed_tokens.weight'))));
    idsT.dispose();
    const imageGrids = toGrids('imageGridThw', o.imageGridThw);
    const videoGrids = toGrids('videoGridThw', o.videoGridThw);
    const scatter = (emb: Tensor, token: number, what: string) => {
      const rows = emb.shape[0]!, ed = emb.data as Float32Array, xd = x.data as Float32Array;
      let r = 0;
      for (let i = 0; i < ids.length; i++) {
        if (ids[i] !== token) continue;
        if (r >= rows) { r++; continue; }
        xd.set(ed.subarray(r * C, (r + 1) * C), i * C); r++;
      }
      if (r !== rows) throw new RangeError(`Expected as many ${what} tokens in inputIds as ${what} embeddings (${rows}) but found ${r}`);
    };
    if (o.pixelValues) {
      const e = yield* this.#vision(o.pixelValues, imageGrids);
      scatter(e, cfg.imageTokenId, 'image'); e.dispose();
    }
    if (o.pixelValuesVideos) {
      const e = yield* this.#vision(o.pixelValuesVideos, videoGrids);
      scatter(e, cfg.videoTokenId, 'video'); e.dispose();
    }
    // Positions: the reference's rope index on a fresh sequence; past + t + delta when continuing.
    let positions: Int32Array;
    const past = cache?.past ?? 0;
    if (!cache || cache.past === 0) {
      const r = ropeIndex(cfg, ids, B, L, mask, o.pixelValues ? imageGrids : [], o.pixelValuesVideos ? videoGrids : [], o.secondPerGridTs);
      positions = r.positions;
      if (cache) cache.ropeDeltas = r.deltas;
    } else {
      positions = new Int32Array(3 * B * L);
      for (let s = 0; s < 3; s++) for (let b = 0; b < B; b++) for (let t = 0; t < L; t++) positions[(s * B + b) * L + t] = past + t + cache.ropeDeltas[b]!;
    }
    const c = cache ?? this.createCache(B, L);
    const km = c.keyMask.data as Uint8Array;
    for (let b = 0; b < B; b++) for (let t = 0; t < L; t++) km[b * c.maxLen + past + t] = mask ? (mask[b * L + t] ? 1 : 0) : 1;
    const posT = Tensor.from(positions, [3, B * L]);
    const layers: Record<string, ReturnType<Tensor['_desc']>>[] = [];
    for (let l = 0; l < cfg.numLayers; l++) {
      const e: Record<string, ReturnType<Tensor['_desc']>> = {};
      for (const [k, n] of Object.entries(LAYER_KEYS)) e[k] = this.#w(`model.layers.${l}.${n}`)._desc(`model.layers.${l}.${n}`);
      e.kcache = c.k[l]!._desc('kcache'); e.vcache = c.v[l]!._desc('vcache');
      layers.push(e);
    }
    const dims: DecoderDims = { B, T: L, past, maxLen: c.maxLen, Hq: cfg.numHeads, Hkv: cfg.numKvHeads, D: this.headDim, F: cfg.intermediateSize, eps: cfg.rmsNormEps };
    const inv = this.#invFreq, sec = this.#sections;
    yield* call({ run: (a: boolean) => native.qwenDecoderLayers(x._desc('hidden'), layers, dims, posT._desc('positions'), c.keyMask._desc('keyMask'), inv._desc('invFreq'), sec._desc('sections'), a) });
    posT.dispose();
    if (cache) cache.past += L;
    else c.dispose();
    const hidden = yield* call(rmsNormJob(x, this.#w('model.norm.weight'), cfg.rmsNormEps));
    x.dispose();
    let logits: Tensor | undefined;
    const mode = o.logits ?? 'all';
    if (mode === 'all') {
      const lg = yield* call(linearJob(hidden, this.lmHead));
      logits = lg.reshape([B, L, V]);
      lg.dispose();
    } else if (mode === 'last') {
      const last = Tensor.empty([B, C]);
      const hd = hidden.data as Float32Array;
      for (let b = 0; b < B; b++) (last.data as Float32Array).set(hd.subarray(((b + 1) * L - 1) * C, (b + 1) * L * C), b * C);
      const lg = yield* call(linearJob(last, this.lmHead));
      logits = lg.reshape([B, 1, V]);
      lg.dispose();
      last.dispose();
    }
    const hid = hidden.reshape([B, L, C]);
    hidden.dispose();
    return { logits, hidden: hid, positionIds: positions };
  }

  /**
   * Runs the network (on native worker threads; the event loop stays free). With `cache`, the
   * tokens are appended to it and attend over everything cached.
   */
  async forward(inputs: QwenInputs, signal?: AbortSignal): Promise<QwenOutputs> {
    return runAsync(this.#forward(inputs), signal);
  }
  /** The synchronous form of forward(). */
  forwardSync(inputs: QwenInputs): QwenOutputs {
    return runSync(this.#forward(inputs));
  }

  /**
   * Samples tokens for a prompt (see generate.ts): token ids with pixel tensors, or a question
   * (`prompt` / `messages` with `video` / `images`) when the model has a tokenizer. n samples share
   * one prefill; off the event loop; AbortSignal.
   */
  generate(opts: GenerateOptions): Promise<GeneratedSample[]> {
    return generate(this, opts);
  }
  /** The streaming form of generate(): one event per token as it is produced. */
  generateStream(opts: GenerateOptions): AsyncGenerator<GenerateEvent, void, undefined> {
    return generateStream(this, opts);
  }

  dispose(): void {
    this.#invFreq.dispose(); this.#sections.dispose(); this.#visionInvFreq?.dispose();
  }
}

function addInto(x: Tensor, y: Tensor): void {
  const a = x.data as Float32Array, b = y.data as Float32Array;
  for (let i = 0; i < a.length; i++) a[i]! += b[i]!;
}
