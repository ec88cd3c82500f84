// The synthetic shortcut benchmark: short videos of coloured balls racing in lanes, with
// counterfactual questions ("If the marked ball were removed, which ball would finish first?")
// in the VideoThinker / Video-R1 JSON format, written as real video files with the system's ffmpeg.
//
// Why a race, and these choices: a question is *observational* when the removed ball is not the
// winner (the answer is the winner seen in the video) and *inferential* when it is (the answer is
// the runner-up). Answering what is seen is the shortcut: right on every observational question,
// wrong on every inferential one. The removed ball is named by a per-scene attribute, never by its
// colour: with a colour in the question, "never answer the named colour" is a rule that all data
// supports and no shortcut appears. The winner runs away from the pack (a clear leader), which
// makes the observed outcome easy to read and so a tempting answer.
//
// The attribute is a white mark on the removed ball (default) or its lane number. Measured with the
// tiny preset (docs/reproduction.md): lane questions stayed at chance after 600 SFT steps, even
// "which ball is in lane 2?" alone and with lanes painted in different shades, while "which ball
// is marked?" reached 83% in the same budget. A lane number has to be bound to a place in the
// frame, which the decoder sees only through M-RoPE, and a 16-wide head leaves it almost no height
// or width frequency; the mark is found by what it looks like. For the same reason the default
// colour set is fixed (the first N colours, options always in that order): with a random set and
// shuffled options, even "which ball finishes first?" stayed at chance for 600 steps (matching a
// colour to its letter is a second lookup), with the fixed set it was learnt in under 400. The
// mid-grey background and 6-pixel balls are the other measured change: on a dark background with
// 4-pixel balls the tiny model learnt nothing from the frames in 400 steps.
//
// Frames: 112x56 pixels by default, 8 frames at 2 fps. Both sides are multiples of 28 (patch 14 x
// merge 2), so the processor never resamples: every pixel reaches the model as rendered. Each lane
// is 14 pixels high (one patch row, balls of radius 6); the wide track gives 100 pixels of horizontal resolution for
// the positions that decide the race. The vision tower sees 4 x 8 patches per frame pair, merged to
// 2 x 4 = 8 tokens: 32 video tokens per question for 8 frames. 8 frames at 2 fps are exactly the
// frames VideoThinker's sampling (2 fps, 4 to 16 frames) takes.
//
// Videos are lossless (H.264 RGB at qp 0 in .mp4, or FFV1 in .mkv): the decoded frames equal the
// rendered ones, so colours survive. One ffmpeg process encodes a whole chunk of videos through the
// segment muxer (a keyframe and a cut every `frames` frames): one ffmpeg per video costs about
// 95 ms of start-up each, over 6 minutes for the default 8000 videos on 2 cores; chunked, 17 s.
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, renameSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import { checkInteger, checkNumber, checkOneOf, checkOptions, rangeError, typeError } from '../errors.js';
import { DEFAULT_CHAT_TEMPLATE } from '../index.js';
import { buildPrompt, PROMPT_SUFFIX } from './prompt.js';
import { hash32, NORMAL_TABLE, Rng } from './random.js';
import { writeJsonAtomic, writeTextAtomic } from '../files.js';
import { buildWordTokenizer, writeTokenizerFiles, wordPieces, type WordTokenizer } from './tokenizer.js';

export const COLOURS = Object.freeze(['red', 'green', 'blue', 'yellow', 'purple', 'cyan', 'orange', 'pink'] as const);
export type Colour = (typeof COLOURS)[number];
type RGB = [number, number, number];

/** The RGB of each colour name: the training palette and the variant's other shades of the same names. */
export const PALETTES: Readonly<Record<'standard' | 'variant', Readonly<Record<Colour, RGB>>>> = Object.freeze({
  standard: {
    red: [220, 50, 47], green: [60, 180, 75], blue: [40, 100, 230], yellow: [240, 210, 40],
    purple: [150, 70, 200], cyan: [50, 200, 220], orange: [245, 130, 30], pink: [240, 120, 190],
  },
  variant: {
    red: [165, 25, 35], green: [130, 235, 120], blue: [95, 150, 255], yellow: [190, 165, 25],
    purple: [205, 135, 245], cyan: [25, 140, 150], orange: [200, 90, 15], pink: [255, 175, 225],
  },
});

export type QuestionType = 'observational' | 'inferential' | 'descriptive';

/** The difficulty knobs: what a scene looks like and how the race is drawn. */
export interface SceneOptions {
  /** Balls (= lanes), 4 to 8 (default 4). */
  objects: number;
  /** Frames per video, even, 4 to 64 (default 8). */
  frames: number;
  /** Frame rate of the video file (default 2: VideoThinker's sampling then takes every frame). */
  fps: number;
  /** Frame size in pixels, multiples of 28 (default 112 x 56). */
  width: number;
  height: number;
  /** Ball radius in pixels (default 6). */
  radius: number;
  /** The winner's least lead over the runner-up at the last frame, as a fraction of the track (default 0.25: a runaway leader). */
  leadGap: number;
  /** The least gap between any two of the other balls at the last frame, fraction of the track (default 0.06: 6 px at 112 wide). */
  minGap: number;
  /** The slowest ball's least progress at the last frame, fraction of the track (default 0.2). */
  packLow: number;
  /**
   * Balls start up to this fraction of the track past the start line (default 0: all on the line,
   * so the order at the last frame is the finishing order). With starts apart, who finishes
   * second must be extrapolated from the speeds.
   */
  startSpread: number;
  /**
   * Gaussian pixel noise, standard deviation in u8 levels (default 0). Noise is incompressible:
   * at 4 levels a lossless 8-frame video grows from about 5 KB to 100 KB.
   */
  noise: number;
  /** Gaussian wobble of each ball's drawn x position per frame, in pixels (default 0). */
  jitter: number;
  /** Which RGB shades the colour names get (default 'standard'). */
  palette: 'standard' | 'variant';
  /** Background RGB (default [120, 116, 108], a mid grey: an empty patch is then near zero after the processor's normalisation). */
  background: RGB;
  /**
   * Lanes painted in shades of the background: lane 1 this many levels brighter, the last lane
   * this many darker, the others evenly between (default 0: one shade). A lane is then something
   * the vision tower sees in every patch of it, not only where it lies in the frame.
   */
  laneShade: number;
  /**
   * How a question names the ball it removes: 'mark' (default), a white dot on that ball in every
   * frame ("If the marked ball were removed, ..."), or 'lane', its lane number ("If the ball in
   * lane 2 were removed, ..."). Both are per-scene attributes, never a word that can be an answer.
   * A lane number must be bound to a place in the frame, which the tiny presets do not learn in
   * the reproduction's budget (M-RoPE leaves a 16-wide head almost no height/width frequency);
   * the mark is found by what it looks like.
   */
  nameBy: 'mark' | 'lane';
  /** Radius of the mark in pixels (default 2): smaller is harder to see. */
  markRadius: number;
  /**
   * 'fixed' (default): the first `objects` colours in every scene (random lanes), options always in
   * that order, so an answer letter means one colour; 'random': a random set of colours per scene
   * and options shuffled per question (matching a colour to its letter is then part of the task).
   */
  colourSet: 'fixed' | 'random';
}

export const DEFAULT_SCENE: Readonly<SceneOptions> = Object.freeze({
  objects: 4, frames: 8, fps: 2, width: 112, height: 56, radius: 6, leadGap: 0.25, minGap: 0.06, packLow: 0.2,
  startSpread: 0, noise: 0, jitter: 0, palette: 'standard', background: [120, 116, 108] as RGB, laneShade: 0,
  nameBy: 'mark', markRadius: 2, colourSet: 'fixed',
});

/**
 * The held-out variant of a scene setting: other shades of the same colour names on another
 * background, balls one pixel smaller, and other speeds (a pack that finishes closer to the
 * winner). Options given as `variant` override these.
 */
export function variantScene(base: SceneOptions): SceneOptions {
  return {
    ...base, palette: 'variant', background: [92, 98, 110], radius: Math.max(2, base.radius - 1),
    markRadius: Math.min(base.markRadius, Math.max(0.5, base.radius - 1.5)),
    packLow: Math.min(base.packLow + 0.15, 0.9), leadGap: base.leadGap * 0.7,
  };
}

export interface SynthOptions extends Partial<SceneOptions> {
  /** Output folder (created; it must not exist unless `overwrite`). */
  out: string;
  /** Questions (one video each) per split: train (default 6000), test (1000), test_variant (default = test; 0: none). */
  train?: number;
  test?: number;
  variant?: number;
  /** The seed: the same seed and options give the same bytes of every JSON file (default 1). */
  seed?: number;
  /** Share of inferential among the counterfactual questions of train (default 0.26, the paper's split); test splits are balanced (0.5). */
  inferentialShare?: number;
  /** Share of descriptive control questions in every split (default 0). */
  descriptiveShare?: number;
  /** Overrides of the variant setting (see variantScene). */
  variantOptions?: Partial<SceneOptions>;
  /** 'x264rgb' (H.264 RGB lossless in .mp4, default) or 'ffv1' (.mkv). */
  codec?: 'x264rgb' | 'ffv1';
  /** ffmpeg executable (default 'ffmpeg' on PATH). */
  ffmpeg?: string;
  /** ffmpeg processes at once (default: min(4, CPUs)). */
  concurrency?: number;
  /** Replace an existing output folder. */
  overwrite?: boolean;
  signal?: AbortSignal;
  onProgress?: (p: { split: string; done: number; total: number }) => void;
}

/** One ball, as stored in a row's `scene`. Positions are fractions of the track: 0 the start line, 1 the finish line. */
export interface SceneObject {
  colour: Colour;
  rgb: RGB;
  /** 1 = the top lane. */
  lane: number;
  /** Progress at time 0. */
  start: number;
  /** Track per second. */
  speed: number;
  /** Seconds until it crosses the finish line ((1 - start) / speed). */
  finish_time: number;
  /** Progress at the last frame. */
  end: number;
}

/** A scene as stored in each row: everything needed to re-simulate the race and re-render the video. */
export interface Scene {
  seed: number;
  width: number; height: number; frames: number; fps: number; radius: number;
  noise: number; jitter: number;
  background: RGB;
  /** Lane k's background is background + lane_shade * (1 - 2 (k - 1) / (lanes - 1)) per channel, clamped (0 or absent: one shade). */
  lane_shade?: number;
  /** How questions name the removed ball, and the colour set (see SceneOptions). */
  name_by: 'mark' | 'lane';
  colour_set: 'fixed' | 'random';
  /** The lane of the marked ball (named_by 'mark'; set with the question) and the mark's radius. */
  marked?: number;
  mark_radius?: number;
  /** x (pixels) of the ball centre at progress 0 and 1. */
  start_x: number; finish_x: number;
  /** By lane. */
  objects: SceneObject[];
  /** Colours in finishing order. */
  order: Colour[];
  winner: Colour;
}

export interface SynthQuestion {
  kind: 'counterfactual' | 'winner' | 'second' | 'lane' | 'marked';
  /** How the question names a ball: by the mark in the video or by its lane number. */
  named_by: 'mark' | 'lane';
  /** The lane of the ball the question is about (counterfactual: the removed one; lane, marked: the asked one). */
  lane?: number;
  /** The true answer (a colour). */
  answer: Colour;
  /** The winner seen in the video. */
  observed_winner: Colour;
}

/** A row of train.json / test.json / test_variant.json. */
export interface SynthRow {
  problem_id: number;
  problem: string;
  options: string[];
  solution: string;
  /** A reference reasoning for SFT: `<think>...</think>` (the completion is process + solution). */
  process: string;
  /** The video file, relative to the JSON file's folder (POSIX separators). */
  path: string;
  data_type: 'video';
  problem_type: 'multiple choice';
  question_type: QuestionType;
  data_source: 'synth' | 'synth_variant';
  /** The option letter of the observed winner: what answering the observed outcome gives. */
  shortcut_answer: string;
  /** The package's videoOptions that read this video at its own size and every frame. */
  video_options: { fps: number; minFrames: number; maxFrames: number; minPixels: number; maxPixels: number };
  seed: number;
  scene: Scene;
  question: SynthQuestion;
}

export interface SynthSplitInfo { file: string; count: number; observational: number; inferential: number; descriptive: number }
export interface SynthResult {
  dir: string;
  splits: Record<string, SynthSplitInfo>;
  tokenizer: { file: string; size: number };
  seconds: number;
}

const LETTERS = 'ABCDEFGH';
/** The mark on the ball a question removes (named_by 'mark'). */
const MARK_RGB: RGB = [255, 255, 255];
const SCENE_KEYS: (keyof SceneOptions)[] = ['objects', 'frames', 'fps', 'width', 'height', 'radius', 'leadGap', 'minGap', 'packLow', 'startSpread', 'noise', 'jitter', 'palette', 'background', 'laneShade', 'nameBy', 'markRadius', 'colourSet'];
const SYNTH_KEYS = new Set<string>([...SCENE_KEYS, 'out', 'train', 'test', 'variant', 'seed', 'inferentialShare', 'descriptiveShare', 'variantOptions', 'codec', 'ffmpeg', 'concurrency', 'overwrite', 'signal', 'onProgress']);

/** Checks a full scene setting; `name` prefixes the option names in errors. */
export function checkScene(o: SceneOptions, name = 'options'): SceneOptions {
  const n = (k: string) => `${name}.${k}`;
  checkInteger(n('objects'), o.objects, 4, COLOURS.length);
  checkInteger(n('frames'), o.frames, 4, 64);
  if (o.frames % 2) throw rangeError(n('frames'), 'an even number of frames (the vision tower takes frames in pairs)', o.frames);
  checkNumber(n('fps'), o.fps, 0.1, 60);
  for (const k of ['width', 'height'] as const) {
    checkInteger(n(k), o[k], 28, 1008);
    if (o[k] % 28) throw rangeError(n(k), 'a multiple of 28 (patch 14 x merge 2: the processor then keeps every pixel)', o[k]);
  }
  checkNumber(n('radius'), o.radius, 1, 64);
  const laneHeight = o.height / o.objects;
  if (2 * o.radius + 1 > laneHeight) throw rangeError(n('radius'), `at most ${((laneHeight - 1) / 2).toFixed(1)} (balls fit their ${laneHeight.toFixed(1)}-pixel lanes)`, o.radius);
  if (o.width < 8 * o.radius + 8) throw rangeError(n('width'), `at least ${8 * o.radius + 8} pixels for balls of radius ${o.radius}`, o.width);
  checkNumber(n('leadGap'), o.leadGap, 0, 0.9);
  checkNumber(n('minGap'), o.minGap, 0, 0.5);
  checkNumber(n('packLow'), o.packLow, 0.01, 0.99);
  checkNumber(n('startSpread'), o.startSpread, 0, 0.9);
  if (o.startSpread >= o.packLow) throw rangeError(n('startSpread'), `a number below packLow (${o.packLow}): every ball must move forward`, o.startSpread);
  const room = 1 - o.leadGap - o.packLow;
  if (room < (o.objects - 2) * o.minGap || room < 0) {
    throw rangeError(n('minGap'), `a gap that leaves room for ${o.objects - 1} balls between packLow (${o.packLow}) and 1 - leadGap (${1 - o.leadGap}): at most ${(room / Math.max(1, o.objects - 2)).toFixed(3)}`, o.minGap);
  }
  checkNumber(n('noise'), o.noise, 0, 128);
  checkNumber(n('jitter'), o.jitter, 0, 16);
  checkNumber(n('laneShade'), o.laneShade, 0, 127);
  checkOneOf(n('nameBy'), o.nameBy, ['mark', 'lane']);
  checkNumber(n('markRadius'), o.markRadius, 0.5, 64);
  if (o.nameBy === 'mark' && o.markRadius >= o.radius) throw rangeError(n('markRadius'), `a radius below the balls' (${o.radius}): the mark sits on a ball`, o.markRadius);
  checkOneOf(n('colourSet'), o.colourSet, ['fixed', 'random']);
  checkOneOf(n('palette'), o.palette, ['standard', 'variant']);
  if (!Array.isArray(o.background) || o.background.length !== 3 || o.background.some((v) => !Number.isInteger(v) || v < 0 || v > 255)) {
    throw typeError(n('background'), 'an array of 3 integers in [0, 255] (RGB)', o.background);
  }
  return o;
}

const round6 = (x: number) => Math.round(x * 1e6) / 1e6;

/**
 * A random race (deterministic in `seed`): colours drawn from the palette, placed in random lanes;
 * the winner (random lane) reaches the finish line exactly at the last frame; the others' progress
 * then lies in [packLow, 1 - leadGap], at least minGap apart; starts in [0, startSpread].
 */
export function makeScene(o: SceneOptions, seed: number): Scene {
  const rng = new Rng(seed);
  const N = o.objects;
  const T = (o.frames - 1) / o.fps;
  const colours = o.colourSet === 'fixed' ? rng.shuffle(COLOURS.slice(0, N)) : rng.shuffle([...COLOURS]).slice(0, N);
  const winnerLane = rng.int(N);
  // N - 1 progress values at least minGap apart, uniform over that set: draw in the range shrunk by
  // the gaps, sort, then spread by i * minGap.
  const hi = 1 - o.leadGap, span = hi - o.packLow - (N - 2) * o.minGap;
  const pack = Array.from({ length: N - 1 }, () => o.packLow + span * rng.next()).sort((a, b) => a - b).map((v, i) => v + i * o.minGap);
  rng.shuffle(pack);
  const palette = PALETTES[o.palette];
  const objects: SceneObject[] = [];
  for (let lane = 0, p = 0; lane < N; lane++) {
    const q = lane === winnerLane ? 1 : pack[p++]!;  // fraction of its own remaining track covered by the last frame
    const start = round6(o.startSpread > 0 ? o.startSpread * rng.next() : 0);
    const speed = round6((q * (1 - start)) / T);
    const colour = colours[lane]!;
    objects.push({ colour, rgb: [...palette[colour]] as RGB, lane: lane + 1, start, speed, finish_time: round6((1 - start) / speed), end: round6(start + speed * T) });
  }
  const order = raceOrder(objects);
  const margin = Math.ceil(o.radius) + 2;
  return {
    seed, width: o.width, height: o.height, frames: o.frames, fps: o.fps, radius: o.radius, noise: o.noise, jitter: o.jitter,
    background: [...o.background] as RGB, ...(o.laneShade > 0 ? { lane_shade: o.laneShade } : {}),
    name_by: o.nameBy, colour_set: o.colourSet, ...(o.nameBy === 'mark' ? { mark_radius: o.markRadius } : {}), start_x: margin, finish_x: o.width - 1 - margin, objects, order, winner: order[0]!,
  };
}

/** Colours in finishing order (earliest finish first), without the ball in lane `without` if given. */
export function raceOrder(objects: readonly SceneObject[], without?: number): Colour[] {
  return objects.filter((b) => b.lane !== without).map((b) => ({ c: b.colour, t: (1 - b.start) / b.speed }))
    .sort((a, b) => a.t - b.t).map((x) => x.c);
}

/**
 * The frames of a scene (each height x width x 3 bytes, RGB), from its stored fields only: lane
 * lines, start and finish lines, antialiased balls (4x4 supersampling), then noise. Noise and
 * jitter come from the scene's seed, so re-rendering a row's scene gives the same bytes.
 */
export function renderScene(s: Scene): Uint8Array[] {
  const { width: W, height: H } = s;
  const N = s.objects.length;
  const rng = new Rng(hash32(s.seed, 0x72656e64));
  const bg = s.background;
  const base = new Float32Array(W * H * 3);
  for (let i = 0; i < W * H; i++) { base[3 * i] = bg[0]; base[3 * i + 1] = bg[1]; base[3 * i + 2] = bg[2]; }
  const shade = s.lane_shade ?? 0;
  if (shade > 0) {
    for (let y = 0; y < H; y++) {
      const lane = Math.min(N - 1, Math.floor((y * N) / H));
      const d = shade * (1 - (2 * lane) / (N - 1));
      for (let x = 0; x < W; x++) for (let c = 0; c < 3; c++) base[3 * (y * W + x) + c] = Math.min(255, Math.max(0, bg[c]! + d));
    }
  }
  const paint = (x: number, y: number, rgb: readonly number[], a: number) => {
    const i = 3 * (y * W + x);
    for (let c = 0; c < 3; c++) base[i + c] = base[i + c]! * (1 - a) + rgb[c]! * a;
  };
  const line = bg.map((v) => Math.min(255, v + 28));
  for (let k = 1; k < N; k++) { const y = Math.round((k * H) / N) - 1; for (let x = 0; x < W; x++) paint(x, y, line, 1); }
  for (const [x, a] of [[Math.round(s.start_x), 0.5], [Math.round(s.finish_x), 0.85]] as const) for (let y = 0; y < H; y++) paint(x, y, [235, 235, 235], a);
  const frames: Uint8Array[] = [];
  const r = s.radius, track = s.finish_x - s.start_x;
  // An antialiased disc (4 x 4 supersampling per pixel) blended over img.
  const disc = (img: Float32Array, cx: number, cy: number, rad: number, rgb: readonly number[]) => {
    const r2 = rad * rad;
    for (let y = Math.max(0, Math.floor(cy - rad - 1)); y <= Math.min(H - 1, Math.ceil(cy + rad + 1)); y++) {
      for (let x = Math.max(0, Math.floor(cx - rad - 1)); x <= Math.min(W - 1, Math.ceil(cx + rad + 1)); x++) {
        let cover = 0;
        for (let sy = 0; sy < 4; sy++) for (let sx = 0; sx < 4; sx++) {
          const dx = x + (sx + 0.5) / 4 - 0.5 - cx, dy = y + (sy + 0.5) / 4 - 0.5 - cy;
          if (dx * dx + dy * dy <= r2) cover++;
        }
        if (cover) {
          const i = 3 * (y * W + x), a = cover / 16;
          for (let c = 0; c < 3; c++) img[i + c] = img[i + c]! * (1 - a) + rgb[c]! * a;
        }
      }
    }
  };
  for (let f = 0; f < s.frames; f++) {
    const img = Float32Array.from(base);
    const t = f / s.fps;
    for (const b of s.objects) {
      const cx = s.start_x + track * (b.start + b.speed * t) + (s.jitter > 0 ? s.jitter * rng.normal() : 0);
      const cy = ((b.lane - 0.5) * H) / N - 0.5;
      disc(img, cx, cy, r, b.rgb);
      if (s.marked === b.lane) disc(img, cx, cy, s.mark_radius!, MARK_RGB);
    }
    // A clamped array rounds (half to even) and saturates on assignment.
    const out = new Uint8ClampedArray(W * H * 3);
    if (s.noise > 0) {
      for (let i = 0; i < W * H; i++) {
        const u = rng.u32();
        for (let c = 0; c < 3; c++) out[3 * i + c] = img[3 * i + c]! + s.noise * NORMAL_TABLE[(u >>> (10 * c)) & 1023]!;
      }
    } else {
      out.set(img);
    }
    frames.push(new Uint8Array(out.buffer));
  }
  return frames;
}

// ---------------------------------------------------------------------------------------------
// questions

/** The sentences of the benchmark (questions and reference reasoning), one place for the generator and the vocabulary. */
export const TEXT = Object.freeze({
  counterfactual: (lane: number) => `If the ball in lane ${lane} were removed, which ball would finish first?`,
  counterfactualMarked: () => 'If the marked ball were removed, which ball would finish first?',
  winner: () => 'Which ball finishes first?',
  second: () => 'Which ball finishes second?',
  lane: (lane: number) => `Which ball is in lane ${lane}?`,
  marked: () => 'Which ball is marked?',
  thinkCounterfactual: (lane: number, removed: string, winner: string, second: string, answer: string) =>
    `Lane ${lane} has the ${removed} ball. The ${winner} ball finishes first and the ${second} ball second. Without the ${removed} ball, the ${answer} ball finishes first.`,
  thinkCounterfactualMarked: (removed: string, winner: string, second: string, answer: string) =>
    `The marked ball is the ${removed} ball. The ${winner} ball finishes first and the ${second} ball second. Without the ${removed} ball, the ${answer} ball finishes first.`,
  thinkWinner: (winner: string, second: string) => `The ${winner} ball finishes first and the ${second} ball second.`,
  thinkLane: (lane: number, c: string) => `Lane ${lane} has the ${c} ball.`,
  thinkMarked: (c: string) => `The marked ball is the ${c} ball.`,
});

/**
 * The question of a given type about a scene, with its options and reference reasoning. Under
 * named_by 'mark' it also sets `scene.marked` (the video shows the mark), so call it before
 * rendering the scene.
 */
export function makeQuestion(scene: Scene, type: QuestionType, rng: Rng): Omit<SynthRow, 'problem_id' | 'path' | 'data_source' | 'video_options' | 'seed' | 'scene'> {
  const N = scene.objects.length;
  const winner = scene.order[0]!, second = scene.order[1]!;
  const byMark = scene.name_by === 'mark';
  const named_by = scene.name_by;
  let q: SynthQuestion, problem: string, think: string;
  if (type === 'descriptive') {
    const lane = 1 + rng.int(N);
    const c = scene.objects.find((b) => b.lane === lane)!.colour;
    if (byMark) scene.marked = lane;
    const k = rng.int(3);
    if (k === 0) {
      q = { kind: 'winner', named_by, answer: winner, observed_winner: winner };
      problem = TEXT.winner();
      think = TEXT.thinkWinner(winner, second);
    } else if (k === 1) {
      q = { kind: 'second', named_by, answer: second, observed_winner: winner };
      problem = TEXT.second();
      think = TEXT.thinkWinner(winner, second);
    } else {
      q = { kind: byMark ? 'marked' : 'lane', named_by, lane, answer: c, observed_winner: winner };
      problem = byMark ? TEXT.marked() : TEXT.lane(lane);
      think = byMark ? TEXT.thinkMarked(c) : TEXT.thinkLane(lane, c);
    }
  } else {
    // observational: any ball but the winner is removed; inferential: the winner is
    const lanes = scene.objects.filter((b) => (type === 'inferential') === (b.colour === winner)).map((b) => b.lane);
    const lane = lanes[rng.int(lanes.length)]!;
    const removed = scene.objects.find((b) => b.lane === lane)!.colour;
    const answer = raceOrder(scene.objects, lane)[0]!;
    if (byMark) scene.marked = lane;
    q = { kind: 'counterfactual', named_by, lane, answer, observed_winner: winner };
    problem = byMark ? TEXT.counterfactualMarked() : TEXT.counterfactual(lane);
    think = byMark ? TEXT.thinkCounterfactualMarked(removed, winner, second, answer) : TEXT.thinkCounterfactual(lane, removed, winner, second, answer);
  }
  // fixed colour set: options in palette order (a letter is always the same colour); random: shuffled
  const present = scene.objects.map((b) => b.colour);
  const shown = scene.colour_set === 'fixed' ? COLOURS.filter((c) => present.includes(c)) : rng.shuffle(present);
  const letter = (c: Colour) => LETTERS[shown.indexOf(c)]!;
  return {
    problem, options: shown.map((c, i) => `${LETTERS[i]}. ${c}`), solution: `<answer>${letter(q.answer)}</answer>`,
    process: `<think>${think}</think>`, data_type: 'video', problem_type: 'multiple choice', question_type: type,
    shortcut_answer: letter(winner), question: q,
  };
}

/** The question types of a split: exact counts (rounded), in a seeded random order. */
export function splitTypes(n: number, inferentialShare: number, descriptiveShare: number, rng: Rng): QuestionType[] {
  const nDesc = Math.round(n * descriptiveShare);
  const nInf = Math.round((n - nDesc) * inferentialShare);
  const types: QuestionType[] = [
    ...new Array<QuestionType>(nInf).fill('inferential'), ...new Array<QuestionType>(nDesc).fill('descriptive'),
    ...new Array<QuestionType>(n - nInf - nDesc).fill('observational'),
  ];
  return rng.shuffle(types);
}

/**
 * Every text the benchmark can produce under `objects` balls (questions, options, reasoning,
 * answers, the prompt suffix and the default chat turn), independent of the seed: the tokenizer
 * built from it is the same for every generated set with up to that many balls.
 */
export function synthVocabularyTexts(maxObjects: number = COLOURS.length): string[] {
  const texts = ['<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n<|vision_start|><|video_pad|><|vision_end|>',
    '<|im_end|>\n<|im_start|>assistant\n', PROMPT_SUFFIX, '  ' + PROMPT_SUFFIX, 'Options:\n', '?Options:\n', 'Which ball finishes first?', 'Which ball finishes second?',
    ',.:;!?()-\'"', ' , . : ; ! ? ( ) - \' "'];
  // every option letter and digit alone and after a space, so answers like "<answer>B</answer>" or "B, C" are known
  for (const ch of 'ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789') texts.push(ch, ' ' + ch);
  for (const c of COLOURS) texts.push(`A. ${c}\n`, c, TEXT.thinkWinner(c, c));
  texts.push(TEXT.counterfactualMarked(), TEXT.marked());
  for (const c of COLOURS) texts.push(TEXT.thinkCounterfactualMarked(c, c, c, c), TEXT.thinkMarked(c));
  for (let lane = 1; lane <= maxObjects; lane++) {
    texts.push(TEXT.counterfactual(lane), TEXT.lane(lane));
    for (const c of COLOURS) texts.push(TEXT.thinkCounterfactual(lane, c, c, c, c), TEXT.thinkLane(lane, c));
  }
  return texts;
}

// ---------------------------------------------------------------------------------------------
// video files

interface Codec { ext: string; args: (frames: number) => string[] }
// x264: qp 0 is lossless; a keyframe exactly where each video starts (so the segment muxer can cut
// there) and P-frames in between (no B-frames: the cut must not reorder). Measured on a noiseless
// 8-frame video: 5 KB this way, 9 KB all-intra, 30 KB all-intra with 'ultrafast', at about the
// same encoding time (process start-up dominates).
const CODECS: Record<'x264rgb' | 'ffv1', Codec> = {
  x264rgb: { ext: 'mp4', args: (f) => ['-c:v', 'libx264rgb', '-qp', '0', '-preset', 'veryfast', '-bf', '0', '-force_key_frames', `expr:eq(mod(n,${f}),0)`, '-pix_fmt', 'rgb24'] },
  ffv1: { ext: 'mkv', args: () => ['-c:v', 'ffv1', '-g', '1', '-pix_fmt', 'bgr0'] },
};

/**
 * Encodes scenes [first, first + count) of a split as `${dir}/NNNNNN.ext` with one ffmpeg process
 * (segment muxer: every frame a keyframe, a new file every `frames` frames).
 */
async function encodeChunk(dir: string, scenes: Scene[], first: number, codec: Codec, ffmpeg: string, signal: AbortSignal | undefined,
  onVideo: () => void): Promise<void> {
  const s0 = scenes[0]!;
  // A cut after each video; the last one lies past the end and so never opens an empty file.
  const cuts = scenes.map((_, i) => (i + 1) * s0.frames).join(',');
  const args = ['-nostdin', '-v', 'error', '-f', 'rawvideo', '-pix_fmt', 'rgb24', '-s', `${s0.width}x${s0.height}`, '-r', String(s0.fps), '-i', 'pipe:0',
    ...codec.args(s0.frames), '-f', 'segment', '-segment_frames', cuts, '-reset_timestamps', '1',
    '-segment_start_number', String(first), '-segment_format', codec.ext === 'mp4' ? 'mp4' : 'matroska', path.join(dir, `%06d.${codec.ext}`)];
  await new Promise<void>((resolve, reject) => {
    const child = spawn(ffmpeg, args, { stdio: ['pipe', 'ignore', 'pipe'] });
    let stderr = '', failed = false;
    const fail = (e: Error) => { if (!failed) { failed = true; child.kill('SIGKILL'); reject(e); } };
    const onAbort = () => fail(signal!.reason instanceof Error ? signal!.reason : new Error('aborted'));
    signal?.addEventListener('abort', onAbort, { once: true });
    child.stderr.on('data', (d: Buffer) => { if (stderr.length < 8192) stderr += d.toString(); });
    child.on('error', (e: NodeJS.ErrnoException) => fail(e.code === 'ENOENT'
      ? new Error(`ffmpeg not found on PATH${ffmpeg !== 'ffmpeg' ? ` (as '${ffmpeg}')` : ''}: install it (apt install ffmpeg); the benchmark's videos are written with it`)
      : new Error(`ffmpeg could not be started: ${e.message}`, { cause: e })));
    child.stdin.on('error', () => { /* a broken pipe: the exit code and stderr report why */ });
    const write = (buf: Uint8Array) => new Promise<void>((res) => { child.stdin.write(buf, () => res()); });
    child.on('close', (code) => {
      signal?.removeEventListener('abort', onAbort);
      if (failed) return;
      if (code !== 0) fail(new Error(`ffmpeg failed (exit code ${code}) writing videos ${first}..${first + scenes.length - 1} to ${dir}: ${stderr.trim().split('\n').slice(-3).join(' | ') || 'no message'}` +
        (codec.ext === 'mp4' ? ' (does this ffmpeg have libx264? codec: \'ffv1\' needs nothing extra)' : '')));
      else resolve();
    });
    (async () => {
      for (const s of scenes) {
        if (failed) return;
        await write(Buffer.concat(renderScene(s)));
        if (failed) return;
        onVideo();
        // let the other chunks' ffmpeg pipes and the progress callback run between videos
        await new Promise((r) => setImmediate(r));
      }
      child.stdin.end();
    })().catch((e: Error) => fail(e));
  });
}

// ---------------------------------------------------------------------------------------------
// the generator

/** A JSON array with one row per line: a third of the indented size, and a diff shows whole rows. */
function writeRowsAtomic(file: string, rows: readonly unknown[]): void {
  writeTextAtomic(file, rows.length ? '[\n' + rows.map((r) => JSON.stringify(r)).join(',\n') + '\n]\n' : '[]\n');
}

function resolveScene(o: Partial<SceneOptions>, base: SceneOptions, name: string): SceneOptions {
  const r = { ...base };
  for (const k of SCENE_KEYS) if (o[k] !== undefined) (r as Record<string, unknown>)[k] = o[k];
  return checkScene(r, name);
}

/**
 * Generates the benchmark into `out`: train.json, test.json, test_variant.json (rows: SynthRow),
 * their videos under videos/<split>/, the word-level tokenizer (tokenizer.json,
 * tokenizer_config.json, chat_template.json) and synth.json (the options and counts). The folder
 * is built beside `out` and renamed into place when complete.
 */
export async function synth(options: SynthOptions): Promise<SynthResult> {
  if (options === undefined) throw typeError('options', 'an options object (with out)', options);
  const o = checkOptions('options', options);
  for (const k of Object.keys(o)) if (!SYNTH_KEYS.has(k)) throw rangeError(`options.${k}`, `no such option (known: ${[...SYNTH_KEYS].join(', ')})`, (o as unknown as Record<string, unknown>)[k]);
  if (typeof o.out !== 'string' || o.out === '') throw typeError('options.out', 'an output folder path', o.out);
  const counts = {
    train: checkInteger('options.train', o.train ?? 6000, 0, 999999),
    test: checkInteger('options.test', o.test ?? 1000, 0, 999999),
  };
  const nVariant = checkInteger('options.variant', o.variant ?? counts.test, 0, 999999);
  if (counts.train + counts.test + nVariant === 0) throw rangeError('options.train / test / variant', 'at least one question', 0);
  const seed = checkInteger('options.seed', o.seed ?? 1, 0, 2 ** 32 - 1);
  const infShare = checkNumber('options.inferentialShare', o.inferentialShare ?? 0.26, 0, 1);
  const descShare = checkNumber('options.descriptiveShare', o.descriptiveShare ?? 0, 0, 1);
  const codec = CODECS[checkOneOf('options.codec', o.codec ?? 'x264rgb', ['x264rgb', 'ffv1'])];
  const ffmpeg = o.ffmpeg ?? 'ffmpeg';
  if (typeof ffmpeg !== 'string' || ffmpeg === '') throw typeError('options.ffmpeg', 'an executable name or path', ffmpeg);
  const concurrency = checkInteger('options.concurrency', o.concurrency ?? Math.min(4, os.availableParallelism()), 1, 64);
  if (o.overwrite !== undefined && typeof o.overwrite !== 'boolean') throw typeError('options.overwrite', 'a boolean', o.overwrite);
  if (o.signal !== undefined && !(o.signal instanceof AbortSignal)) throw typeError('options.signal', 'an AbortSignal', o.signal);
  if (o.onProgress !== undefined && typeof o.onProgress !== 'function') throw typeError('options.onProgress', 'a function', o.onProgress);
  const scene = resolveScene(o, { ...DEFAULT_SCENE, background: [...DEFAULT_SCENE.background] as RGB }, 'options');
  const vo = checkOptions('options.variantOptions', o.variantOptions);
  for (const k of Object.keys(vo)) if (!(SCENE_KEYS as string[]).includes(k)) throw rangeError(`options.variantOptions.${k}`, `a scene option (${SCENE_KEYS.join(', ')})`, (vo as Record<string, unknown>)[k]);
  const variant = resolveScene(vo, variantScene(scene), 'options.variantOptions');

  const out = path.resolve(o.out);
  if (existsSync(out) && !o.overwrite) throw new Error(`The output folder ${out} exists: remove it or pass overwrite: true (--force)`);
  const t0 = performance.now();
  const tmp = `${out}.tmp-${process.pid}-${Date.now().toString(36)}`;
  mkdirSync(tmp, { recursive: true });
  try {
    const splits: Record<string, SynthSplitInfo> = {};
    const plan = [
      { name: 'train', file: 'train.json', n: counts.train, share: infShare, s: scene, source: 'synth' as const, id: 1 },
      { name: 'test', file: 'test.json', n: counts.test, share: 0.5, s: scene, source: 'synth' as const, id: 2 },
      { name: 'test_variant', file: 'test_variant.json', n: nVariant, share: 0.5, s: variant, source: 'synth_variant' as const, id: 3 },
    ].filter((p) => p.n > 0);
    const tok = buildWordTokenizer(synthVocabularyTexts(Math.max(scene.objects, variant.objects)));
    const known = new Set([...Object.keys((tok.tokenizer.model as { vocab: object }).vocab), ...Object.keys(tok.specialIds)]);
    for (const p of plan) {
      const rng = new Rng(hash32(seed, p.id));
      const types = splitTypes(p.n, p.share, descShare, rng);
      const rows: SynthRow[] = [];
      const scenes: Scene[] = [];
      const videoOptions = { fps: p.s.fps, minFrames: p.s.frames, maxFrames: p.s.frames, minPixels: p.s.width * p.s.height, maxPixels: p.s.width * p.s.height };
      for (let i = 0; i < p.n; i++) {
        const sceneSeed = hash32(seed, p.id, i);
        const sc = makeScene(p.s, sceneSeed);
        const q = makeQuestion(sc, types[i]!, new Rng(hash32(sceneSeed, 0x71)));
        scenes.push(sc);
        const row: SynthRow = {
          problem_id: i, problem: q.problem, options: q.options, solution: q.solution, process: q.process,
          path: `videos/${p.name}/${String(i).padStart(6, '0')}.${codec.ext}`, data_type: 'video', problem_type: 'multiple choice',
          question_type: q.question_type, data_source: p.source, shortcut_answer: q.shortcut_answer, video_options: videoOptions,
          seed: sceneSeed, scene: sc, question: q.question,
        };
        // Every text a trainer feeds the model must be in the vocabulary (an unknown piece would
        // become <unk> and the completion could not be learnt).
        for (const text of [buildPrompt(row), row.process + row.solution]) {
          const bad = wordPieces(text).find((w) => !known.has(w));
          if (bad !== undefined) throw new Error(`internal: '${bad}' of ${p.name} row ${i} is not in the tokenizer's vocabulary`);
        }
        rows.push(row);
      }
      const vdir = path.join(tmp, 'videos', p.name);
      mkdirSync(vdir, { recursive: true });
      let done = 0;
      const tick = () => { done++; o.onProgress?.({ split: p.name, done, total: p.n }); };
      const chunk = Math.min(1000, Math.ceil(p.n / concurrency));
      const jobs: [number, number][] = [];
      for (let s = 0; s < p.n; s += chunk) jobs.push([s, Math.min(p.n, s + chunk)]);
      let next = 0;
      const worker = async () => {
        while (next < jobs.length) {
          o.signal?.throwIfAborted();
          const [a, b] = jobs[next++]!;
          await encodeChunk(vdir, scenes.slice(a, b), a, codec, ffmpeg, o.signal, tick);
        }
      };
      await Promise.all(Array.from({ length: Math.min(concurrency, jobs.length) }, worker));
      const written = new Set(readdirSync(vdir));
      const missing = rows.filter((r) => !written.has(path.posix.basename(r.path)));
      if (missing.length || written.size !== rows.length) {
        throw new Error(`ffmpeg wrote ${written.size} files for ${rows.length} videos of ${p.name} (missing: ${missing.slice(0, 3).map((r) => r.path).join(', ')}${missing.length > 3 ? ', ...' : ''})`);
      }
      writeRowsAtomic(path.join(tmp, p.file), rows);
      const c = (t: QuestionType) => rows.filter((r) => r.question_type === t).length;
      splits[p.name] = { file: p.file, count: rows.length, observational: c('observational'), inferential: c('inferential'), descriptive: c('descriptive') };
    }
    writeTokenizerFiles(tmp, tok, DEFAULT_CHAT_TEMPLATE);
    writeJsonAtomic(path.join(tmp, 'synth.json'), {
      generator: 'videothinker synth', format: 1, seed, codec: codec.ext === 'mp4' ? 'x264rgb' : 'ffv1',
      inferential_share: infShare, descriptive_share: descShare, scene, variant, splits,
      tokenizer: { file: 'tokenizer.json', size: tok.size },
    });
    // Swap the finished folder in; an old one is moved aside first and removed after.
    let old: string | null = null;
    if (existsSync(out)) { old = `${out}.old-${process.pid}-${Date.now().toString(36)}`; renameSync(out, old); }
    renameSync(tmp, out);
    if (old) rmSync(old, { recursive: true, force: true });
    return { dir: out, splits, tokenizer: { file: path.join(out, 'tokenizer.json'), size: tok.size }, seconds: (performance.now() - t0) / 1000 };
  } catch (e) {
    rmSync(tmp, { recursive: true, force: true });
    throw e;
  }
}

export type { WordTokenizer };
