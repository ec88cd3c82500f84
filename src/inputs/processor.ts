// The Qwen2.5-VL image/video processor: RGB frames -> the flattened patches ("pixel values") the
// vision tower takes, with their [t, h, w] grids, as the Hugging Face Qwen2VLImageProcessor and
// qwen-vl-utils prepare them:
//
//   1. size: smartResize() of the frame size to multiples of patchSize * mergeSize (28) within a
//      pixel budget (the config's min/max for images; qwen-vl-utils' per-frame video budget);
//   2. resize: separable bicubic with antialiasing (a = -0.5; the kernel widened by the
//      downscale factor, cut at the borders and renormalised), as PIL's BICUBIC and
//      torch.nn.functional.interpolate(mode='bicubic', antialias=True) compute it, in float64,
//      then rounded (half up) and clamped to u8: PIL and torchvision both give u8 frames here;
//   3. rescale (x / 255) and normalise ((x - mean) / std) per channel;
//   4. patchify: frames [T, C, H, W] padded to a multiple of temporalPatchSize by repeating the
//      last one, reshaped to (gt, tp, C, gh/m, m, ps, gw/m, m, ps), permuted to
//      (0, 3, 6, 4, 7, 2, 1, 5, 8) and flattened to [gt*gh*gw, C*tp*ps*ps] (f32).
//
// Everything but the final Tensor is plain JS (no native code).
import path from 'node:path';

import { checkInteger, checkNumber, checkOptions, rangeError, typeError } from '../errors.js';
import { readRegularFile } from '../files.js';
import { Tensor } from '../tensor.js';
import type { GridThw } from '../model/positions.js';
import { decodeVideo, FRAME_FACTOR, planFrames, type RGBImage, type SampleOptions, type ToolOptions } from './video.js';

export type { RGBImage } from './video.js';

/** A frame: an RGB u8 Tensor [H, W, 3] (CPU) or { data: Uint8Array (H*W*3, HWC), height, width }. */
export type RGBFrame = Tensor | RGBImage | { data: Uint8ClampedArray; height: number; width: number };

export interface ProcessorConfig {
  /** Pixel budget of an image after resizing (default 56*56 and 28*28*1280). */
  minPixels: number;
  maxPixels: number;
  /** Vision patch side (14), frames per temporal patch (2), spatial merge (2). */
  patchSize: number;
  temporalPatchSize: number;
  mergeSize: number;
  /** Per-channel (R, G, B) mean and std applied after rescaling. */
  imageMean: readonly [number, number, number];
  imageStd: readonly [number, number, number];
  /** Multiplies the u8 values before normalising (1/255). */
  rescaleFactor: number;
}

export const OPENAI_CLIP_MEAN = Object.freeze([0.48145466, 0.4578275, 0.40821073] as const);
export const OPENAI_CLIP_STD = Object.freeze([0.26862954, 0.26130258, 0.27577711] as const);

export const DEFAULT_PROCESSOR_CONFIG: Readonly<ProcessorConfig> = Object.freeze({
  minPixels: 56 * 56, maxPixels: 28 * 28 * 1280, patchSize: 14, temporalPatchSize: 2, mergeSize: 2,
  imageMean: OPENAI_CLIP_MEAN, imageStd: OPENAI_CLIP_STD, rescaleFactor: 1 / 255,
});

/** qwen-vl-utils' per-frame pixel budget of videos. */
export const VIDEO_MIN_PIXELS = 128 * 28 * 28;
export const VIDEO_MAX_PIXELS = 768 * 28 * 28;
export const VIDEO_TOTAL_PIXELS = Math.trunc(128000 * 28 * 28 * 0.9);
/**
 * Most pixels one resized frame may have: 2^26 (8192 x 8192), 5x the largest image budget of
 * Qwen2.5-VL (28 * 28 * 16384). A budget such as minPixels 1e12 asked for terabytes and failed
 * with "Invalid typed array length".
 */
export const MAX_FRAME_PIXELS = 2 ** 26;
/** Most f32 values the patches of one call may take (4 GiB). */
export const MAX_PATCH_VALUES = 2 ** 30;
/** Largest ratio of the long to the short side smartResize accepts. */
export const MAX_ASPECT_RATIO = 200;

/** A RangeError whose received part is already text (a shape or size). */
function shapeError(name: string, expected: string, received: string): RangeError {
  return new RangeError(`Expected ${expected} for ${name} but received ${received}`);
}

/** Python's round() (halves to even), as round_by_factor uses it. */
function pyRound(x: number): number {
  const r = Math.round(x);
  return Math.abs(x % 1) === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

/**
 * The size [height, width] a frame is resized to (Qwen2-VL smart_resize): each side rounded to
 * the nearest multiple of `factor` (at least `factor`); if that exceeds `maxPixels` pixels both
 * sides are scaled by 1/sqrt(h*w/maxPixels) and rounded down to multiples of `factor` (at least
 * `factor`); if it is under `minPixels` they are scaled up and rounded up. A RangeError for an
 * aspect ratio over 200.
 */
export function smartResize(height: number, width: number, factor = 28, minPixels = 56 * 56, maxPixels = 28 * 28 * 1280): [number, number] {
  checkInteger('height', height, 1);
  checkInteger('width', width, 1);
  checkInteger('factor', factor, 1);
  checkNumber('minPixels', minPixels, 0);
  checkNumber('maxPixels', maxPixels, 0, Infinity, { exclusiveMin: true });
  const ratio = Math.max(height, width) / Math.min(height, width);
  if (ratio > MAX_ASPECT_RATIO) {
    throw new RangeError(`Expected height and width with an aspect ratio of at most ${MAX_ASPECT_RATIO} but received ${height}x${width} (ratio ${ratio.toFixed(1)})`);
  }
  let h = Math.max(factor, pyRound(height / factor) * factor);
  let w = Math.max(factor, pyRound(width / factor) * factor);
  if (h * w > maxPixels) {
    const beta = Math.sqrt((height * width) / maxPixels);
    h = Math.max(factor, Math.floor(height / beta / factor) * factor);
    w = Math.max(factor, Math.floor(width / beta / factor) * factor);
  } else if (h * w < minPixels) {
    const beta = Math.sqrt(minPixels / (height * width));
    h = Math.ceil((height * beta) / factor) * factor;
    w = Math.ceil((width * beta) / factor) * factor;
  }
  if (h * w > MAX_FRAME_PIXELS) {
    throw new RangeError(`Expected a pixel budget (minPixels ${minPixels}, maxPixels ${maxPixels}) that resizes ${height}x${width} to at most ${MAX_FRAME_PIXELS} pixels but it gives ${h}x${w}`);
  }
  return [h, w];
}

/**
 * qwen-vl-utils' per-frame budget for a video of `nframes` sampled frames: minPixels (default
 * 128*28*28) and max(min(768*28*28, totalPixels / nframes * 2), floor(minPixels * 1.05)),
 * lowered to `maxPixels` when that is given.
 */
export function videoPixelBounds(nframes: number, opts: { minPixels?: number; maxPixels?: number; totalPixels?: number } = {}): { minPixels: number; maxPixels: number } {
  checkInteger('nframes', nframes, 1);
  const o = checkOptions('options', opts);
  const minPixels = o.minPixels === undefined ? VIDEO_MIN_PIXELS : checkNumber('minPixels', o.minPixels, 0);
  const total = o.totalPixels === undefined ? VIDEO_TOTAL_PIXELS : checkNumber('totalPixels', o.totalPixels, 0, Infinity, { exclusiveMin: true });
  const cap = Math.max(Math.min(VIDEO_MAX_PIXELS, (total / nframes) * FRAME_FACTOR), Math.trunc(minPixels * 1.05));
  const maxPixels = o.maxPixels === undefined ? cap : Math.min(checkNumber('maxPixels', o.maxPixels, 0, Infinity, { exclusiveMin: true }), cap);
  return { minPixels, maxPixels };
}

// ---------------------------------------------------------------------------------------------
// config

function num(json: Record<string, unknown>, key: string, fallback: number): unknown {
  return json[key] === undefined || json[key] === null ? fallback : json[key];
}

function triple(name: string, v: unknown, positive: boolean): [number, number, number] {
  const arr = typeof v === 'number' ? [v, v, v] : v;
  if (!Array.isArray(arr) || arr.length !== 3) throw typeError(name, 'a number or an array of 3 numbers (R, G, B)', v);
  return arr.map((x, i) => {
    checkNumber(`${name}[${i}]`, x, positive ? 0 : -Infinity, Infinity, { exclusiveMin: positive });
    if (!Number.isFinite(x)) throw rangeError(`${name}[${i}]`, 'a finite number', x);
    return x as number;
  }) as [number, number, number];
}

const HF_NAMES: Record<keyof ProcessorConfig, string> = {
  minPixels: 'min_pixels', maxPixels: 'max_pixels', patchSize: 'patch_size', temporalPatchSize: 'temporal_patch_size',
  mergeSize: 'merge_size', imageMean: 'image_mean', imageStd: 'image_std', rescaleFactor: 'rescale_factor',
};

/** Checks a config; `hf` names the fields by their preprocessor_config.json keys in errors. */
function validateConfig(c: Record<string, unknown>, hf = false): ProcessorConfig {
  const n = (k: keyof ProcessorConfig) => (hf ? HF_NAMES[k] : k);
  const patchSize = checkInteger(n('patchSize'), c.patchSize, 1, 1024);
  const temporalPatchSize = checkInteger(n('temporalPatchSize'), c.temporalPatchSize, 1, 1024);
  const mergeSize = checkInteger(n('mergeSize'), c.mergeSize, 1, 64);
  const minPixels = checkNumber(n('minPixels'), c.minPixels, 0, Number.MAX_SAFE_INTEGER);
  const maxPixels = checkNumber(n('maxPixels'), c.maxPixels, 0, Number.MAX_SAFE_INTEGER, { exclusiveMin: true });
  if (maxPixels < minPixels) throw rangeError(n('maxPixels'), `a number >= ${n('minPixels')} (${minPixels})`, maxPixels);
  const rescaleFactor = checkNumber(n('rescaleFactor'), c.rescaleFactor, 0, Infinity, { exclusiveMin: true });
  if (!Number.isFinite(rescaleFactor)) throw rangeError(n('rescaleFactor'), 'a finite number > 0', rescaleFactor);
  return Object.freeze({
    minPixels, maxPixels, patchSize, temporalPatchSize, mergeSize, rescaleFactor,
    imageMean: Object.freeze(triple(n('imageMean'), c.imageMean, false)), imageStd: Object.freeze(triple(n('imageStd'), c.imageStd, true)),
  }) as ProcessorConfig;
}

/**
 * A ProcessorConfig from a checkpoint's preprocessor_config.json (snake_case keys: min_pixels,
 * max_pixels or size.{min_pixels, max_pixels} / size.{shortest_edge, longest_edge}, patch_size,
 * temporal_patch_size, merge_size, image_mean, image_std, rescale_factor, do_rescale,
 * do_normalize); missing keys take the Qwen2.5-VL defaults.
 */
export function processorConfigFromHF(json: unknown): ProcessorConfig {
  if (json === null || typeof json !== 'object' || Array.isArray(json)) throw typeError('config', 'a preprocessor_config.json object', json);
  const j = json as Record<string, unknown>;
  const d = DEFAULT_PROCESSOR_CONFIG;
  const size = (j.size !== null && typeof j.size === 'object' ? j.size : {}) as Record<string, unknown>;
  const doRescale = j.do_rescale === undefined ? true : j.do_rescale;
  const doNormalize = j.do_normalize === undefined ? true : j.do_normalize;
  if (typeof doRescale !== 'boolean') throw typeError('do_rescale', 'a boolean', doRescale);
  if (typeof doNormalize !== 'boolean') throw typeError('do_normalize', 'a boolean', doNormalize);
  const given = (k: string) => j[k] !== undefined && j[k] !== null;
  return validateConfig({
    minPixels: num(j, 'min_pixels', Number(size.min_pixels ?? size.shortest_edge ?? d.minPixels)),
    maxPixels: num(j, 'max_pixels', Number(size.max_pixels ?? size.longest_edge ?? d.maxPixels)),
    patchSize: num(j, 'patch_size', d.patchSize),
    temporalPatchSize: num(j, 'temporal_patch_size', d.temporalPatchSize),
    mergeSize: num(j, 'merge_size', d.mergeSize),
    imageMean: !doNormalize ? [0, 0, 0] : given('image_mean') ? j.image_mean : d.imageMean,
    imageStd: !doNormalize ? [1, 1, 1] : given('image_std') ? j.image_std : d.imageStd,
    rescaleFactor: doRescale ? num(j, 'rescale_factor', d.rescaleFactor) : 1,
  }, true);
}

// ---------------------------------------------------------------------------------------------
// frames

/** A frame argument as an RGBImage (a Tensor is copied out). */
export function toRGBImage(name: string, v: unknown): RGBImage {
  if (v instanceof Tensor) {
    if (v.disposed) throw new TypeError(`Expected a live Tensor for ${name} but it has been disposed`);
    if (v.dtype !== 'u8') throw new TypeError(`Expected a u8 Tensor [H, W, 3] for ${name} but received a ${v.dtype} Tensor`);
    if (v.ndim !== 3 || v.shape[2] !== 3 || v.shape[0] === 0 || v.shape[1] === 0) {
      throw shapeError(name, 'a Tensor of shape [H, W, 3] (RGB)', `shape [${v.shape.join(', ')}]`);
    }
    if (v.device !== 'cpu') throw shapeError(name, 'a CPU Tensor', `a Tensor on ${v.device}`);
    return { data: v.toArray() as Uint8Array, height: v.shape[0]!, width: v.shape[1]! };
  }
  if (v === null || typeof v !== 'object' || Array.isArray(v) || ArrayBuffer.isView(v)) {
    throw typeError(name, 'an RGB frame (a u8 Tensor [H, W, 3] or { data: Uint8Array, height, width })', v);
  }
  const f = v as { data?: unknown; height?: unknown; width?: unknown };
  if (!(f.data instanceof Uint8Array || f.data instanceof Uint8ClampedArray)) throw typeError(`${name}.data`, 'a Uint8Array of RGB bytes (HWC)', f.data);
  const height = checkInteger(`${name}.height`, f.height, 1);
  const width = checkInteger(`${name}.width`, f.width, 1);
  if (f.data.length !== height * width * 3) {
    throw rangeError(`${name}.data`, `${height * width * 3} bytes (height ${height} x width ${width} x 3)`, f.data);
  }
  const data = f.data instanceof Uint8Array ? f.data : new Uint8Array(f.data.buffer, f.data.byteOffset, f.data.length);
  return { data, height, width };
}

// ---------------------------------------------------------------------------------------------
// resize

/** Keys' bicubic kernel with a = -0.5 (PIL, and torch's antialiased bicubic). */
function cubic(x: number): number {
  const a = -0.5;
  if (x < 0) x = -x;
  if (x < 1) return ((a + 2) * x - (a + 3)) * x * x + 1;
  if (x < 2) return (((x - 5) * x + 8) * x - 4) * a;
  return 0;
}

interface AxisWeights { start: Int32Array; count: Int32Array; taps: number; weights: Float64Array }

/** Per output position: the first input index, the number of taps and their normalised weights. */
function axisWeights(inSize: number, outSize: number): AxisWeights {
  const scale = inSize / outSize;
  const filterScale = Math.max(scale, 1);
  const support = 2 * filterScale;
  const taps = Math.ceil(support) * 2 + 1;
  const start = new Int32Array(outSize), count = new Int32Array(outSize), weights = new Float64Array(outSize * taps);
  const inv = 1 / filterScale;
  for (let i = 0; i < outSize; i++) {
    const center = (i + 0.5) * scale;
    const xmin = Math.max(Math.trunc(center - support + 0.5), 0);
    const n = Math.min(Math.trunc(center + support + 0.5), inSize) - xmin;
    let total = 0;
    for (let j = 0; j < n; j++) {
      const w = cubic((j + xmin - center + 0.5) * inv);
      weights[i * taps + j] = w;
      total += w;
    }
    if (total !== 0) for (let j = 0; j < n; j++) weights[i * taps + j]! /= total;
    start[i] = xmin; count[i] = n;
  }
  return { start, count, taps, weights };
}

/**
 * Resizes an RGB u8 image to outH x outW with antialiased bicubic interpolation (horizontal pass
 * then vertical, float64), rounding half up and clamping to u8. The same size returns the input.
 */
export function resizeBicubic(img: RGBImage, outH: number, outW: number): RGBImage {
  checkInteger('outH', outH, 1);
  checkInteger('outW', outW, 1);
  const { data: src, height: H, width: W } = img;
  if (H === outH && W === outW) return img;
  // Horizontal: [H, W, 3] -> [H, outW, 3]
  let tmp: Float64Array;
  if (W !== outW) {
    const ax = axisWeights(W, outW);
    tmp = new Float64Array(H * outW * 3);
    for (let y = 0; y < H; y++) {
      const row = y * W * 3, orow = y * outW * 3;
      for (let x = 0; x < outW; x++) {
        const s = ax.start[x]!, n = ax.count[x]!, wo = x * ax.taps;
        let r = 0, g = 0, b = 0;
        for (let j = 0; j < n; j++) {
          const w = ax.weights[wo + j]!, p = row + (s + j) * 3;
          r += w * src[p]!; g += w * src[p + 1]!; b += w * src[p + 2]!;
        }
        const o = orow + x * 3;
        tmp[o] = r; tmp[o + 1] = g; tmp[o + 2] = b;
      }
    }
  } else {
    tmp = Float64Array.from(src);
  }
  const out = new Uint8Array(outH * outW * 3);
  const rowLen = outW * 3;
  const toU8 = (v: number) => { const r = Math.floor(v + 0.5); return r < 0 ? 0 : r > 255 ? 255 : r; };
  if (H !== outH) {
    const ay = axisWeights(H, outH);
    const acc = new Float64Array(rowLen);
    for (let y = 0; y < outH; y++) {
      const s = ay.start[y]!, n = ay.count[y]!, wo = y * ay.taps;
      acc.fill(0);
      for (let j = 0; j < n; j++) {
        const w = ay.weights[wo + j]!, row = (s + j) * rowLen;
        for (let k = 0; k < rowLen; k++) acc[k]! += w * tmp[row + k]!;
      }
      const orow = y * rowLen;
      for (let k = 0; k < rowLen; k++) out[orow + k] = toU8(acc[k]!);
    }
  } else {
    for (let k = 0; k < out.length; k++) out[k] = toU8(tmp[k]!);
  }
  return { data: out, height: outH, width: outW };
}

// ---------------------------------------------------------------------------------------------
// patchify

/**
 * Writes normalised frames of one item (image or video) into the flattened patch layout. Frames
 * come one at a time (all of size height x width, already resized); finish() repeats the last
 * frame up to a multiple of the temporal patch size.
 */
export class PatchWriter {
  readonly gridThw: [number, number, number];
  readonly rowLength: number;
  readonly out: Float32Array;
  readonly #frames: number;
  readonly #padded: number;
  readonly #cfg: ProcessorConfig;
  readonly #lut: Float32Array;
  readonly #xRow: Int32Array;
  readonly #xCol: Int32Array;
  readonly #yRow: Int32Array;
  readonly #yCol: Int32Array;
  #last: RGBImage | null = null;
  #written = 0;

  constructor(frames: number, readonly height: number, readonly width: number, cfg: ProcessorConfig) {
    const { patchSize: ps, temporalPatchSize: tp, mergeSize: m } = cfg;
    const unit = ps * m;
    if (height % unit !== 0 || width % unit !== 0) {
      throw shapeError('height and width', `multiples of ${unit} (patchSize x mergeSize)`, `${height}x${width}`);
    }
    this.#cfg = cfg;
    this.#frames = frames;
    this.#padded = Math.ceil(frames / tp) * tp;
    const gt = this.#padded / tp, gh = height / ps, gw = width / ps;
    this.gridThw = [gt, gh, gw];
    this.rowLength = 3 * tp * ps * ps;
    const values = gt * gh * gw * this.rowLength;
    if (values > MAX_PATCH_VALUES) {
      throw new RangeError(`Expected at most ${MAX_PATCH_VALUES} pixel values per call but ${frames} frames of ${height}x${width} need ${values}: lower maxPixels, totalPixels or the frame count`);
    }
    this.out = new Float32Array(values);
    // Row of a patch: ((t*(gh/m) + bh)*(gw/m) + bw)*m*m + mh*m + mw; column: ((c*tp + tt)*ps + py)*ps + px.
    this.#xRow = new Int32Array(width); this.#xCol = new Int32Array(width);
    for (let x = 0; x < width; x++) {
      const ww = Math.floor(x / ps);
      this.#xRow[x] = Math.floor(ww / m) * m * m + (ww % m);
      this.#xCol[x] = x % ps;
    }
    this.#yRow = new Int32Array(height); this.#yCol = new Int32Array(height);
    for (let y = 0; y < height; y++) {
      const hh = Math.floor(y / ps);
      this.#yRow[y] = Math.floor(hh / m) * gw * m + (hh % m) * m;
      this.#yCol[y] = (y % ps) * ps;
    }
    this.#lut = new Float32Array(3 * 256);
    for (let c = 0; c < 3; c++) {
      for (let v = 0; v < 256; v++) this.#lut[c * 256 + v] = (v * cfg.rescaleFactor - cfg.imageMean[c]!) / cfg.imageStd[c]!;
    }
  }

  /** Writes frame `t` (0-based; frames must have this writer's size). */
  write(img: RGBImage, t: number): void {
    if (img.height !== this.height || img.width !== this.width) {
      throw shapeError('frame', `a ${this.height}x${this.width} frame`, `${img.height}x${img.width}`);
    }
    checkInteger('t', t, 0, this.#padded - 1);
    const { patchSize: ps, temporalPatchSize: tp } = this.#cfg;
    const [, gh, gw] = this.gridThw;
    const D = this.rowLength, pp = ps * ps;
    const tBase = Math.floor(t / tp) * gh * gw, tCol = (t % tp) * pp;
    const src = img.data, out = this.out, lut = this.#lut, W = this.width;
    const xRow = this.#xRow, xCol = this.#xCol;
    for (let y = 0; y < this.height; y++) {
      const yRow = tBase + this.#yRow[y]!, yCol = tCol + this.#yCol[y]!;
      let p = y * W * 3;
      for (let x = 0; x < W; x++, p += 3) {
        const base = (yRow + xRow[x]!) * D + yCol + xCol[x]!;
        out[base] = lut[src[p]!]!;
        out[base + tp * pp] = lut[256 + src[p + 1]!]!;
        out[base + 2 * tp * pp] = lut[512 + src[p + 2]!]!;
      }
    }
    if (t === this.#frames - 1) this.#last = img;
    this.#written++;
  }

  /** Pads with the last frame; returns the [rows, rowLength] data. */
  finish(): Float32Array {
    if (this.#written < this.#frames || this.#last === null) {
      throw new RangeError(`Expected ${this.#frames} frames to be written but received ${this.#written}`);
    }
    for (let t = this.#frames; t < this.#padded; t++) this.write(this.#last, t);
    return this.out;
  }
}

// ---------------------------------------------------------------------------------------------
// processor

/** Inputs for the vision tower: `pixelValues` [sum of t*h*w, 3*tp*ps*ps] f32 and one grid per item. */
export interface VisionInputs {
  pixelValues: Tensor;
  /** [t, h, w] per item, in patches. */
  gridThw: GridThw[];
  /** Vision tokens per item after the merger: t*h*w / mergeSize^2. */
  tokens: number[];
}

export interface VideoInputs extends VisionInputs {
  /** Seconds per temporal grid step: temporalPatchSize / sampleFps. */
  secondPerGridTs: number[];
  /** The rate the sampled frames represent. */
  sampleFps: number;
  /** The index in the source of each sampled frame (0..n-1 for frames given already sampled). */
  frameIndices: number[];
  /** Frames of a file that ffmpeg did not deliver (filled with the last one); 0 normally. */
  missingFrames: number;
}

export interface ImageOptions {
  /** Override the config's pixel budget for this call. */
  minPixels?: number;
  maxPixels?: number;
}

export interface VideoOptions extends SampleOptions, ToolOptions {
  /**
   * For frames given in memory: the rate of the source they come from. With it the frames are
   * taken as the whole video and sampled like a file (fps, minFrames, maxFrames, nframes); without
   * it they are the sampled frames themselves and `fps` (default 2) is their rate.
   */
  videoFps?: number;
  /** Per-frame pixel budget (qwen-vl-utils): minPixels (128*28*28), maxPixels (768*28*28 at most), totalPixels over all frames. */
  minPixels?: number;
  maxPixels?: number;
  totalPixels?: number;
  /**
   * A file whose stream delivers fewer frames than its container claims (a truncated download)
   * has its missing sampled frames filled with the last decoded one; more than this fraction of
   * them missing is an Error (default 0.25; 1 accepts any file that decodes at all). The count is
   * reported as `missingFrames` either way.
   */
  maxMissingFraction?: number;
}

/** Default of VideoOptions.maxMissingFraction. */
export const DEFAULT_MAX_MISSING_FRACTION = 0.25;

const VIDEO_OPTION_KEYS = new Set(['fps', 'minFrames', 'maxFrames', 'nframes', 'signal', 'ffmpeg', 'ffprobe', 'videoFps', 'minPixels', 'maxPixels', 'totalPixels', 'maxMissingFraction']);
const IMAGE_OPTION_KEYS = new Set(['minPixels', 'maxPixels']);

function checkKeys(o: object, allowed: Set<string>): void {
  for (const k of Object.keys(o)) {
    if (!allowed.has(k)) throw rangeError(`options.${k}`, `no such option (known: ${[...allowed].join(', ')})`, (o as Record<string, unknown>)[k]);
  }
}

/**
 * The Qwen2.5-VL image and video processor. `fromDir(checkpointDir)` reads
 * preprocessor_config.json (defaults when the folder has none).
 */
export class QwenProcessor {
  readonly config: ProcessorConfig;

  constructor(config: Partial<ProcessorConfig> = {}) {
    const c = checkOptions('config', config);
    this.config = validateConfig({ ...DEFAULT_PROCESSOR_CONFIG, ...Object.fromEntries(Object.entries(c).filter(([, v]) => v !== undefined)) });
  }

  /** From a preprocessor_config.json object (snake_case keys; see processorConfigFromHF). */
  static fromConfig(json: unknown): QwenProcessor {
    return new QwenProcessor(processorConfigFromHF(json));
  }

  /** From a checkpoint folder's preprocessor_config.json; the defaults when the file is absent. */
  static fromDir(dir: string): QwenProcessor {
    if (typeof dir !== 'string' || dir === '') throw typeError('dir', 'a checkpoint folder path', dir);
    const file = path.join(dir, 'preprocessor_config.json');
    let text: string;
    try {
      text = readRegularFile(file);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return new QwenProcessor();
      throw new Error(`Cannot read ${file}: ${(e as Error).message}`, { cause: e });
    }
    let json: unknown;
    try { json = JSON.parse(text); } catch (e) { throw new Error(`${file} is not valid JSON: ${(e as Error).message}`, { cause: e }); }
    return QwenProcessor.fromConfig(json);
  }

  /** patchSize * mergeSize: frame sides are resized to multiples of this (28). */
  get factor(): number { return this.config.patchSize * this.config.mergeSize; }

  /** The [height, width] an image of this size is resized to. */
  imageSize(height: number, width: number, opts: ImageOptions = {}): [number, number] {
    const o = checkOptions('options', opts);
    checkKeys(o, IMAGE_OPTION_KEYS);
    return smartResize(height, width, this.factor, o.minPixels ?? this.config.minPixels, o.maxPixels ?? this.config.maxPixels);
  }

  /** The [height, width] the frames of a video of `nframes` sampled frames of this size are resized to. */
  videoSize(height: number, width: number, nframes: number, opts: Pick<VideoOptions, 'minPixels' | 'maxPixels' | 'totalPixels'> = {}): [number, number] {
    const o = checkOptions('options', opts);
    const b = videoPixelBounds(nframes, { minPixels: o.minPixels, maxPixels: o.maxPixels, totalPixels: o.totalPixels });
    return smartResize(height, width, this.factor, b.minPixels, b.maxPixels);
  }

  /** One image: grid [1, h, w] (the frame is repeated to fill the temporal patch). */
  image(frame: RGBFrame, opts: ImageOptions = {}): VisionInputs {
    return this.#images([frame], opts, () => 'frame');
  }

  /** Several images, each resized on its own; pixelValues are concatenated in order. */
  images(frames: readonly RGBFrame[], opts: ImageOptions = {}): VisionInputs {
    if (!Array.isArray(frames) || frames.length === 0) throw typeError('frames', 'a non-empty array of RGB frames', frames);
    return this.#images(frames, opts, (i) => `frames[${i}]`);
  }

  #images(frames: readonly RGBFrame[], opts: ImageOptions, name: (i: number) => string): VisionInputs {
    const o = checkOptions('options', opts);
    checkKeys(o, IMAGE_OPTION_KEYS);
    const imgs = frames.map((f, i) => toRGBImage(name(i), f));
    const parts = imgs.map((img) => {
      const [h, w] = this.imageSize(img.height, img.width, o);
      const wr = new PatchWriter(1, h, w, this.config);
      wr.write(resizeBicubic(img, h, w), 0);
      return { data: wr.finish(), grid: wr.gridThw };
    });
    return this.#result(parts);
  }

  /**
   * A video: a file path (decoded with ffmpeg, see decodeVideo), an array of frames, or a u8
   * Tensor [T, H, W, 3]. All frames are resized to one size (from the first frame's) within the
   * per-frame budget (videoPixelBounds).
   */
  async video(input: string | readonly RGBFrame[] | Tensor, opts: VideoOptions = {}): Promise<VideoInputs> {
    if (typeof input !== 'string') {
      // frames in memory: one frame per turn of the event loop, so other work runs in between
      const job = this.#framesJob(input, opts);
      for (let r = job.next(); ; r = job.next()) {
        if (r.done) return r.value;
        await new Promise((resolve) => setImmediate(resolve));
        (opts as VideoOptions | undefined)?.signal?.throwIfAborted();
      }
    }
    const o = checkOptions('options', opts);
    checkKeys(o, VIDEO_OPTION_KEYS);
    if (o.videoFps !== undefined) throw typeError('options.videoFps', 'no videoFps with a file (its rate is read from the file)', o.videoFps);
    const maxMissing = o.maxMissingFraction === undefined ? DEFAULT_MAX_MISSING_FRACTION : checkNumber('options.maxMissingFraction', o.maxMissingFraction, 0, 1);
    this.#checkBudget(o);
    let writer: PatchWriter | null = null;
    let size: [number, number] = [0, 0];
    let lastIn: RGBImage | null = null, lastOut: RGBImage | null = null;
    const dec = await decodeVideo(input, {
      fps: o.fps, minFrames: o.minFrames, maxFrames: o.maxFrames, nframes: o.nframes, signal: o.signal, ffmpeg: o.ffmpeg, ffprobe: o.ffprobe,
      onStart: (info) => {
        size = this.videoSize(info.height, info.width, info.indices.length, o);
        writer = new PatchWriter(info.indices.length, size[0], size[1], this.config);
      },
      onFrame: (frame, i) => {
        if (frame !== lastIn) { lastIn = frame; lastOut = resizeBicubic(frame, size[0], size[1]); }
        writer!.write(lastOut!, i);
      },
    });
    const w = writer as PatchWriter | null;
    if (w === null) throw new Error(`No frames decoded from '${input}'`);
    const n = dec.indices.length;
    if (dec.missing > maxMissing * n) {
      throw new Error(`The video '${input}' delivered ${n - dec.missing} of its ${n} sampled frames (its container claims ${dec.totalFrames}): ` +
        `${dec.missing} would be copies of the last one, more than maxMissingFraction (${maxMissing}) allows. Is the file truncated?`);
    }
    const r = this.#result([{ data: w.finish(), grid: w.gridThw }]);
    return { ...r, secondPerGridTs: [this.config.temporalPatchSize / dec.sampleFps], sampleFps: dec.sampleFps, frameIndices: dec.indices, missingFrames: dec.missing };
  }

  /** video() for frames in memory (an array of frames or a u8 Tensor [T, H, W, 3]), in one go. */
  videoSync(input: readonly RGBFrame[] | Tensor, opts: VideoOptions = {}): VideoInputs {
    const job = this.#framesJob(input, opts);
    for (let r = job.next(); ; r = job.next()) if (r.done) return r.value;
  }

  /** The frames-in-memory path, pausing (yield) after each output frame. */
  *#framesJob(input: readonly RGBFrame[] | Tensor, opts: VideoOptions): Generator<void, VideoInputs, void> {
    const o = checkOptions('options', opts);
    checkKeys(o, VIDEO_OPTION_KEYS);
    this.#checkBudget(o);
    let imgs: RGBImage[];
    if (input instanceof Tensor) {
      if (input.disposed) throw new TypeError('Expected a live Tensor for frames but it has been disposed');
      if (input.dtype !== 'u8') throw new TypeError(`Expected a u8 Tensor [T, H, W, 3] for frames but received a ${input.dtype} Tensor`);
      if (input.ndim !== 4 || input.shape[3] !== 3 || input.shape[0] === 0 || input.shape[1] === 0 || input.shape[2] === 0) {
        throw shapeError('frames', 'a Tensor of shape [T, H, W, 3] (RGB)', `shape [${input.shape.join(', ')}]`);
      }
      if (input.device !== 'cpu') throw shapeError('frames', 'a CPU Tensor', `a Tensor on ${input.device}`);
      const [T, H, W] = input.shape as [number, number, number];
      const all = input.toArray() as Uint8Array, n = H * W * 3;
      imgs = Array.from({ length: T }, (_, t) => ({ data: all.subarray(t * n, (t + 1) * n), height: H, width: W }));
    } else if (Array.isArray(input) && input.length > 0) {
      imgs = input.map((f, i) => toRGBImage(`frames[${i}]`, f));
    } else {
      throw typeError('frames', 'a video file path, a non-empty array of RGB frames or a u8 Tensor [T, H, W, 3]', input);
    }
    const { height: H, width: W } = imgs[0]!;
    imgs.forEach((f, i) => {
      if (f.height !== H || f.width !== W) throw shapeError(`frames[${i}]`, `a ${H}x${W} frame (as frames[0])`, `${f.height}x${f.width}`);
    });
    let indices: number[], sampleFps: number;
    if (o.videoFps !== undefined) {
      checkNumber('videoFps', o.videoFps, 0, Infinity, { exclusiveMin: true });
      const plan = planFrames(imgs.length, o.videoFps, o);
      indices = plan.indices;
      sampleFps = plan.sampleFps;
    } else {
      for (const k of ['minFrames', 'maxFrames', 'nframes'] as const) {
        if (o[k] !== undefined) throw typeError(`options.${k}`, 'videoFps as well (the rate of the frames to sample from) or no sampling option', o[k]);
      }
      sampleFps = o.fps === undefined ? 2 : checkNumber('fps', o.fps, 0, Infinity, { exclusiveMin: true });
      if (!Number.isFinite(sampleFps)) throw rangeError('fps', 'a finite number > 0', sampleFps);
      indices = imgs.map((_, i) => i);
    }
    const [h, w] = this.videoSize(H, W, indices.length, o);
    const wr = new PatchWriter(indices.length, h, w, this.config);
    const cache = new Map<number, RGBImage>();
    for (const [t, src] of indices.entries()) {
      let r = cache.get(src);
      if (!r) { r = resizeBicubic(imgs[src]!, h, w); cache.clear(); cache.set(src, r); }
      wr.write(r, t);
      if (t + 1 < indices.length) yield;
    }
    const r = this.#result([{ data: wr.finish(), grid: wr.gridThw }]);
    return { ...r, secondPerGridTs: [this.config.temporalPatchSize / sampleFps], sampleFps, frameIndices: indices, missingFrames: 0 };
  }

  #checkBudget(o: VideoOptions): void {
    if (o.minPixels !== undefined) checkNumber('minPixels', o.minPixels, 0, Number.MAX_SAFE_INTEGER);
    if (o.maxPixels !== undefined) checkNumber('maxPixels', o.maxPixels, 0, Number.MAX_SAFE_INTEGER, { exclusiveMin: true });
    if (o.totalPixels !== undefined) checkNumber('totalPixels', o.totalPixels, 0, Number.MAX_SAFE_INTEGER, { exclusiveMin: true });
  }

  #result(parts: { data: Float32Array; grid: [number, number, number] }[]): VisionInputs {
    const D = 3 * this.config.temporalPatchSize * this.config.patchSize ** 2;
    const rows = parts.reduce((a, p) => a + p.data.length / D, 0);
    let all: Float32Array;
    if (parts.length === 1) all = parts[0]!.data;
    else {
      all = new Float32Array(rows * D);
      let off = 0;
      for (const p of parts) { all.set(p.data, off); off += p.data.length; }
    }
    const m2 = this.config.mergeSize ** 2;
    return {
      pixelValues: Tensor.from(all, [rows, D]),
      gridThw: parts.map((p) => [p.grid[0], p.grid[1], p.grid[2]] as const),
      tokens: parts.map((p) => (p.grid[0] * p.grid[1] * p.grid[2]) / m2),
    };
  }
}
