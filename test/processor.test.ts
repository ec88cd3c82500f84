// The Qwen2.5-VL image/video processor against an independent float64 PyTorch reference
// (test/ref/processor_ref.py): smartResize, frame sampling (smart_nframes + torch.linspace
// rounding), resize + normalise + patchify of random images and videos (upscaled, downscaled,
// mixed, unresized, padded in time, non-default configs); ffmpeg decoding of a video the test
// generates (skipped without ffmpeg); config loading; argument errors.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { test } from 'uvu';
import * as assert from 'uvu/assert';

import {
  DEFAULT_PROCESSOR_CONFIG, processorConfigFromHF, QwenProcessor, resizeBicubic, smartResize, videoPixelBounds,
  type ProcessorConfig, type RGBImage,
} from '../src/inputs/processor.js';
import { decodeVideo, planFrames, probeVideo, sampleFrameIndices, smartNframes, type SampleOptions } from '../src/inputs/video.js';
import { Tensor } from '../src/tensor.js';
import { assertRel, rejectsLike, rng, throwsLike } from './helpers.js';
import { noPython, runPython, skip } from './skip.js';

const REF = path.join(path.dirname(fileURLToPath(import.meta.url)), 'ref', 'processor_ref.py');
const hasFfmpeg = spawnSync('ffmpeg', ['-version']).status === 0 && spawnSync('ffprobe', ['-version']).status === 0;
// CI installs ffmpeg (.ci/run): there its absence is a failure, not a skip
test('ffmpeg is present where CI runs', () => { if (process.env.CI && !hasFfmpeg) assert.unreachable('ffmpeg (Debian package ffmpeg) is required in CI'); });

function randomImage(h: number, w: number, seed: number): RGBImage {
  const r = rng(seed);
  const data = new Uint8Array(h * w * 3);
  for (let i = 0; i < data.length; i++) data[i] = Math.floor(r() * 256);
  return { data, height: h, width: w };
}

function frames(T: number, h: number, w: number, seed: number): RGBImage[] {
  return Array.from({ length: T }, (_, t) => randomImage(h, w, seed * 1000 + t));
}

const hfConfig = (c: ProcessorConfig) => ({
  min_pixels: c.minPixels, max_pixels: c.maxPixels, patch_size: c.patchSize, temporal_patch_size: c.temporalPatchSize,
  merge_size: c.mergeSize, image_mean: c.imageMean, image_std: c.imageStd, rescale_factor: c.rescaleFactor,
});

// ---- cases shared with the Python reference ------------------------------------------------

const SR_CASES: [number, number, number, number, number][] = [];
{
  const r = rng(7);
  const sizes = [[1, 1], [3, 5], [10, 10], [27, 29], [42, 70], [70, 42], [56, 56], [224, 224], [480, 640], [1080, 1920],
    [2000, 10], [10, 2000], [1, 200], [1, 201], [4000, 3000], [10000, 8000], [28, 5600], [14, 2800]];
  for (let i = 0; i < 30; i++) sizes.push([1 + Math.floor(r() * 3000), 1 + Math.floor(r() * 3000)]);
  for (const [h, w] of sizes) {
    SR_CASES.push([h!, w!, 28, 56 * 56, 28 * 28 * 1280]);
    SR_CASES.push([h!, w!, 28, 128 * 28 * 28, 196 * 28 * 28]);
    SR_CASES.push([h!, w!, 14, 100, 7 * 7 * 300.5]);
  }
}

const NF_CASES: [number, number, Record<string, number>][] = [];
{
  for (const total of [1, 2, 3, 4, 5, 7, 10, 16, 30, 31, 64, 97, 100, 150, 299, 300, 901, 1800, 5000]) {
    for (const vfps of [1, 10, 23.976, 25, 29.97, 30, 60]) {
      NF_CASES.push([total, vfps, {}]);
      NF_CASES.push([total, vfps, { fps: 2, min_frames: 4, max_frames: 16 }]);
      NF_CASES.push([total, vfps, { fps: 0.5, min_frames: 3, max_frames: 9 }]);
      NF_CASES.push([total, vfps, { fps: 7 }]);
    }
    for (const n of [2, 3, 4, 5, 6, 7, 16]) NF_CASES.push([total, 30, { nframes: n }]);
  }
}
const toSampleOpts = (e: Record<string, number>): SampleOptions =>
  ({ fps: e.fps, minFrames: e.min_frames, maxFrames: e.max_frames, nframes: e.nframes });

interface Item {
  kind: 'image' | 'video';
  frames: RGBImage[];
  config: ProcessorConfig;
  minPixels?: number;
  maxPixels?: number;
  ele?: Record<string, number>;
  videoFps?: number;
}

const CUSTOM: ProcessorConfig = {
  ...DEFAULT_PROCESSOR_CONFIG, patchSize: 7, temporalPatchSize: 3, mergeSize: 1,
  imageMean: [0.5, 0.25, 0.125], imageStd: [0.2, 0.3, 0.4], rescaleFactor: 1 / 255, minPixels: 100, maxPixels: 2000,
};
const D = DEFAULT_PROCESSOR_CONFIG;
const ITEMS: Item[] = [
  { kind: 'image', frames: frames(1, 37, 53, 1), config: D }, // both sides upscaled (under minPixels)
  { kind: 'image', frames: frames(1, 300, 200, 2), config: D, maxPixels: 28 * 28 * 16 }, // downscaled ~4x (antialiased)
  { kind: 'image', frames: frames(1, 20, 400, 3), config: D }, // height up, width down
  { kind: 'image', frames: frames(1, 56, 84, 4), config: D }, // no resize
  { kind: 'image', frames: frames(1, 61, 45, 5), config: CUSTOM }, // other patch sizes, tp 3, merge 1
  // video given as sampled frames: 5 frames (padded to 6), 45x61 upscaled
  { kind: 'video', frames: frames(5, 45, 61, 6), config: D, ele: { fps: 3, min_pixels: 28 * 28 * 2, max_pixels: 28 * 28 * 6 } },
  // a 9-frame clip at 10 fps sampled at 4 fps (4 frames), 100x130 downscaled
  { kind: 'video', frames: frames(9, 100, 130, 7), config: D, videoFps: 10, ele: { fps: 4, min_pixels: 784, max_pixels: 28 * 28 * 4 } },
  // 4 frames with tp 3 (padded to 6), default video budget (large upscale)
  { kind: 'video', frames: frames(4, 30, 41, 8), config: CUSTOM, ele: { min_pixels: 300, max_pixels: 1200 } },
];

interface RefItem { grid: number[]; shape: number[]; second_per_grid_t: number | null; size: number[]; data: Float64Array; ties: Uint8Array }
interface RefOut { smart_resize: ([number, number] | 'error')[]; nframes: ([number, number[], number] | 'error')[]; items: RefItem[] }

let refCache: RefOut | null | undefined;
function ref(): RefOut | null {
  if (refCache !== undefined) return refCache;
  const dir = mkdtempSync(path.join(tmpdir(), 'vt-processor-'));
  try {
    const items = ITEMS.map((it, i) => {
      const file = `in_${i}.bin`;
      const all = new Uint8Array(it.frames.length * it.frames[0]!.data.length);
      it.frames.forEach((f, t) => all.set(f.data, t * f.data.length));
      writeFileSync(path.join(dir, file), all);
      return {
        // the default config is not sent: the reference applies Hugging Face's own defaults
        kind: it.kind, file, shape: [it.frames.length, it.frames[0]!.height, it.frames[0]!.width, 3],
        ...(it.config === D ? {} : { config: hfConfig(it.config) }),
        ...(it.minPixels !== undefined ? { min_pixels: it.minPixels } : {}), ...(it.maxPixels !== undefined ? { max_pixels: it.maxPixels } : {}),
        ...(it.ele ? { ele: it.ele } : {}), ...(it.videoFps !== undefined ? { video_fps: it.videoFps } : {}),
      };
    });
    writeFileSync(path.join(dir, 'case.json'), JSON.stringify({ smart_resize: SR_CASES, nframes: NF_CASES, items }));
    // null only when Python/torch is missing; a reference that fails is a test failure
    if (runPython([REF, dir], ['numpy', 'torch']) === null) return (refCache = null);
    const out = JSON.parse(readFileSync(path.join(dir, 'out.json'), 'utf8')) as RefOut;
    out.items.forEach((it, i) => {
      const b = readFileSync(path.join(dir, `out_${i}.bin`));
      it.data = new Float64Array(b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength));
      it.ties = new Uint8Array(readFileSync(path.join(dir, `ties_${i}.bin`)));
    });
    return (refCache = out);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/**
 * Compares patches with the reference: where the reference's resized value was a half (a tie,
 * to within 1e-9), float64 summation order decides the rounding to u8, so there the two may
 * differ by one u8 level (and such ties must be rare); everywhere else relative error < 1e-5.
 */
function assertPatches(got: Float32Array, want: RefItem | { data: Float64Array; ties: Uint8Array }, cfg: ProcessorConfig, what: string): void {
  assert.is(got.length, want.data.length, `${what}: length`);
  const level = cfg.rescaleFactor / Math.min(...cfg.imageStd);
  const g = Float64Array.from(got);
  let ties = 0, differ = 0;
  for (let i = 0; i < g.length; i++) {
    if (!want.ties[i]) continue;
    ties++;
    const d = Math.abs(g[i]! - want.data[i]!);
    if (d > 1e-5 * level) differ++;
    assert.ok(d <= level * 1.001, `${what}: element ${i} is ${g[i]} but the reference has ${want.data[i]} (a tie: at most one u8 level apart)`);
    g[i] = want.data[i]!;
  }
  assert.ok(ties <= Math.max(8, g.length * 1e-3), `${what}: ${ties} ties of ${g.length} values`);
  if (differ) console.log(`  note: ${what}: ${differ} of ${ties} exact-half values rounded the other way (one u8 level)`);
  assertRel(g, want.data, 1e-5, what);
}

// ---- smartResize ------------------------------------------------------------------------------

test('smartResize: hand-checked sizes (rounding halves to even, tiny and huge images, the aspect limit)', () => {
  assert.equal(smartResize(224, 224), [224, 224]);
  assert.equal(smartResize(42, 42), [56, 56]); // 1.5 -> 2 (even)
  assert.equal(smartResize(70, 70), [56, 56]); // 2.5 -> 2 (even), as Python's round
  assert.equal(smartResize(1, 1), [56, 56]); // scaled up to minPixels
  assert.equal(smartResize(1080, 1920), [728, 1316]); // 1092x1932 is over 28*28*1280: scaled down, rounded down
  assert.equal(smartResize(1080, 1920, 28, 128 * 784, 196 * 784), [280, 504]); // a VideoThinker frame
  const [h, w] = smartResize(10000, 8000);
  assert.ok(h * w <= 28 * 28 * 1280 && h % 28 === 0 && w % 28 === 0, `${h}x${w}`);
  assert.equal(smartResize(1, 200, 28, 56 * 56, 28 * 28 * 1280)[0] % 28, 0);
  throwsLike(() => smartResize(1, 201), RangeError, /aspect ratio of at most 200.*1x201/, 'aspect');
  throwsLike(() => smartResize(0, 10), RangeError, /height/, 'zero height');
  throwsLike(() => smartResize(10, 2.5), TypeError, /width/, 'fractional width');
  throwsLike(() => smartResize(10, 10, 0), RangeError, /factor/, 'factor');
  throwsLike(() => smartResize(10, 10, 28, 0, 0), RangeError, /maxPixels/, 'maxPixels');
});

test('smartResize equals the Python formula on 150 sizes and budgets', () => {
  const r = ref();
  if (!r) return skip(noPython(['numpy', 'torch']));
  SR_CASES.forEach(([h, w, f, mn, mx], i) => {
    const want = r.smart_resize[i];
    if (want === 'error') throwsLike(() => smartResize(h, w, f, mn, mx), RangeError, /aspect ratio/, `${h}x${w}`);
    else assert.equal(smartResize(h, w, f, mn, mx), want, `${h}x${w} factor ${f} [${mn}, ${mx}]`);
  });
});

// ---- frame sampling -------------------------------------------------------------------------

test('frame sampling equals smart_nframes + torch.linspace().round() on 700 cases', () => {
  const r = ref();
  if (!r) return skip(noPython(['numpy', 'torch']));
  let checked = 0;
  NF_CASES.forEach(([total, vfps, ele], i) => {
    const want = r.nframes[i]!;
    const what = `total ${total} @ ${vfps} fps, ${JSON.stringify(ele)}`;
    if (want === 'error') {
      throwsLike(() => smartNframes(total, vfps, toSampleOpts(ele)), RangeError, /frames/, what);
      return;
    }
    const plan = planFrames(total, vfps, toSampleOpts(ele));
    assert.is(plan.nframes, want[0], what);
    assert.equal(plan.indices, want[1], what);
    assert.ok(Math.abs(plan.sampleFps - want[2]) <= 1e-12 * want[2], what);
    checked++;
  });
  assert.ok(checked > 500, `${checked} cases checked`);
});

test('frame sampling: hand-checked plans and the VideoThinker setting (2 fps, 4..16 frames)', () => {
  // 30 frames at 10 fps -> 3 s -> 6 frames at 2 fps
  assert.equal(planFrames(30, 10), { nframes: 6, indices: [0, 6, 12, 17, 23, 29], sampleFps: 2 });
  // a 60 s clip at 30 fps: 120 frames at 2 fps, capped at 16
  const p = planFrames(1800, 30, { fps: 2, minFrames: 4, maxFrames: 16 });
  assert.is(p.nframes, 16);
  assert.is(p.indices[0], 0);
  assert.is(p.indices[15], 1799);
  // a 1 s clip: 2 frames at 2 fps, raised to 4
  assert.is(planFrames(30, 30, { minFrames: 4, maxFrames: 16 }).nframes, 4);
  assert.equal(sampleFrameIndices(6, 3), [0, 2, 5]); // 2.5 rounds to even
  assert.equal(sampleFrameIndices(10, 1), [0]);
  throwsLike(() => smartNframes(1, 30), RangeError, /at least 2 frames.*totalFrames/, 'one frame');
  throwsLike(() => smartNframes(30, 10, { fps: 2, nframes: 4 }), TypeError, /either fps or nframes/, 'fps + nframes');
  throwsLike(() => smartNframes(30, 0), RangeError, /videoFps/, 'videoFps');
  throwsLike(() => smartNframes(30, 10, { fps: -1 }), RangeError, /fps/, 'fps');
  throwsLike(() => smartNframes(30, 10, { minFrames: 8, maxFrames: 4 }), RangeError, /minFrames/, 'min > max');
  throwsLike(() => smartNframes(30, 10, { maxFrames: 1.5 }), TypeError, /maxFrames/, 'maxFrames');
  throwsLike(() => sampleFrameIndices(10, 0), RangeError, /nframes/, 'nframes');
});

test('videoPixelBounds follows qwen-vl-utils (per-frame budget from the total, a floor of 1.05 * min)', () => {
  assert.equal(videoPixelBounds(16), { minPixels: 128 * 784, maxPixels: 768 * 784 });
  assert.equal(videoPixelBounds(16, { maxPixels: 196 * 784 }), { minPixels: 128 * 784, maxPixels: 196 * 784 });
  assert.equal(videoPixelBounds(768, { totalPixels: 768 * 784 * 10 }), { minPixels: 128 * 784, maxPixels: Math.trunc(128 * 784 * 1.05) });
  assert.equal(videoPixelBounds(4, { maxPixels: 10 ** 9 }).maxPixels, 768 * 784); // capped as VIDEO_MAX_PIXELS caps it
  throwsLike(() => videoPixelBounds(0), RangeError, /nframes/, 'nframes');
  throwsLike(() => videoPixelBounds(4, { totalPixels: 0 }), RangeError, /totalPixels/, 'totalPixels');
});

// ---- pixels ---------------------------------------------------------------------------------

test('images and videos: resize + normalise + patchify equal the float64 PyTorch reference (rel < 1e-5)', () => {
  const r = ref();
  if (!r) return skip(noPython(['numpy', 'torch']));
  ITEMS.forEach((it, i) => {
    const want = r.items[i]!;
    const p = new QwenProcessor(it.config);
    const what = `item ${i} (${it.kind} ${it.frames.length}x${it.frames[0]!.height}x${it.frames[0]!.width})`;
    let res;
    if (it.kind === 'image') {
      res = p.image(it.frames[0]!, { minPixels: it.minPixels, maxPixels: it.maxPixels });
    } else {
      const e = it.ele ?? {};
      res = p.videoSync(it.frames, {
        fps: e.fps, minPixels: e.min_pixels, maxPixels: e.max_pixels, totalPixels: e.total_pixels, videoFps: it.videoFps,
      });
      assert.ok(Math.abs(res.secondPerGridTs[0]! - want.second_per_grid_t!) < 1e-12, `${what}: secondPerGridTs ${res.secondPerGridTs[0]} vs ${want.second_per_grid_t}`);
    }
    assert.equal([...res.gridThw[0]!], want.grid, `${what}: grid`);
    assert.equal(res.pixelValues.shape, want.shape, `${what}: shape`);
    assert.is(res.pixelValues.dtype, 'f32');
    const g = want.grid;
    assert.equal(res.tokens, [(g[0]! * g[1]! * g[2]!) / it.config.mergeSize ** 2], `${what}: tokens`);
    assertPatches(res.pixelValues.data as Float32Array, want, it.config, what);
    res.pixelValues.dispose();
  });
});

test('images(): items resized separately and concatenated; a Tensor frame equals its bytes', () => {
  const r = ref();
  if (!r) return skip(noPython(['numpy', 'torch']));
  const p = new QwenProcessor();
  const a = ITEMS[0]!.frames[0]!, b = ITEMS[3]!.frames[0]!;
  const res = p.images([a, Tensor.from(b.data, [b.height, b.width, 3])]);
  assert.equal(res.gridThw.map((g) => [...g]), [r.items[0]!.grid, r.items[3]!.grid]);
  const want = new Float64Array(r.items[0]!.data.length + r.items[3]!.data.length);
  want.set(r.items[0]!.data); want.set(r.items[3]!.data, r.items[0]!.data.length);
  const ties = new Uint8Array(want.length);
  ties.set(r.items[0]!.ties); ties.set(r.items[3]!.ties, r.items[0]!.ties.length);
  assertPatches(res.pixelValues.data as Float32Array, { data: want, ties }, DEFAULT_PROCESSOR_CONFIG, 'two images');
  assert.is(res.tokens.length, 2);
  res.pixelValues.dispose();
});

test('resizeBicubic: an unchanged size is the identity; constant images stay constant; a video Tensor equals its frames', () => {
  const img = randomImage(28, 56, 11);
  assert.is(resizeBicubic(img, 28, 56), img);
  const flat = { data: new Uint8Array(17 * 23 * 3).fill(200), height: 17, width: 23 };
  for (const [h, w] of [[5, 7], [40, 90], [17, 90], [3, 23]]) {
    const out = resizeBicubic(flat, h!, w!);
    assert.ok(out.data.every((v) => v === 200), `${h}x${w}`);
  }
  const fr = frames(3, 30, 40, 12);
  const all = new Uint8Array(3 * 30 * 40 * 3);
  fr.forEach((f, t) => all.set(f.data, t * f.data.length));
  const p = new QwenProcessor();
  const t = Tensor.from(all, [3, 30, 40, 3]);
  const a = p.videoSync(t, { minPixels: 784 * 2, maxPixels: 784 * 4 });
  const b = p.videoSync(fr, { minPixels: 784 * 2, maxPixels: 784 * 4 });
  assert.equal(Array.from(a.pixelValues.data as Float32Array), Array.from(b.pixelValues.data as Float32Array));
  assert.equal(a.frameIndices, [0, 1, 2]);
  assert.equal(a.secondPerGridTs, [1]); // 2 / 2 fps
  t.dispose(); a.pixelValues.dispose(); b.pixelValues.dispose();
});

// ---- config ---------------------------------------------------------------------------------

test('config: defaults, preprocessor_config.json keys, fromDir with and without the file', () => {
  // Qwen2VLImageProcessor's defaults, written out (not the constant compared with itself)
  assert.equal({ ...new QwenProcessor().config }, {
    minPixels: 3136, maxPixels: 1003520, patchSize: 14, temporalPatchSize: 2, mergeSize: 2,
    imageMean: [0.48145466, 0.4578275, 0.40821073], imageStd: [0.26862954, 0.26130258, 0.27577711], rescaleFactor: 1 / 255,
  });
  const c = processorConfigFromHF({ min_pixels: 3136, max_pixels: 12845056, patch_size: 14, temporal_patch_size: 2, merge_size: 2,
    image_mean: [0.5, 0.5, 0.5], image_std: [0.5, 0.5, 0.5], rescale_factor: 0.00392156862745098, image_processor_type: 'Qwen2VLImageProcessor' });
  assert.is(c.maxPixels, 12845056);
  assert.equal([...c.imageMean], [0.5, 0.5, 0.5]);
  assert.is(processorConfigFromHF({ size: { shortest_edge: 100, longest_edge: 5000 } }).maxPixels, 5000);
  assert.equal([...processorConfigFromHF({ do_normalize: false }).imageStd], [1, 1, 1]);
  assert.is(processorConfigFromHF({ do_rescale: false }).rescaleFactor, 1);
  const dir = mkdtempSync(path.join(tmpdir(), 'vt-processor-cfg-'));
  try {
    assert.equal(QwenProcessor.fromDir(dir).config, DEFAULT_PROCESSOR_CONFIG);
    writeFileSync(path.join(dir, 'preprocessor_config.json'), JSON.stringify({ max_pixels: 200704, merge_size: 2 }));
    assert.is(QwenProcessor.fromDir(dir).config.maxPixels, 200704);
    writeFileSync(path.join(dir, 'preprocessor_config.json'), '{ not json');
    throwsLike(() => QwenProcessor.fromDir(dir), Error, /not valid JSON/, 'bad json');
  } finally { rmSync(dir, { recursive: true, force: true }); }
  throwsLike(() => QwenProcessor.fromDir(''), TypeError, /dir/, 'dir');
  throwsLike(() => QwenProcessor.fromConfig(null), TypeError, /config/, 'null config');
  throwsLike(() => QwenProcessor.fromConfig({ patch_size: '14' }), TypeError, /patch_size/, 'string patch_size');
  throwsLike(() => QwenProcessor.fromConfig({ image_std: [1, 0, 1] }), RangeError, /image_std\[1\]/, 'zero std');
  throwsLike(() => QwenProcessor.fromConfig({ image_mean: [1, 2] }), TypeError, /image_mean/, 'short mean');
  throwsLike(() => new QwenProcessor({ patchSize: 0 }), RangeError, /patchSize/, 'patchSize');
  throwsLike(() => new QwenProcessor({ minPixels: 10, maxPixels: 5 }), RangeError, /maxPixels/, 'min > max');
  throwsLike(() => new QwenProcessor(5 as never), TypeError, /config/, 'config type');
});

// ---- argument errors --------------------------------------------------------------------------

test('bad frames and options give TypeError/RangeError naming the argument', async () => {
  const p = new QwenProcessor();
  const ok = randomImage(30, 30, 1);
  throwsLike(() => p.image(null as never), TypeError, /frame/, 'null');
  throwsLike(() => p.image(new Uint8Array(12) as never), TypeError, /frame/, 'bare array');
  throwsLike(() => p.image({ data: new Uint8Array(5), height: 2, width: 2 }), RangeError, /12 bytes.*frame\.data/, 'short data');
  throwsLike(() => p.image({ data: [1, 2, 3] as never, height: 1, width: 1 }), TypeError, /frame\.data/, 'data type');
  throwsLike(() => p.image({ data: new Uint8Array(3), height: 0, width: 1 }), RangeError, /frame\.height/, 'height');
  const f32 = Tensor.zeros([4, 4, 3]);
  throwsLike(() => p.image(f32), TypeError, /u8 Tensor/, 'f32 tensor');
  const rgba = Tensor.zeros([4, 4, 4], 'u8');
  throwsLike(() => p.image(rgba), RangeError, /\[H, W, 3\]/, 'rgba tensor');
  f32.dispose(); rgba.dispose();
  throwsLike(() => p.images([]), TypeError, /frames/, 'no frames');
  throwsLike(() => p.images([ok, null as never]), TypeError, /frames\[1\]/, 'second frame');
  throwsLike(() => p.image(ok, { maxPixels: -1 }), RangeError, /maxPixels/, 'maxPixels');
  throwsLike(() => p.image(ok, { minPix: 5 } as never), RangeError, /options\.minPix/, 'unknown option');
  throwsLike(() => p.image(ok, 3 as never), TypeError, /options/, 'options type');
  throwsLike(() => p.image({ data: new Uint8Array(3 * 201), height: 1, width: 201 }), RangeError, /aspect ratio/, 'aspect');
  throwsLike(() => p.videoSync([]), TypeError, /frames/, 'empty video');
  throwsLike(() => p.videoSync([ok, randomImage(30, 31, 2)]), RangeError, /30x30 frame.*for frames\[1\]/, 'sizes differ');
  throwsLike(() => p.videoSync([ok, ok], { minFrames: 4 }), TypeError, /videoFps.*for options\.minFrames/, 'sampling without videoFps');
  throwsLike(() => p.videoSync([ok, ok], { videoFps: 0 }), RangeError, /videoFps/, 'videoFps');
  throwsLike(() => p.videoSync([ok], { videoFps: 10 }), RangeError, /at least 2 frames/, 'too short to sample');
  throwsLike(() => p.videoSync([ok, ok], { fps: Infinity }), RangeError, /fps/, 'fps');
  throwsLike(() => p.videoSync([ok, ok], { totalPixels: -5 }), RangeError, /totalPixels/, 'totalPixels');
  await rejectsLike(p.video(42 as never), TypeError, /frames/, 'video type');
  await rejectsLike(p.video('/nonexistent/clip.mp4', { videoFps: 3 }), TypeError, /videoFps/, 'videoFps with a file');
  await rejectsLike(decodeVideo(7 as never), TypeError, /path/, 'decode path');
  await rejectsLike(decodeVideo('x.mp4', { signal: 1 as never }), TypeError, /signal/, 'signal');
  await rejectsLike(decodeVideo('x.mp4', { indices: [3, 1] }), RangeError, /indices\[1\]/, 'indices order');
  await rejectsLike(decodeVideo('x.mp4', { indices: [1], fps: 2 }), TypeError, /either indices or fps/, 'indices + fps');
  await rejectsLike(decodeVideo('/nonexistent/clip.mp4'), Error, /Cannot read the video file '\/nonexistent\/clip.mp4'/, 'missing file');
});

// ---- ffmpeg -----------------------------------------------------------------------------------

/** Makes a 3 s, 10 fps, 64x48 test video (H.264 with B-frames where libx264 exists, else MPEG-4). */
function makeVideo(dir: string, name: string, extra: string[] = []): string {
  const file = path.join(dir, name);
  const base = ['-v', 'error', '-y', '-f', 'lavfi', '-i', 'testsrc=size=64x48:rate=10:duration=3'];
  let r = spawnSync('ffmpeg', [...base, ...(extra.length ? extra : ['-c:v', 'libx264', '-pix_fmt', 'yuv420p']), file], { timeout: 120_000 });
  if (r.status !== 0 && extra.length === 0) r = spawnSync('ffmpeg', [...base, '-c:v', 'mpeg4', '-q:v', '3', file], { timeout: 120_000 });
  assert.is(r.status, 0, `ffmpeg could not make ${name}: ${r.stderr}`);
  return file;
}

/** ffmpeg's own decode of every frame as rgb24, with the size ffmpeg reports for its output. */
function decodeAll(file: string): RGBImage[] {
  const r = spawnSync('ffmpeg', ['-v', 'info', '-i', file, '-vsync', 'passthrough', '-pix_fmt', 'rgb24', '-f', 'rawvideo', 'pipe:1'], { maxBuffer: 1 << 28, timeout: 120_000 });
  assert.is(r.status, 0, String(r.stderr));
  const m = /Video: rawvideo[^\n]*?, (\d+)x(\d+)/.exec(String(r.stderr));
  assert.ok(m, `no output size in ffmpeg's log: ${r.stderr}`);
  const width = Number(m![1]), height = Number(m![2]);
  const n = width * height * 3, out: RGBImage[] = [];
  for (let o = 0; o + n <= r.stdout.length; o += n) out.push({ data: new Uint8Array(r.stdout.subarray(o, o + n)), height, width });
  return out;
}

const sameBytes = (a: Uint8Array, b: Uint8Array) => a.length === b.length && Buffer.compare(Buffer.from(a), Buffer.from(b)) === 0;

(hasFfmpeg ? test : test.skip)('decodeVideo: the sampled frames of an ffmpeg-made video, byte-equal to a full decode', async () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'vt-video-'));
  try {
    const rotated = path.join(dir, 'rotated.mp4'); // display rotation 90: ffmpeg decodes 48x64 frames
    const made = spawnSync('ffmpeg', ['-v', 'error', '-i', makeVideo(dir, 'src.mp4'), '-c', 'copy', '-metadata:s:v:0', 'rotate=90', rotated], { timeout: 120_000 });
    assert.is(made.status, 0, String(made.stderr));
    for (const [name, extra] of [['clip.mp4', []], ['clip.mkv', ['-c:v', 'ffv1']], ['rotated.mp4', null]] as [string, string[] | null][]) {
      const file = extra ? makeVideo(dir, name, extra) : rotated;
      const all = decodeAll(file);
      assert.is(all.length, 30, `${name}: full decode`);
      const probe = await probeVideo(file);
      assert.equal([probe.width, probe.height, probe.fps, probe.totalFrames], [all[0]!.width, all[0]!.height, 10, 30], name);
      const v = await decodeVideo(file); // 2 fps -> 6 frames
      assert.equal(v.indices, [0, 6, 12, 17, 23, 29], name);
      const { width: W, height: H } = all[0]!;
      if (name === 'rotated.mp4' && probe.rotation !== 0) assert.equal([probe.rotation, W, H], [90, 48, 64], 'rotation applied'); // ffmpeg >= 6 may drop the rotate tag
      assert.equal([v.frames.length, v.width, v.height, v.totalFrames, v.videoFps, v.sampleFps, v.missing], [6, W, H, 30, 10, 2, 0], name);
      v.frames.forEach((f, i) => {
        assert.equal([f.height, f.width], [H, W]);
        assert.ok(sameBytes(f.data, all[v.indices[i]!]!.data), `${name}: frame ${v.indices[i]} differs from the full decode`);
      });
      // explicit indices, with a repeat; and the frames of nframes: 10 streamed through onFrame
      const w = await decodeVideo(file, { indices: [1, 1, 28] });
      assert.equal(w.frames.length, 3);
      w.frames.forEach((f, i) => assert.ok(sameBytes(f.data, all[[1, 1, 28][i]!]!.data), `${name}: index ${i}`));
      const seen: number[] = [];
      const x = await decodeVideo(file, { nframes: 10, onFrame: (f, i) => { seen.push(i); assert.ok(sameBytes(f.data, all[x0[i]!]!.data)); } });
      assert.equal(seen, [...Array(10).keys()]);
      assert.is(x.frames.length, 0);
    }
  } finally { rmSync(dir, { recursive: true, force: true }); }
});
const x0 = sampleFrameIndices(30, 10);

(hasFfmpeg ? test : test.skip)('processor.video(path) equals videoSync of the fully decoded frames with videoFps', async () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'vt-video-'));
  try {
    const file = makeVideo(dir, 'clip.mp4');
    const all = decodeAll(file);
    const p = new QwenProcessor();
    const opts = { fps: 2, minFrames: 4, maxFrames: 16, minPixels: 28 * 28 * 4, maxPixels: 28 * 28 * 6 };
    const a = await p.video(file, opts);
    const b = p.videoSync(all, { ...opts, videoFps: 10 });
    assert.equal(a.gridThw, b.gridThw);
    assert.equal(a.frameIndices, [0, 6, 12, 17, 23, 29]);
    assert.equal(a.secondPerGridTs, [1]);
    assert.is(a.sampleFps, 2);
    assert.equal(a.tokens, b.tokens);
    assert.ok(Buffer.compare(Buffer.from((a.pixelValues.data as Float32Array).buffer.slice(0)), Buffer.from((b.pixelValues.data as Float32Array).buffer.slice(0))) === 0, 'pixel values differ');
    a.pixelValues.dispose(); b.pixelValues.dispose();
  } finally { rmSync(dir, { recursive: true, force: true }); }
});

(hasFfmpeg ? test : test.skip)('decodeVideo: abort kills ffmpeg; missing tools and unreadable files give clear errors', async () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'vt-video-'));
  try {
    const file = makeVideo(dir, 'clip.mp4');
    const pre = new AbortController();
    pre.abort();
    await rejectsLike(decodeVideo(file, { signal: pre.signal }), DOMException, /abort/i, 'aborted before');
    const ac = new AbortController();
    let got = 0;
    await rejectsLike(decodeVideo(file, { signal: ac.signal, nframes: 10, onFrame: () => { got++; ac.abort(); } }), DOMException, /abort/i, 'aborted during');
    assert.is(got, 1);
    await rejectsLike(decodeVideo(file, { ffprobe: 'vt-no-such-ffprobe' }), Error, /ffprobe not found on PATH.*apt install ffmpeg/, 'no ffprobe');
    await rejectsLike(decodeVideo(file, { ffmpeg: 'vt-no-such-ffmpeg' }), Error, /ffmpeg not found on PATH.*pass decoded frames/, 'no ffmpeg');
    const junk = path.join(dir, 'junk.mp4');
    writeFileSync(junk, 'not a video at all');
    await rejectsLike(decodeVideo(junk), Error, /ffprobe failed|No video stream/, 'not a video');
    await rejectsLike(decodeVideo(file, { indices: [30] }), RangeError, /indices.*30/, 'index past the end');
  } finally { rmSync(dir, { recursive: true, force: true }); }
});

test('video(frames) converts one frame per event-loop turn (timers run in between), equals videoSync, and stops on abort', async () => {
  const p = new QwenProcessor();
  const r = rng(4242);
  const frames = Array.from({ length: 6 }, () => ({ data: Uint8Array.from({ length: 90 * 120 * 3 }, () => Math.floor(r() * 256)), height: 90, width: 120 }));
  const opts = { fps: 2, minPixels: 28 * 28 * 4, maxPixels: 28 * 28 * 12 };
  const sync = p.videoSync(frames, opts);
  let ticks = 0;
  const timer = setInterval(() => { ticks++; }, 0);
  const pending = p.video(frames, opts);
  const a = await pending;
  clearInterval(timer);
  assert.ok(ticks >= 2, `timers fired while the frames were converted (${ticks})`);
  assert.equal(Array.from(a.pixelValues.data as Float32Array), Array.from(sync.pixelValues.data as Float32Array));
  assert.equal(a.gridThw, sync.gridThw);
  const ac = new AbortController();
  const aborted = p.video(frames, { ...opts, signal: ac.signal });
  ac.abort(new Error('stop: aborted by the test'));
  await rejectsLike(aborted, Error, /aborted by the test/);
  a.pixelValues.dispose(); sync.pixelValues.dispose();
});

test.run();
