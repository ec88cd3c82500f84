// The Qwen2.5-VL network as a thin handle on the native model (native/model): the parameters are
// resolved once when the handle is created (memory-mapped weights for inference; with `train`, an
// f32 master copy of the trainable ones and their gradients in one flat store), and each call
// sends only its inputs. This file turns the user's inputs into what the native forward reads
// (token ids, M-RoPE positions, the vision tower's window layout, the KV cache) and wraps the
// results; forward, backward and decode run natively, off the event loop.
import { checkBoolean, checkInteger, checkNumber, checkOneOf, checkOptions, typeError } from '../errors.js';
import { native, type StorageHandle, type TensorDesc } from '../native.js';
import { Tensor } from '../tensor.js';
import { KVCache } from './cache.js';
import { canonicalName, parameterShapes, type QwenConfig } from './config.js';
import { ropeIndex, toGrids, visionPositions, windowIndex, type GridThw } from './positions.js';
import { saveAdapter } from './save.js';
import { matmulSync } from '../kernels/matmul.js';

/** Opaque handles of the native model and of a forward's saved activations. */
interface ModelHandle { readonly ptr: unknown }
type StateHandle = { readonly __state: unique symbol };

interface NativeDims {
  C: number; layers: number; Hq: number; Hkv: number; D: number; F: number; V: number; eps: number; ropeTheta: number;
  sections: number[]; tied: boolean; vision: boolean; vC?: number; vdepth?: number; vH?: number; vF?: number; K?: number;
  merge?: number; Co?: number; fullatt?: number[];
}
interface NativeParam { name: string; t: TensorDesc | null; shape?: number[]; trainable: boolean }
interface NativeVision { pixels: TensorDesc; index: Int32Array; cuWindow: Int32Array; cuFull: Int32Array; vpos: Int32Array }
interface NativeInputs {
  B: number; T: number; ids: Int32Array; pos: Int32Array; mask: Uint8Array | null; vision?: NativeVision; vrow?: Int32Array;
  cache?: { k: TensorDesc; v: TensorDesc; keyMask: TensorDesc; past: number }; logits: 0 | 1 | 2; grad: boolean;
}
interface NativeOutputs { hidden: StorageHandle; logits?: StorageHandle; state?: StateHandle }
interface Prepared { args: NativeInputs; positions: Int32Array; owned: Tensor[]; B: number; L: number; mode: 0 | 1 | 2 }

declare module '../native.js' {
  interface Binding {
    modelCreate(dims: NativeDims, params: NativeParam[], lora: { rank: number; alpha: number; modules: string[] } | null,
      recompute: string, train: boolean, async: boolean): ModelHandle | Promise<ModelHandle>;
    modelDispose(h: ModelHandle): void;
    modelParams(h: ModelHandle): { master?: StorageHandle; grads?: StorageHandle; flatNumel: number; trainableNumel: number;
      params: { name: string; shape: number[]; trainable: boolean; offset: number }[] };
    modelZeroGrad(h: ModelHandle, async: boolean): undefined | Promise<undefined>;
    modelForward(h: ModelHandle, inputs: NativeInputs, async: boolean): NativeOutputs | Promise<NativeOutputs>;
    modelBackward(h: ModelHandle, state: StateHandle, dLogits: TensorDesc | null, dHidden: TensorDesc | null, async: boolean): undefined | Promise<undefined>;
    modelVision(h: ModelHandle, inputs: NativeVision, async: boolean): StorageHandle | Promise<StorageHandle>;
    modelStateRelease(state: StateHandle): void;
    modelStateUsable(state: StateHandle): boolean;
  }
}

/** Rank-r adapters beside the named linear layers (PEFT's LoRA; only the adapters train). */
export interface LoraOptions {
  rank: number;
  /** Scale alpha / rank (default 8, PEFT's default lora_alpha). */
  alpha?: number;
  /** Only 0 is supported. */
  dropout?: number;
  /** Module name suffixes (default: every attention and MLP projection of both towers). */
  targets?: readonly string[];
  /** Seed of the adapters' A initialisation (default 0). */
  seed?: number;
}
export interface TrainOptions {
  /** 'none' keeps every layer's activations; 'layer' keeps each layer's input and recomputes the rest in backward. */
  recompute?: 'none' | 'layer';
  /** Parameter name prefixes that do not train (no gradient buffer, no work), e.g. ['visual.']. */
  freeze?: readonly string[];
  lora?: LoraOptions;
}
export interface NetworkOptions {
  /** true or TrainOptions: an f32 master copy of the trainable parameters and their gradients. */
  train?: boolean | TrainOptions;
}
export const DEFAULT_LORA_TARGETS = ['q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj', 'qkv', 'proj'] as const;

/** Inputs of forward(), as the reference processor produces them. */
export interface QwenInputs {
  /** Token ids [B, L] (i32 or i64 Tensor) or one sequence as an Int32Array / number[]. */
  inputIds: Tensor | Int32Array | readonly number[];
  /** 1 for real tokens, 0 for padding, [B, L]; each row's real tokens one run (padding before or after). */
  attentionMask?: Tensor | Int32Array | readonly number[];
  pixelValues?: Tensor;
  imageGridThw?: readonly GridThw[] | Tensor;
  pixelValuesVideos?: Tensor;
  videoGridThw?: readonly GridThw[] | Tensor;
  /** Seconds per temporal grid step of each video (default 1). */
  secondPerGridTs?: readonly number[] | Tensor;
  /**
   * Media shared by several rows (the completions of one prompt): pixelValues / imageGridThw (and
   * the video fields) then hold each distinct image (video) once, and imageRefs[k] (videoRefs[k])
   * is the index of the distinct one that the k-th image (video) in inputIds shows, in order
   * through the rows. The vision tower runs once per distinct item; with grad, each item's
   * gradient is the sum over its uses. secondPerGridTs stays per distinct video.
   */
  imageRefs?: readonly number[] | Int32Array;
  videoRefs?: readonly number[] | Int32Array;
  /** Append to (and attend over) this cache; positions continue from it. */
  cache?: KVCache;
  /** Logits for every position (default) or only each row's last. */
  logits?: 'all' | 'last' | 'none';
  /** Keep what backward() needs (a model created with `train`). */
  grad?: boolean;
}

/** The result of forward(): tensors the caller owns, and (with grad) the saved activations. */
export class QwenOutputs {
  /** [B, L, V] (or [B, 1, V] with logits: 'last'). */
  readonly logits?: Tensor;
  /** The final normed hidden states [B, L, C]. */
  readonly hidden: Tensor;
  /** M-RoPE position ids [3, B, L]. */
  readonly positionIds: Int32Array;
  /** @internal */
  _state: StateHandle | null;
  /** @internal */
  constructor(hidden: Tensor, logits: Tensor | undefined, positionIds: Int32Array, state: StateHandle | null) {
    this.hidden = hidden;
    if (logits) this.logits = logits;
    this.positionIds = positionIds;
    this._state = state;
  }
  /** Frees the tensors and the saved activations (idempotent). */
  dispose(): void {
    this.hidden.dispose();
    this.logits?.dispose();
    if (this._state) native.modelStateRelease(this._state);
    this._state = null;
  }
  [Symbol.dispose](): void { this.dispose(); }
}

export interface BackwardOptions {
  /** dLoss/dlogits, shaped as the forward's logits. */
  dLogits?: Tensor;
  /** dLoss/dhidden [B, L, C] (e.g. from linearCdpo / linearLogprobsBackward on `hidden`). */
  dHidden?: Tensor;
}

function toRows(name: string, v: Tensor | Int32Array | readonly number[], max: number, what: string): { data: Int32Array; B: number; L: number } {
  const check = (x: number, i: number) => {
    if (!Number.isInteger(x) || x < 0 || x > max) throw new RangeError(`Expected ${what} for ${name} but received ${x} at index ${i}`);
  };
  if (v instanceof Tensor) {
    if (v.dtype !== 'i32' && v.dtype !== 'i64') throw new TypeError(`Expected dtype i32 or i64 for ${name} but received ${v.dtype}`);
    if (v.ndim !== 2 && v.ndim !== 1) throw new RangeError(`Expected 2 dimensions [B, L] for ${name} but received shape [${v.shape.join(', ')}]`);
    const raw = v.toArray() as Int32Array | BigInt64Array;
    const data = new Int32Array(raw.length);
    for (let i = 0; i < raw.length; i++) {
      const x = typeof raw[i] === 'bigint' ? (raw[i]! as bigint) : BigInt(raw[i] as number);
      if (x < 0n || x > BigInt(max)) throw new RangeError(`Expected ${what} for ${name} but received ${x} at index ${i}`);
      data[i] = Number(x);
    }
    return { data, B: v.ndim === 2 ? v.shape[0]! : 1, L: v.shape[v.ndim - 1]! };
  }
  if (v instanceof Int32Array) {
    v.forEach(check);
    return { data: Int32Array.from(v), B: 1, L: v.length };
  }
  if (Array.isArray(v)) {
    (v as unknown[]).forEach((x, i) => { if (typeof x !== 'number') throw typeError(`${name}[${i}]`, 'a number', x); check(x, i); });
    return { data: Int32Array.from(v as number[]), B: 1, L: v.length };
  }
  throw typeError(name, 'a Tensor [B, L], an Int32Array or an array of numbers', v);
}

function seconds(v: readonly number[] | Tensor | undefined): number[] | undefined {
  if (v === undefined) return undefined;
  // f16/bf16 tensors read as their values, not their raw bits
  const f = v instanceof Tensor && (v.dtype === 'f16' || v.dtype === 'bf16') ? v.to('f32') : v;
  const arr = f instanceof Tensor ? Array.from(f.toArray() as ArrayLike<number | bigint>, Number) : f;
  if (f !== v) (f as Tensor).dispose();
  if (!Array.isArray(arr) && !(v instanceof Tensor)) throw typeError('secondPerGridTs', 'an array of numbers or a Tensor', v);
  return (arr as number[]).map((x, i) => checkNumber(`secondPerGridTs[${i}]`, x, 0, 1e6));
}

/**
 * The refs of shared media: null without them; each an integer index of a distinct item (one of
 * `n`), copied at the call. `present`: whether the pixels they refer to were given.
 */
function refsOf(name: string, v: readonly number[] | Int32Array | undefined, n: number, present: boolean): Int32Array | null {
  if (v === undefined) return null;
  if (!present) throw new TypeError(`Expected ${name} only with the pixels it refers to (${name === 'imageRefs' ? 'pixelValues' : 'pixelValuesVideos'})`);
  if (!(v instanceof Int32Array) && !Array.isArray(v)) throw typeError(name, 'an Int32Array or an array of integers', v);
  const out = Int32Array.from(v as ArrayLike<number>);
  for (let k = 0; k < v.length; k++) {
    const x = (v as ArrayLike<number>)[k]!;
    if (!Number.isInteger(x) || x < 0 || x >= n) throw new RangeError(`Expected integers in [0, ${n - 1}] (the distinct items given) for ${name}[${k}] but received ${x}`);
  }
  return out;
}

/** f32, contiguous, CPU (a copy when it is not). */
function f32c(name: string, t: Tensor): { t: Tensor; own: boolean } {
  if (!(t instanceof Tensor)) throw typeError(name, 'a Tensor', t);
  if (t.device !== 'cpu') throw new TypeError(`Expected a CPU tensor for ${name} but received one on ${t.device}`);
  if (t.dtype === 'f32' && t.isContiguous) return { t, own: false };
  if (t.dtype === 'f32') return { t: t.contiguous(), own: true };
  return { t: t.to('f32'), own: true };
}

export class QwenNetwork {
  readonly config: QwenConfig;
  /** The weights as given (Hugging Face names, stored dtype). */
  readonly weights: Map<string, Tensor>;
  readonly headDim: number;
  /** Whether the model keeps gradients (created with `train`). */
  readonly training: boolean;
  readonly trainOptions: Required<Omit<TrainOptions, 'lora'>> & { lora?: Required<LoraOptions> };
  #handle: ModelHandle | null;
  #params = new Map<string, Tensor>();
  #grads = new Map<string, Tensor>();
  #flat: { master?: Tensor; grads?: Tensor } = {};

  /**
   * Builds the native model over `weights` (Hugging Face names; f32, bf16 or f16 CPU tensors).
   * Synchronous: with `train` the master copy is made now; `QwenNetwork.create` does it off the
   * event loop.
   */
  constructor(config: QwenConfig, weights: Map<string, Tensor>, opts: NetworkOptions = {}, _handle?: ModelHandle) {
    this.config = config;
    this.weights = new Map([...weights].map(([k, v]) => [canonicalName(k), v]));
    this.headDim = config.hiddenSize / config.numHeads;
    const prep = prepare(config, this.weights, opts);
    this.training = prep.train;
    this.trainOptions = prep.options;
    this.#handle = _handle ?? (native.modelCreate(prep.dims, prep.params, prep.lora, prep.options.recompute, prep.train, false) as ModelHandle);
    const info = native.modelParams(this.#handle);
    if (info.master && info.grads) {
      const master = Tensor._wrap(info.master, 'f32', [info.flatNumel]);
      const grads = Tensor._wrap(info.grads, 'f32', [info.flatNumel]);
      this.#flat = { master, grads };
      for (const p of info.params) {
        if (!p.trainable) continue;
        this.#params.set(p.name, master._viewBytes('f32', p.shape, p.offset * 4));
        this.#grads.set(p.name, grads._viewBytes('f32', p.shape, p.offset * 4));
      }
    }
    if (prep.options.lora) initLora(this.#params, prep.options.lora);
  }

  /** Builds the native model off the event loop (the master copy of a large model takes a while). */
  static async create<T extends QwenNetwork>(this: new (c: QwenConfig, w: Map<string, Tensor>, o?: NetworkOptions, h?: ModelHandle) => T,
    config: QwenConfig, weights: Map<string, Tensor>, opts: NetworkOptions = {}): Promise<T> {
    const canon = new Map([...weights].map(([k, v]) => [canonicalName(k), v]));
    const prep = prepare(config, canon, opts);
    const h = await native.modelCreate(prep.dims, prep.params, prep.lora, prep.options.recompute, prep.train, true);
    return new this(config, weights, opts, h);
  }

  #h(): ModelHandle {
    if (!this.#handle) throw new TypeError('Expected a live model but it has been disposed');
    return this.#handle;
  }

  /**
   * The trainable parameters (f32 views on the master copy), by Hugging Face / PEFT name; empty
   * without `train`. The tensors are the model's own: do not dispose them (model.dispose() does).
   */
  parameters(): Map<string, Tensor> { return new Map(this.#params); }
  /** Their gradients (f32, same names and shapes); backward adds into them. */
  get grads(): Map<string, Tensor> { return new Map(this.#grads); }
  /** The whole flat master copy and gradient buffer (every trainable parameter, 64-byte aligned, padding zero). */
  get flat(): { master?: Tensor; grads?: Tensor } { return { ...this.#flat }; }
  /** The LM head's weight as the network reads it (the embedding table when tied). */
  get lmHead(): Tensor {
    const name = this.config.tieWordEmbeddings ? 'model.embed_tokens.weight' : 'lm_head.weight';
    return this.#params.get(name) ?? this.weights.get(name) ?? this.weights.get('model.embed_tokens.weight')!;
  }
  /** The LM head's gradient (the embedding's when tied), or undefined when it does not train. */
  get lmHeadGrad(): Tensor | undefined {
    return this.#grads.get(this.config.tieWordEmbeddings ? 'model.embed_tokens.weight' : 'lm_head.weight');
  }
  /** Sets every gradient to zero. */
  zeroGrad(): void { native.modelZeroGrad(this.#h(), false); }

  /** A KV cache for `batch` rows of up to `maxLen` tokens. */
  createCache(batch: number, maxLen: number): KVCache {
    checkInteger('batch', batch, 1, 1 << 16);
    checkInteger('maxLen', maxLen, 1, 1 << 24);
    return new KVCache(batch, maxLen, this.config.numLayers, this.config.numKvHeads, this.headDim);
  }

  /** The vision tower's inputs for pixels of the given grids (pixels converted to f32 when needed). */
  #visionInputs(pixels: Tensor, grids: readonly GridThw[], name: string): { v: NativeVision; owned: Tensor[] } {
    const vc = this.config.vision;
    if (!vc) throw new TypeError(`Expected a checkpoint with a vision tower (vision_config) for ${name}`);
    const m = vc.spatialMergeSize;
    const K = vc.inChannels * vc.temporalPatchSize * vc.patchSize * vc.patchSize;
    grids.forEach(([, h, w], i) => { if (h % m || w % m) throw new RangeError(`Expected grid h and w divisible by ${m} for grid ${i} but received [${grids[i]!.join(', ')}]`); });
    const N = grids.reduce((a, [t, h, w]) => a + t * h * w, 0);
    if (pixels.ndim !== 2 || pixels.shape[0] !== N || pixels.shape[1] !== K) {
      throw new RangeError(`Expected pixel values of shape [${N}, ${K}] (the grids' patches) but received [${pixels.shape.join(', ')}]`);
    }
    const { t: px, own } = f32c(name, pixels);
    const { index, cuWindow } = windowIndex(grids, vc.windowSize, m, vc.patchSize);
    const unit = m * m;
    const pos = visionPositions(grids, m);
    const vpos = new Int32Array(2 * N);
    for (let i = 0; i < index.length; i++) {
      const src = index[i]! * unit;
      for (let u = 0; u < unit; u++) { vpos[i * unit + u] = pos[src + u]!; vpos[N + i * unit + u] = pos[N + src + u]!; }
    }
    const cu: number[] = [0];
    for (const [t, h, w] of grids) for (let i = 0; i < t; i++) cu.push(cu[cu.length - 1]! + h * w);
    return { v: { pixels: px._desc(name), index, cuWindow, cuFull: Int32Array.from(cu), vpos }, owned: own ? [px] : [] };
  }

  /** Vision embeddings [N / merge^2, outHidden] of pixel values [N, C*tp*p*p] for the given grids. */
  async visionForward(pixels: Tensor, grids: readonly GridThw[] | Tensor): Promise<Tensor> {
    const g = toGrids('grids', grids);
    const { v, owned } = this.#visionInputs(pixels, g, 'pixels');
    try {
      const h = await native.modelVision(this.#h(), v, true);
      return Tensor._wrap(h, 'f32', [v.index.length, this.config.hiddenSize]);
    } finally { owned.forEach((t) => t.dispose()); }
  }
  /** The synchronous form of visionForward(). */
  visionForwardSync(pixels: Tensor, grids: readonly GridThw[] | Tensor): Tensor {
    const g = toGrids('grids', grids);
    const { v, owned } = this.#visionInputs(pixels, g, 'pixels');
    try {
      const h = native.modelVision(this.#h(), v, false) as StorageHandle;
      return Tensor._wrap(h, 'f32', [v.index.length, this.config.hiddenSize]);
    } finally { owned.forEach((t) => t.dispose()); }
  }

  /** Everything the native forward reads, checked. */
  #prepareForward(inp: QwenInputs): Prepared {
    const o = checkOptions('inputs', inp);
    const cfg = this.config;
    const { data: ids, B, L } = toRows('inputIds', o.inputIds, cfg.vocabSize - 1, `token ids in [0, ${cfg.vocabSize})`);
    if (B * L === 0) throw new RangeError('Expected at least one token for inputIds but received none');
    let mask: Int32Array | null = null;
    if (o.attentionMask !== undefined) {
      const mr = toRows('attentionMask', o.attentionMask, 1, '0 or 1');
      if (mr.B !== B || mr.L !== L) throw new RangeError(`Expected attentionMask of shape [${B}, ${L}] (as inputIds) but received [${mr.B}, ${mr.L}]`);
      mask = mr.data;
    }
    const grad = o.grad === undefined ? false : checkBoolean('grad', o.grad);
    if (grad && !this.training) throw new TypeError('Expected a model loaded with { train } for grad: true (this one is for inference)');
    const cache = o.cache;
    if (cache !== undefined && !(cache instanceof KVCache)) throw typeError('cache', 'a KVCache (model.createCache)', cache);
    if (cache && grad) throw new TypeError('Expected no cache with grad: true (training runs whole sequences)');
    if (cache && cache.batch !== B) throw new RangeError(`Expected inputIds with ${cache.batch} rows (the cache's batch) but received ${B}`);
    if (cache && cache.past + L > cache.maxLen) throw new RangeError(`Expected at most ${cache.maxLen - cache.past} new tokens (the cache's room) but received ${L}`);
    if (cache && (cache.layers !== cfg.numLayers || cache.kvHeads !== cfg.numKvHeads || cache.headDim !== this.headDim)) {
      throw new RangeError('Expected a cache made by this model (model.createCache)');
    }
    const mode = o.logits === undefined ? 2 : ({ none: 0, last: 1, all: 2 } as const)[checkOneOf('logits', o.logits, ['all', 'last', 'none'])];
    const imageGrids = o.pixelValues ? toGrids('imageGridThw', o.imageGridThw) : [];
    const videoGrids = o.pixelValuesVideos ? toGrids('videoGridThw', o.videoGridThw) : [];
    const imageRefs = refsOf('imageRefs', o.imageRefs, imageGrids.length, o.pixelValues !== undefined);
    const videoRefs = refsOf('videoRefs', o.videoRefs, videoGrids.length, o.pixelValuesVideos !== undefined);
    // Per use, in the order of the placeholders: what the positions and the embedding rows follow.
    const imageUses = imageRefs ? Array.from(imageRefs, (k) => imageGrids[k]!) : imageGrids;
    const videoUses = videoRefs ? Array.from(videoRefs, (k) => videoGrids[k]!) : videoGrids;
    const owned: Tensor[] = [];
    const args: NativeInputs = { B, T: L, ids, pos: new Int32Array(0), mask: null, logits: mode, grad };
    try {
      // Vision: images then videos through one tower pass (patches of different items never meet).
      if (o.pixelValues || o.pixelValuesVideos) {
        const parts: Tensor[] = [];
        if (o.pixelValues) {
          if (!(o.pixelValues instanceof Tensor)) throw typeError('pixelValues', 'a Tensor', o.pixelValues);
          parts.push(o.pixelValues);
        }
        if (o.pixelValuesVideos) {
          if (!(o.pixelValuesVideos instanceof Tensor)) throw typeError('pixelValuesVideos', 'a Tensor', o.pixelValuesVideos);
          parts.push(o.pixelValuesVideos);
        }
        const grids = [...imageGrids, ...videoGrids];
        const unit = (cfg.vision?.spatialMergeSize ?? 2) ** 2;
        const count = (gs: GridThw[]) => gs.reduce((a, [t, h, w]) => a + t * h * w, 0);
        // Each part checked against its own grids first, for a message that names it.
        if (o.pixelValues) this.#checkPixels(o.pixelValues, imageGrids);
        if (o.pixelValuesVideos) this.#checkPixels(o.pixelValuesVideos, videoGrids);
        let px: Tensor;
        if (parts.length === 1) px = parts[0]!;
        else {
          const K = parts[0]!.shape[1]!;
          px = Tensor.empty([count(grids), K]);
          owned.push(px);
          let off = 0;
          for (const p of parts) {
            const { t, own } = f32c('pixelValues', p);
            (px.data as Float32Array).set(t.data as Float32Array, off);
            off += t.numel;
            if (own) t.dispose();
          }
        }
        const vi = this.#visionInputs(px, grids, o.pixelValues && parts.length === 1 ? 'pixelValues' : 'pixelValuesVideos');
        owned.push(...vi.owned);
        args.vision = vi.v;
        // Placeholder tokens take the embeddings in order, images first, then videos: use k of an
        // item takes the rows of the distinct item it refers to (itself without refs).
        const mi = count(imageGrids) / unit;
        const rowsOf = (grids: GridThw[], uses: readonly GridThw[], refs: Int32Array | null, base: number) => {
          const starts: number[] = [];
          let at = base;
          for (const [t, h, w] of grids) { starts.push(at); at += (t * h * w) / unit; }
          const out: number[] = [];
          uses.forEach(([t, h, w], k) => { const s0 = starts[refs ? refs[k]! : k]!; for (let j = 0; j < (t * h * w) / unit; j++) out.push(s0 + j); });
          return out;
        };
        const imgRows = o.pixelValues ? rowsOf(imageGrids, imageUses, imageRefs, 0) : [];
        const vidRows = o.pixelValuesVideos ? rowsOf(videoGrids, videoUses, videoRefs, mi) : [];
        const vrow = new Int32Array(B * L).fill(-1);
        let ri = 0, rv = 0;
        for (let i = 0; i < ids.length; i++) {
          if (o.pixelValues && ids[i] === cfg.imageTokenId) { if (ri < imgRows.length) vrow[i] = imgRows[ri]!; ri++; }
          else if (o.pixelValuesVideos && ids[i] === cfg.videoTokenId) { if (rv < vidRows.length) vrow[i] = vidRows[rv]!; rv++; }
        }
        const uses = (r: Int32Array | null) => (r ? ` (${r.length} uses through ${r === imageRefs ? 'imageRefs' : 'videoRefs'})` : '');
        if (o.pixelValues && ri !== imgRows.length) throw new RangeError(`Expected as many image tokens in inputIds as image embeddings${uses(imageRefs)} (${imgRows.length}) but found ${ri}`);
        if (o.pixelValuesVideos && rv !== vidRows.length) throw new RangeError(`Expected as many video tokens in inputIds as video embeddings${uses(videoRefs)} (${vidRows.length}) but found ${rv}`);
        args.vrow = vrow;
      }
      // Positions: the reference's rope index on a fresh sequence; past + t + delta when continuing.
      let positions: Int32Array;
      const past = cache?.past ?? 0;
      if (!cache || cache.past === 0) {
        const spg = seconds(o.secondPerGridTs);
        const r = ropeIndex(cfg, ids, B, L, mask, imageUses, videoUses, spg && videoRefs ? Array.from(videoRefs, (k) => spg[k] ?? 1) : spg);
        positions = r.positions;
        if (cache) cache.ropeDeltas = r.deltas;
      } else {
        positions = new Int32Array(3 * B * L);
        for (let s = 0; s < 3; s++) for (let b = 0; b < B; b++) for (let t = 0; t < L; t++) positions[(s * B + b) * L + t] = past + t + cache.ropeDeltas[b]!;
      }
      args.pos = positions;
      if (mask) args.mask = Uint8Array.from(mask);
      if (cache) {
        const km = cache.keyMask.data as Uint8Array;
        for (let b = 0; b < B; b++) for (let t = 0; t < L; t++) km[b * cache.maxLen + past + t] = mask ? (mask[b * L + t] ? 1 : 0) : 1;
        args.cache = { k: cache.k._desc('cache.k'), v: cache.v._desc('cache.v'), keyMask: cache.keyMask._desc('cache.keyMask'), past };
      }
      return { args, positions, owned, B, L, mode };
    } catch (e) {
      owned.forEach((t) => t.dispose());
      throw e;
    }
  }

  #checkPixels(p: Tensor, grids: GridThw[]): void {
    const vc = this.config.vision;
    if (!vc) throw new TypeError('Expected a checkpoint with a vision tower (vision_config) for pixel inputs');
    const K = vc.inChannels * vc.temporalPatchSize * vc.patchSize * vc.patchSize;
    const N = grids.reduce((a, [t, h, w]) => a + t * h * w, 0);
    if (p.ndim !== 2 || p.shape[0] !== N || p.shape[1] !== K) throw new RangeError(`Expected pixel values of shape [${N}, ${K}] (the grids' patches) but received [${p.shape.join(', ')}]`);
  }

  #finish(r: NativeOutputs, f: Prepared, cache: KVCache | undefined): QwenOutputs {
    const cfg = this.config;
    if (cache) cache.past += f.L;
    const hidden = Tensor._wrap(r.hidden, 'f32', [f.B, f.L, cfg.hiddenSize]);
    const logits = r.logits ? Tensor._wrap(r.logits, 'f32', [f.B, f.mode === 2 ? f.L : 1, cfg.vocabSize]) : undefined;
    return new QwenOutputs(hidden, logits, f.positions, r.state ?? null);
  }

  /**
   * Runs the network (on native worker threads; the event loop stays free). With `cache`, the
   * tokens are appended to it and attend over everything cached. With `grad: true` (a model
   * created with `train`), the result keeps what backward() needs.
   */
  async forward(inputs: QwenInputs, signal?: AbortSignal): Promise<QwenOutputs> {
    if (signal !== undefined && !(signal instanceof AbortSignal)) throw typeError('signal', 'an AbortSignal', signal);
    signal?.throwIfAborted();
    const f = this.#prepareForward(inputs);
    try {
      const r = await native.modelForward(this.#h(), f.args, true);
      return this.#finish(r, f, inputs.cache);
    } finally { f.owned.forEach((t) => t.dispose()); }
  }
  /** The synchronous form of forward(). */
  forwardSync(inputs: QwenInputs): QwenOutputs {
    const f = this.#prepareForward(inputs);
    try {
      return this.#finish(native.modelForward(this.#h(), f.args, false) as NativeOutputs, f, inputs.cache);
    } finally { f.owned.forEach((t) => t.dispose()); }
  }

  #prepareBackward(fwd: QwenOutputs, o: BackwardOptions): { state: StateHandle; dl: TensorDesc | null; dh: TensorDesc | null } {
    if (!(fwd instanceof QwenOutputs)) throw typeError('forward', 'the result of model.forward({ ..., grad: true })', fwd);
    checkOptions('options', o);
    if (!fwd._state) {
      throw new TypeError('Expected the result of a forward with grad: true that is not disposed and not yet used by backward (backward runs once per forward)');
    }
    if (!native.modelStateUsable(fwd._state)) throw new TypeError('Expected a forward result not yet used by backward (backward runs once per forward)');
    if (o.dLogits === undefined && o.dHidden === undefined) throw new TypeError('Expected dLogits or dHidden for backward');
    const desc = (name: string, t: Tensor | undefined, want: readonly number[] | undefined) => {
      if (t === undefined) return null;
      if (!(t instanceof Tensor)) throw typeError(name, 'a Tensor', t);
      if (!want) throw new TypeError(`Expected dHidden: the forward computed no logits (logits: 'none')`);
      if (t.dtype !== 'f32') throw new TypeError(`Expected dtype f32 for ${name} but received ${t.dtype}`);
      if (t.shape.length !== want.length || t.shape.some((d, i) => d !== want[i])) {
        throw new RangeError(`Expected ${name} of shape [${want.join(', ')}] but received [${t.shape.join(', ')}]`);
      }
      if (!t.isContiguous || t.device !== 'cpu') throw new TypeError(`Expected a contiguous CPU tensor for ${name}`);
      return t._desc(name);
    };
    return { state: fwd._state, dl: desc('dLogits', o.dLogits, fwd.logits?.shape), dh: desc('dHidden', o.dHidden, fwd.hidden.shape) };
  }

  /**
   * Adds the gradients of a loss to model.grads: `dLogits` (shaped as the forward's logits) or
   * `dHidden` (shaped as its hidden states), or both (summed). Once per forward. Gradients given
   * at padding positions are dropped.
   */
  async backward(fwd: QwenOutputs, opts: BackwardOptions): Promise<void> {
    const p = this.#prepareBackward(fwd, opts);
    const job = native.modelBackward(this.#h(), p.state, p.dl, p.dh, true);
    fwd._state = null;
    await job;
  }
  /** The synchronous form of backward(). */
  backwardSync(fwd: QwenOutputs, opts: BackwardOptions): void {
    const p = this.#prepareBackward(fwd, opts);
    fwd._state = null;
    native.modelBackward(this.#h(), p.state, p.dl, p.dh, false);
  }

  /** Writes the LoRA adapters as a PEFT adapter folder (adapter_config.json + adapter_model.safetensors). */
  saveAdapter(dir: string, baseModel = ''): void {
    this.#h();
    saveAdapter(this, dir, baseModel);
  }

  /**
   * Folds every LoRA adapter into its base weight, W += (alpha / r) B A, rounded to W's dtype, and
   * sets B to zero (the adapters then add nothing). The weights change in memory only (a mapped
   * checkpoint is copy-on-write: its file is never written); model.save() then writes merged
   * weights.
   */
  mergeAdapter(): void {
    this.#h();
    const lora = this.trainOptions.lora;
    if (!lora) throw new TypeError('Expected a model with LoRA adapters to merge');
    const scale = lora.alpha / lora.rank;
    for (const [name, A] of this.#params) {
      if (!name.endsWith('.lora_A.weight')) continue;
      const mod = name.slice(0, -'.lora_A.weight'.length);
      const B = this.#params.get(`${mod}.lora_B.weight`)!;
      const W = this.weights.get(`${mod}.weight`)!;
      const delta = matmulSync(B, A);
      const d = delta.data as Float32Array;
      if (W.dtype === 'f32') {
        const w = W.data as Float32Array;
        for (let i = 0; i < d.length; i++) w[i]! += scale * d[i]!;
      } else {
        const wide = W.to('f32');
        const w = wide.data as Float32Array;
        for (let i = 0; i < d.length; i++) w[i]! += scale * d[i]!;
        const narrow = wide.to(W.dtype);
        (W.data as Uint16Array).set(narrow.data as Uint16Array);
        narrow.dispose(); wide.dispose();
      }
      delta.dispose();
      (B.data as Float32Array).fill(0);
    }
  }

  /** Frees the native model (weights stay with their owner; parameter and gradient views are released). */
  dispose(): void {
    if (!this.#handle) return;
    native.modelDispose(this.#handle);
    this.#handle = null;
    for (const t of [...this.#params.values(), ...this.#grads.values()]) t.dispose();
    this.#flat.master?.dispose();
    this.#flat.grads?.dispose();
    this.#params.clear();
    this.#grads.clear();
  }
  [Symbol.dispose](): void { this.dispose(); }
}

/** The native model's sizes and parameter list, with the train options checked. */
function prepare(cfg: QwenConfig, weights: Map<string, Tensor>, opts: NetworkOptions) {
  checkOptions('options', opts);
  const tr = opts.train;
  if (tr !== undefined && typeof tr !== 'boolean' && (typeof tr !== 'object' || tr === null || Array.isArray(tr))) throw typeError('train', 'a boolean or an options object', tr);
  const train = tr !== undefined && tr !== false;
  const to: TrainOptions = typeof tr === 'object' ? tr : {};
  const recompute = to.recompute === undefined ? 'none' : checkOneOf('train.recompute', to.recompute, ['none', 'layer']);
  const freeze = to.freeze ?? [];
  if (!Array.isArray(freeze) || freeze.some((f) => typeof f !== 'string')) throw typeError('train.freeze', 'an array of name prefixes', freeze);
  let lora: Required<LoraOptions> | undefined;
  if (to.lora !== undefined) {
    const l = checkOptions('train.lora', to.lora);
    const rank = checkInteger('train.lora.rank', l.rank, 1, 4096);
    const alpha = checkNumber('train.lora.alpha', l.alpha ?? 8, 0, 1e6, { exclusiveMin: true });
    if ((l.dropout ?? 0) !== 0) throw new RangeError(`Expected 0 for train.lora.dropout (LoRA dropout is not supported) but received ${String(l.dropout)}`);
    const targets = l.targets ?? DEFAULT_LORA_TARGETS;
    if (!Array.isArray(targets) || targets.length === 0 || targets.some((t) => typeof t !== 'string' || t === '')) throw typeError('train.lora.targets', 'a non-empty array of module names', targets);
    lora = { rank, alpha, dropout: 0, targets: [...targets], seed: checkInteger('train.lora.seed', l.seed ?? 0, 0, 2 ** 32 - 1) };
  }
  const { shapes, linears } = parameterShapes(cfg);
  const frozen = (name: string) => !train || lora !== undefined || freeze.some((p) => name.startsWith(p));
  const params: NativeParam[] = [];
  for (const [name, shape] of shapes) {
    const t = weights.get(name);
    if (!t) throw new RangeError(`Expected weight ${name} of shape [${shape.join(', ')}] in the checkpoint but it is missing`);
    if (!(t instanceof Tensor)) throw typeError(name, 'a Tensor', t);
    if (t.dtype !== 'f32' && t.dtype !== 'bf16' && t.dtype !== 'f16') throw new TypeError(`Expected dtype f32, bf16 or f16 for ${name} but received ${t.dtype}`);
    const numel = shape.reduce((a, b) => a * b, 1);
    const same = t.shape.length === shape.length && t.shape.every((d, i) => d === shape[i]);
    // The patch embedding may come as a flattened [C, K] matrix as well as the Conv3d's 5-D weight.
    if (!same && !(name === 'visual.patch_embed.proj.weight' && t.numel === numel)) {
      throw new RangeError(`Expected weight ${name} of shape [${shape.join(', ')}] but received [${t.shape.join(', ')}]`);
    }
    if (!t.isContiguous || t.device !== 'cpu') throw new TypeError(`Expected a contiguous CPU tensor for weight ${name}`);
    params.push({ name, t: t._desc(name), trainable: !frozen(name) });
  }
  const modules: string[] = [];
  if (lora) {
    for (const m of linears) {
      if (!lora.targets.some((t) => m.name === t || m.name.endsWith('.' + t))) continue;
      if (freeze.some((p) => m.name.startsWith(p))) continue;
      modules.push(m.name);
      params.push({ name: `${m.name}.lora_A.weight`, t: null, shape: [lora.rank, m.in], trainable: true });
      params.push({ name: `${m.name}.lora_B.weight`, t: null, shape: [m.out, lora.rank], trainable: true });
    }
    if (modules.length === 0) throw new RangeError(`Expected train.lora.targets to match some linear layers but none of [${lora.targets.join(', ')}] does`);
  }
  const v = cfg.vision;
  const dims: NativeDims = {
    C: cfg.hiddenSize, layers: cfg.numLayers, Hq: cfg.numHeads, Hkv: cfg.numKvHeads, D: cfg.hiddenSize / cfg.numHeads,
    F: cfg.intermediateSize, V: cfg.vocabSize, eps: cfg.rmsNormEps, ropeTheta: cfg.ropeTheta, sections: [...cfg.mropeSection],
    tied: cfg.tieWordEmbeddings, vision: v !== undefined,
  };
  if (v) {
    Object.assign(dims, {
      vC: v.hiddenSize, vdepth: v.depth, vH: v.numHeads, vF: v.intermediateSize,
      K: v.inChannels * v.temporalPatchSize * v.patchSize * v.patchSize, merge: v.spatialMergeSize, Co: v.outHiddenSize, fullatt: [...v.fullattBlockIndexes],
    });
  }
  const options = { recompute, freeze: [...freeze], ...(lora ? { lora } : {}) } as QwenNetwork['trainOptions'];
  return { dims, params, lora: lora ? { rank: lora.rank, alpha: lora.alpha, modules } : null, train, options };
}

/** PEFT's default adapter start: A ~ U(-1/sqrt(in), 1/sqrt(in)) (kaiming_uniform with a = sqrt 5), B = 0. */
function initLora(params: Map<string, Tensor>, lora: Required<LoraOptions>): void {
  let k = 0;
  for (const [name, t] of params) {
    if (!name.endsWith('.lora_A.weight')) continue;
    const bound = 1 / Math.sqrt(t.shape[1]!);
    const r = Tensor.rand(t.shape, { seed: (lora.seed + k++ * 0x9e3779b1) >>> 0, low: -bound, high: bound });
    (t.data as Float32Array).set(r.data as Float32Array);
    r.dispose();
  }
}
