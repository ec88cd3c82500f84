// Training examples from question rows (the Video-R1 / VideoThinker JSON format): the chat prompt
// (question, options and the training suffix, the row's video or image) tokenized and processed
// once, cached in memory, and batched. Synthetic videos of one size are decoded many to one
// ffmpeg call (starting ffmpeg costs more than a tiny model's step).
import { checkInteger, typeError } from '../errors.js';
import { decodeFrameBatch, type Frame } from '../data/frames.js';
import { sceneSpec } from '../data/evaluate.js';
import { buildPrompt } from '../data/prompt.js';
import type { LoadedRow } from '../data/dataset.js';
import type { QwenModel } from '../infer/model.js';
import type { RolloutPrompt } from '../infer/rollout.js';
import { preparePrompt } from '../inputs/prompt.js';
import type { VideoOptions } from '../inputs/processor.js';
import { VIDEOTHINKER_VIDEO_OPTIONS } from '../inputs/video.js';
import type { GridThw } from '../model/positions.js';
import type { QwenInputs } from '../model/qwen.js';
import { Tensor } from '../tensor.js';

/** One row's prompt, ready for the network. */
export interface Prompt {
  row: LoadedRow;
  /** The prompt's token ids (placeholders expanded). */
  ids: Int32Array;
  pixelValuesVideos?: Tensor;
  videoGridThw?: GridThw[];
  secondPerGridTs?: number[];
  pixelValues?: Tensor;
  imageGridThw?: GridThw[];
  /** Bytes this prompt holds (pixels and ids), for the cache's budget. */
  bytes: number;
}

/** Prompts of rows, prepared on first use and kept (least recently used dropped past maxBytes). */
export class PromptCache {
  readonly #model: QwenModel;
  readonly #rows: readonly LoadedRow[];
  readonly #videoOptions: VideoOptions | undefined;
  readonly #maxBytes: number;
  readonly #cache = new Map<number, Prompt>();
  #bytes = 0;

  constructor(model: QwenModel, rows: readonly LoadedRow[], opts: { videoOptions?: VideoOptions; maxBytes?: number } = {}) {
    if (!model.tokenizer) throw new TypeError('Expected a model with a tokenizer (a checkpoint folder with tokenizer.json) to train on question rows');
    this.#model = model;
    this.#rows = rows;
    this.#videoOptions = opts.videoOptions;
    this.#maxBytes = opts.maxBytes === undefined ? 2 * 2 ** 30 : checkInteger('maxBytes', opts.maxBytes, 0);
  }

  /** The prompts of rows `idx` (prepared now where not cached). */
  async get(idx: readonly number[], signal?: AbortSignal): Promise<Prompt[]> {
    const want = new Set(idx);
    // Most recently used last (Map keeps insertion order): the rows asked for now move to the end
    // first, and the budget never evicts them during this call.
    for (const i of want) {
      const p = this.#cache.get(i);
      if (p) { this.#cache.delete(i); this.#cache.set(i, p); }
    }
    const missing = [...want].filter((i) => !this.#cache.has(i));
    const frames = await this.#decode(missing, signal);
    for (const i of missing) this.#put(i, await this.#prepare(i, frames.get(i), signal), want);
    return idx.map((i) => this.#cache.get(i)!);
  }

  /** Synthetic videos of one size, decoded many per ffmpeg call. */
  async #decode(idx: number[], signal?: AbortSignal): Promise<Map<number, Frame[]>> {
    const out = new Map<number, Frame[]>();
    const groups = new Map<string, { spec: { frames: number; width: number; height: number }; idx: number[] }>();
    for (const i of idx) {
      const spec = sceneSpec(this.#rows[i]!);
      if (!spec) continue;
      const key = `${spec.frames}x${spec.width}x${spec.height}`;
      if (!groups.has(key)) groups.set(key, { spec, idx: [] });
      groups.get(key)!.idx.push(i);
    }
    for (const g of groups.values()) {
      try {
        const fr = await decodeFrameBatch(g.idx.map((i) => this.#rows[i]!.media!.file), g.spec, signal ? { signal } : {});
        g.idx.forEach((i, k) => out.set(i, fr[k]!));
      } catch (e) {
        if (signal?.aborted) throw e;
        // A file of another size: prepared one by one below (a broken file then says so).
      }
    }
    return out;
  }

  async #prepare(i: number, frames: Frame[] | undefined, signal?: AbortSignal): Promise<Prompt> {
    const r = this.#rows[i]!;
    const m = this.#model;
    const base = (r.row.video_options as VideoOptions | undefined) ?? this.#videoOptions ?? VIDEOTHINKER_VIDEO_OPTIONS;
    const videoOptions: VideoOptions = { ...base, ...(this.#videoOptions ?? {}) };
    const spec = frames ? sceneSpec(r) : undefined;
    if (spec) videoOptions.videoFps = spec.fps;
    let p;
    try {
      p = await preparePrompt(m.config, m.tokenizer!, m.processor, {
        prompt: buildPrompt(r.row), videoOptions, ...(signal ? { signal } : {}),
        ...(r.media?.type === 'video' ? { video: frames ?? r.media.file } : r.media?.type === 'image' ? { images: [r.media.file] } : {}),
      });
    } catch (e) {
      if (signal?.aborted) throw e;
      throw new Error(`Cannot prepare ${r.file} row ${r.index}: ${(e as Error).message}`, { cause: e });
    }
    const out: Prompt = { row: r, ids: p.inputIds, bytes: p.inputIds.byteLength };
    if (p.pixelValuesVideos) {
      out.pixelValuesVideos = p.pixelValuesVideos; out.videoGridThw = p.videoGridThw!; out.secondPerGridTs = p.secondPerGridTs!;
      out.bytes += p.pixelValuesVideos.numel * 4;
    }
    if (p.pixelValues) { out.pixelValues = p.pixelValues; out.imageGridThw = p.imageGridThw!; out.bytes += p.pixelValues.numel * 4; }
    return out;
  }

  #put(i: number, p: Prompt, keep: ReadonlySet<number>): void {
    this.#cache.set(i, p);
    this.#bytes += p.bytes;
    // Past the budget the least recently used go, never a row of the batch being assembled.
    for (const [k, v] of this.#cache) {
      if (this.#bytes <= this.#maxBytes) break;
      if (keep.has(k)) continue;
      this.#cache.delete(k);
      this.#bytes -= v.bytes;
      v.pixelValuesVideos?.dispose();
      v.pixelValues?.dispose();
    }
  }

  dispose(): void {
    for (const v of this.#cache.values()) { v.pixelValuesVideos?.dispose(); v.pixelValues?.dispose(); }
    this.#cache.clear();
    this.#bytes = 0;
  }
}

/** Sequences (a prompt and the tokens after it) as one right-padded batch for the network. */
export interface Batch {
  B: number;
  L: number;
  inputIds: Tensor;
  attentionMask: Tensor;
  pixelValuesVideos?: Tensor;
  videoGridThw?: GridThw[];
  secondPerGridTs?: number[];
  pixelValues?: Tensor;
  imageGridThw?: GridThw[];
  /** Rows that share a prompt share its media: each distinct video (image) once, and per use the index of the one it shows. */
  videoRefs?: Int32Array;
  imageRefs?: Int32Array;
  /** Per row: where its continuation starts and how long the row is. */
  starts: number[];
  lengths: number[];
  dispose(): void;
}

function concat(parts: Tensor[]): Tensor {
  const K = parts[0]!.shape[1]!;
  const rows = parts.reduce((a, t) => a + t.shape[0]!, 0);
  const out = Tensor.empty([rows, K]);
  let off = 0;
  for (const t of parts) { (out.data as Float32Array).set(t.data as Float32Array, off); off += t.numel; }
  return out;
}

/** Builds the batch of prompts[i] followed by continuations[i] (token ids). */
export function collate(prompts: readonly Prompt[], continuations: readonly (ArrayLike<number>)[]): Batch {
  if (prompts.length !== continuations.length || prompts.length === 0) throw typeError('continuations', `one per prompt (${prompts.length})`, continuations);
  const B = prompts.length;
  const lengths = prompts.map((p, i) => p.ids.length + continuations[i]!.length);
  const L = Math.max(...lengths);
  const ids = new Int32Array(B * L), mask = new Int32Array(B * L);
  prompts.forEach((p, b) => {
    ids.set(p.ids, b * L);
    const c = continuations[b]!;
    for (let j = 0; j < c.length; j++) ids[b * L + p.ids.length + j] = c[j]!;
    mask.fill(1, b * L, b * L + lengths[b]!);
  });
  const owned: Tensor[] = [];
  const batch: Batch = {
    B, L, inputIds: Tensor.from(ids, [B, L]), attentionMask: Tensor.from(mask, [B, L]), starts: prompts.map((p) => p.ids.length), lengths,
    dispose: () => { batch.inputIds.dispose(); batch.attentionMask.dispose(); for (const t of owned) t.dispose(); },
  };
  // The same Prompt in several rows (the completions of one prompt) sends its pixels once; the
  // network runs the vision tower once per distinct prompt and sums the gradients of its uses.
  const share = (withMedia: Prompt[], grids: (p: Prompt) => GridThw[]) => {
    const distinct = [...new Set(withMedia)];
    return { distinct, refs: distinct.length < withMedia.length ? refsFor(withMedia, distinct, grids) : undefined };
  };
  const vids = share(prompts.filter((p) => p.pixelValuesVideos), (p) => p.videoGridThw!);
  if (vids.distinct.length) {
    const d = vids.distinct;
    batch.pixelValuesVideos = d.length === 1 ? d[0]!.pixelValuesVideos! : concat(d.map((p) => p.pixelValuesVideos!));
    if (d.length > 1) owned.push(batch.pixelValuesVideos);
    batch.videoGridThw = d.flatMap((p) => p.videoGridThw!);
    batch.secondPerGridTs = d.flatMap((p) => p.secondPerGridTs!);
    if (vids.refs) batch.videoRefs = vids.refs;
  }
  const imgs = share(prompts.filter((p) => p.pixelValues), (p) => p.imageGridThw!);
  if (imgs.distinct.length) {
    const d = imgs.distinct;
    batch.pixelValues = d.length === 1 ? d[0]!.pixelValues! : concat(d.map((p) => p.pixelValues!));
    if (d.length > 1) owned.push(batch.pixelValues);
    batch.imageGridThw = d.flatMap((p) => p.imageGridThw!);
    if (imgs.refs) batch.imageRefs = imgs.refs;
  }
  return batch;
}

/** Per media item of each row (in row order), the index of its distinct prompt's item. */
function refsFor(uses: Prompt[], distinct: Prompt[], grids: (p: Prompt) => GridThw[]): Int32Array {
  const first = new Map<Prompt, number>();
  let at = 0;
  for (const p of distinct) { first.set(p, at); at += grids(p).length; }
  const out: number[] = [];
  for (const p of uses) for (let j = 0; j < grids(p).length; j++) out.push(first.get(p)! + j);
  return Int32Array.from(out);
}

/** A prepared prompt as the rollout engine takes it (`key` picks its sampling streams). */
export function rolloutPrompt(p: Prompt, key: number): RolloutPrompt {
  const r: RolloutPrompt = { inputIds: p.ids, key };
  if (p.pixelValuesVideos) { r.pixelValuesVideos = p.pixelValuesVideos; r.videoGridThw = p.videoGridThw!; r.secondPerGridTs = p.secondPerGridTs!; }
  if (p.pixelValues) { r.pixelValues = p.pixelValues; r.imageGridThw = p.imageGridThw!; }
  return r;
}

/** The media fields of a batch as forward() inputs (pixels, grids, seconds, shared-media refs). */
export function mediaInputs(batch: Batch): Pick<QwenInputs, 'pixelValuesVideos' | 'videoGridThw' | 'secondPerGridTs' | 'videoRefs' | 'pixelValues' | 'imageGridThw' | 'imageRefs'> {
  return {
    ...(batch.pixelValuesVideos ? { pixelValuesVideos: batch.pixelValuesVideos, videoGridThw: batch.videoGridThw!, secondPerGridTs: batch.secondPerGridTs! } : {}),
    ...(batch.videoRefs ? { videoRefs: batch.videoRefs } : {}),
    ...(batch.pixelValues ? { pixelValues: batch.pixelValues, imageGridThw: batch.imageGridThw! } : {}),
    ...(batch.imageRefs ? { imageRefs: batch.imageRefs } : {}),
  };
}
