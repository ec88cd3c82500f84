// Video frame sampling (as qwen-vl-utils' smart_nframes and torch.linspace(...).round()) and
// decoding with the ffmpeg command-line tools: ffprobe reads the stream's size, frame rate and
// frame count; ffmpeg decodes only up to the last sampled frame, keeps the sampled ones with a
// select filter and pipes them out as raw rgb24. Nothing here needs the native addon.
import { spawn } from 'node:child_process';
import { access, constants } from 'node:fs/promises';

import { checkInteger, checkNumber, checkOptions, rangeError, typeError } from '../errors.js';

/** An RGB image: `height * width * 3` bytes, row-major, channels interleaved (HWC). */
export interface RGBImage {
  data: Uint8Array;
  height: number;
  width: number;
}

/** Frame counts are rounded to a multiple of this (qwen-vl-utils FRAME_FACTOR). */
export const FRAME_FACTOR = 2;

/** Sampling defaults of qwen-vl-utils (Qwen2.5-VL): 2 fps, 4 to 768 frames. */
export const VIDEO_SAMPLING_DEFAULTS = Object.freeze({ fps: 2, minFrames: 4, maxFrames: 768 });

/**
 * The most frames one video may be sampled to (85x qwen-vl-utils' 768): a plan of 1e9 frames
 * (nframes: 1e9 on a long video) would build its index list until the heap ran out.
 */
export const MAX_SAMPLED_FRAMES = 65536;

/** VideoThinker's training setting (cdpo.md): 2 fps, 4 to 16 frames, at most 196*28*28 pixels each. */
export const VIDEOTHINKER_VIDEO_OPTIONS = Object.freeze({ fps: 2, minFrames: 4, maxFrames: 16, maxPixels: 196 * 28 * 28 });

export interface SampleOptions {
  /** Frames per second to sample (default 2). Ignored when `nframes` is given. */
  fps?: number;
  /** At least this many frames (default 4; rounded up to a multiple of 2), the video permitting. */
  minFrames?: number;
  /** At most this many frames (default 768; rounded down to a multiple of 2). */
  maxFrames?: number;
  /** Exactly this many frames (rounded half-to-even to a multiple of 2) instead of an fps. */
  nframes?: number;
}

/** Python's round(): halves go to the even neighbour. */
export function roundHalfEven(x: number): number {
  const r = Math.round(x);
  return Math.abs(x % 1) === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

function checkSampleOptions(o: SampleOptions): void {
  if (o.fps !== undefined) checkNumber('fps', o.fps, 0, Infinity, { exclusiveMin: true });
  if (o.fps === Infinity) throw rangeError('fps', 'a finite number > 0', o.fps);
  if (o.minFrames !== undefined) checkInteger('minFrames', o.minFrames, 1, MAX_SAMPLED_FRAMES);
  if (o.maxFrames !== undefined) checkInteger('maxFrames', o.maxFrames, FRAME_FACTOR, MAX_SAMPLED_FRAMES);
  if (o.nframes !== undefined) {
    checkInteger('nframes', o.nframes, 1, MAX_SAMPLED_FRAMES);
    if (o.fps !== undefined) throw typeError('options', 'either fps or nframes, not both', o);
  }
  if (o.minFrames !== undefined && o.maxFrames !== undefined && o.minFrames > o.maxFrames) {
    throw rangeError('minFrames', `an integer <= maxFrames (${o.maxFrames})`, o.minFrames);
  }
}

/**
 * How many frames to sample from a video of `totalFrames` frames at `videoFps` (qwen-vl-utils
 * smart_nframes): totalFrames / videoFps * fps, clamped to [minFrames, maxFrames] and to
 * totalFrames, then rounded down to a multiple of 2; or `nframes` rounded to a multiple of 2.
 * Throws a RangeError when that leaves fewer than 2 frames or more than the video has.
 */
export function smartNframes(totalFrames: number, videoFps: number, opts: SampleOptions = {}): number {
  checkInteger('totalFrames', totalFrames, 1);
  checkNumber('videoFps', videoFps, 0, Infinity, { exclusiveMin: true });
  const o = checkOptions('options', opts);
  checkSampleOptions(o);
  let n: number;
  if (o.nframes !== undefined) {
    n = roundHalfEven(o.nframes / FRAME_FACTOR) * FRAME_FACTOR;
  } else {
    const fps = o.fps ?? VIDEO_SAMPLING_DEFAULTS.fps;
    const minF = Math.ceil((o.minFrames ?? VIDEO_SAMPLING_DEFAULTS.minFrames) / FRAME_FACTOR) * FRAME_FACTOR;
    const maxF = Math.floor(Math.min(o.maxFrames ?? Math.min(VIDEO_SAMPLING_DEFAULTS.maxFrames, totalFrames), MAX_SAMPLED_FRAMES) / FRAME_FACTOR) * FRAME_FACTOR;
    const want = (totalFrames / videoFps) * fps;
    n = Math.floor(Math.min(Math.min(Math.max(want, minF), maxF), totalFrames) / FRAME_FACTOR) * FRAME_FACTOR;
  }
  if (totalFrames < FRAME_FACTOR) throw rangeError('totalFrames', `at least ${FRAME_FACTOR} frames to sample from`, totalFrames);
  if (!(n >= FRAME_FACTOR && n <= totalFrames)) {
    // Only an explicit nframes can get here (fps sampling stays within [2, totalFrames]).
    throw rangeError('nframes', `a count that rounds (to a multiple of ${FRAME_FACTOR}) into [${FRAME_FACTOR}, ${totalFrames}], the video's frames`, o.nframes);
  }
  return n;
}

/**
 * The indices of `nframes` frames spread evenly over [start, end] (default the whole video):
 * torch.linspace(start, end, nframes).round() as qwen-vl-utils computes it (float32 linspace,
 * halves to even), so the same frames are picked.
 */
export function sampleFrameIndices(totalFrames: number, nframes: number, start = 0, end = totalFrames - 1): number[] {
  checkInteger('totalFrames', totalFrames, 1);
  checkInteger('nframes', nframes, 1, MAX_SAMPLED_FRAMES);
  checkInteger('start', start, 0, totalFrames - 1);
  checkInteger('end', end, start, totalFrames - 1);
  const f = Math.fround;
  if (nframes === 1) return [start];
  // ATen's CPU linspace in float32: step = (end - start) / (steps - 1); the first half counts up
  // from start, the second half down from end.
  const s = f(start), e = f(end), step = f(f(e - s) / (nframes - 1));
  const half = Math.floor(nframes / 2);
  const out = new Array<number>(nframes);
  for (let i = 0; i < nframes; i++) {
    const v = i < half ? f(s + f(step * i)) : f(e - f(step * (nframes - 1 - i)));
    out[i] = roundHalfEven(v);
  }
  return out;
}

/** The frames to take from a video (count, indices, the rate they represent). */
export interface FramePlan {
  nframes: number;
  indices: number[];
  /** nframes / totalFrames * videoFps: the rate of the sampled frames. */
  sampleFps: number;
}

/** smartNframes + sampleFrameIndices + the sampled rate, as qwen-vl-utils reads a video. */
export function planFrames(totalFrames: number, videoFps: number, opts: SampleOptions = {}): FramePlan {
  const nframes = smartNframes(totalFrames, videoFps, opts);
  return { nframes, indices: sampleFrameIndices(totalFrames, nframes), sampleFps: (nframes / Math.max(totalFrames, 1e-6)) * videoFps };
}

// ---------------------------------------------------------------------------------------------
// ffprobe / ffmpeg

export interface VideoProbe {
  /** Size of the decoded frames (after the rotation ffmpeg applies by default). */
  width: number;
  height: number;
  /** Average frame rate of the stream. */
  fps: number;
  /** Number of frames (container count, else counted packets, else duration * fps). */
  totalFrames: number;
  /** Seconds (NaN when unknown). */
  duration: number;
  codec: string;
  /** Display rotation in degrees (0, 90, 180, 270). */
  rotation: number;
}

export interface ToolOptions {
  /** Abort the work: the child process is killed and the promise rejects with signal.reason. */
  signal?: AbortSignal;
  /** ffmpeg executable (default 'ffmpeg' on PATH). */
  ffmpeg?: string;
  /** ffprobe executable (default 'ffprobe' on PATH). */
  ffprobe?: string;
}

function checkTools(o: ToolOptions): void {
  if (o.signal !== undefined && !(o.signal instanceof AbortSignal)) throw typeError('signal', 'an AbortSignal', o.signal);
  for (const k of ['ffmpeg', 'ffprobe'] as const) {
    if (o[k] !== undefined && (typeof o[k] !== 'string' || o[k] === '')) throw typeError(k, 'an executable name or path', o[k]);
  }
}

function abortReason(signal: AbortSignal): unknown {
  return signal.reason ?? new DOMException('This operation was aborted', 'AbortError');
}

interface RunResult { stdout: Buffer; stderr: string }

/**
 * Runs `cmd args`; stdout chunks go to `onStdout` when given, else are collected. Rejects with a
 * clear error when the tool is missing, it exits non-zero, or `signal` aborts (the child is killed).
 */
function runTool(cmd: string, tool: 'ffmpeg' | 'ffprobe', args: string[], signal: AbortSignal | undefined,
  onStdout?: (chunk: Buffer) => void): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) { reject(abortReason(signal)); return; }
    let child: ReturnType<typeof spawn>;
    try {
      child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    } catch (e) {
      reject(e);
      return;
    }
    const chunks: Buffer[] = [];
    let stderr = '';
    let settled = false;
    let failure: unknown = null;
    const finish = (err: unknown, value?: RunResult) => {
      if (settled) return;
      settled = true;
      signal?.removeEventListener('abort', onAbort);
      if (err) reject(err); else resolve(value!);
    };
    const onAbort = () => {
      child.kill('SIGKILL');
      finish(abortReason(signal!));
    };
    signal?.addEventListener('abort', onAbort, { once: true });
    child.on('error', (e: NodeJS.ErrnoException) => {
      if (e.code === 'ENOENT') {
        finish(new Error(`${tool} not found on PATH${cmd !== tool ? ` (as '${cmd}')` : ''}: install it (apt install ffmpeg) or pass decoded frames`));
      } else {
        finish(new Error(`${tool} could not be started: ${e.message}`, { cause: e }));
      }
    });
    child.stdout!.on('data', (d: Buffer) => {
      if (settled || failure) return;
      if (!onStdout) { chunks.push(d); return; }
      try { onStdout(d); } catch (e) { failure = e; child.kill('SIGKILL'); }
    });
    child.stderr!.on('data', (d: Buffer) => { if (stderr.length < 65536) stderr += d.toString(); });
    child.on('close', (code, sig) => {
      if (failure) { finish(failure); return; }
      if (code !== 0) {
        const tail = stderr.trim().split('\n').slice(-3).join(' | ');
        finish(new Error(`${tool} failed (${code === null ? `signal ${sig}` : `exit code ${code}`}): ${tail || 'no message'}`));
        return;
      }
      finish(null, { stdout: Buffer.concat(chunks), stderr });
    });
  });
}

async function checkReadable(path: string): Promise<void> {
  try {
    await access(path, constants.R_OK);
  } catch (e) {
    throw new Error(`Cannot read the video file '${path}': ${(e as Error).message}`, { cause: e });
  }
}

function parseRate(s: unknown): number {
  if (typeof s !== 'string') return NaN;
  const [a, b] = s.split('/');
  const n = Number(a), d = b === undefined ? 1 : Number(b);
  return d > 0 && n > 0 ? n / d : NaN;
}

/** Reads the first video stream's size, rate, frame count and rotation with ffprobe. */
export async function probeVideo(path: string, opts: ToolOptions = {}): Promise<VideoProbe> {
  if (typeof path !== 'string' || path === '') throw typeError('path', 'a video file path', path);
  const o = checkOptions('options', opts);
  checkTools(o);
  await checkReadable(path);
  const exe = o.ffprobe ?? 'ffprobe';
  const base = ['-v', 'error', '-select_streams', 'v:0', '-of', 'json'];
  const entries = 'stream=codec_name,width,height,avg_frame_rate,r_frame_rate,nb_frames,duration:stream_tags=rotate:stream_side_data=rotation:format=duration';
  const r = await runTool(exe, 'ffprobe', [...base, '-show_entries', entries, '--', path], o.signal);
  type Stream = { codec_name?: string; width?: number; height?: number; avg_frame_rate?: string; r_frame_rate?: string; nb_frames?: string;
    duration?: string; tags?: { rotate?: string }; side_data_list?: { rotation?: number }[]; nb_read_packets?: string };
  let info: { streams?: Stream[]; format?: { duration?: string } };
  try { info = JSON.parse(r.stdout.toString()); } catch { throw new Error(`ffprobe gave unreadable output for '${path}'`); }
  const st = info.streams?.[0];
  if (!st || !st.width || !st.height) throw new Error(`No video stream found in '${path}'`);
  let fps = parseRate(st.avg_frame_rate);
  if (!Number.isFinite(fps)) fps = parseRate(st.r_frame_rate);
  if (!Number.isFinite(fps)) throw new Error(`ffprobe reports no frame rate for '${path}'`);
  const duration = Number(st.duration ?? info.format?.duration ?? NaN);
  let total = Number(st.nb_frames ?? NaN);
  if (!(Number.isInteger(total) && total > 0)) {
    // No count in the container (e.g. Matroska/WebM): count the packets (demuxing only).
    const c = await runTool(exe, 'ffprobe', [...base, '-count_packets', '-show_entries', 'stream=nb_read_packets', '--', path], o.signal);
    try { total = Number((JSON.parse(c.stdout.toString()) as { streams?: Stream[] }).streams?.[0]?.nb_read_packets ?? NaN); } catch { total = NaN; }
    if (!(Number.isInteger(total) && total > 0) && Number.isFinite(duration)) total = Math.round(duration * fps);
  }
  if (!(Number.isInteger(total) && total > 0)) throw new Error(`Cannot tell how many frames '${path}' has (ffprobe reports none)`);
  const rotRaw = st.side_data_list?.find((s) => typeof s.rotation === 'number')?.rotation ?? Number(st.tags?.rotate ?? 0);
  const rotation = ((Math.round(Number(rotRaw) / 90) * 90) % 360 + 360) % 360;
  const swap = rotation === 90 || rotation === 270;
  return {
    width: swap ? st.height : st.width, height: swap ? st.width : st.height, fps, totalFrames: total, duration,
    codec: st.codec_name ?? 'unknown', rotation,
  };
}

/** What decodeVideo knows before the first frame: the plan and the frame size. */
export interface DecodeStart {
  indices: number[];
  totalFrames: number;
  videoFps: number;
  sampleFps: number;
  width: number;
  height: number;
}

export interface DecodeOptions extends SampleOptions, ToolOptions {
  /** Decode exactly these frame indices (ascending; repeats allowed) instead of sampling by fps. */
  indices?: readonly number[];
  /** Called once after probing, before decoding (e.g. to size buffers for onFrame). */
  onStart?: (info: DecodeStart) => void;
  /**
   * Receives each sampled frame in order (`i` is its position among the sampled frames) instead of
   * the result keeping it: `frames` is then empty, and memory holds one frame at a time. Every
   * decoded frame has its own buffer (a frame sampled twice is passed twice, as one object).
   */
  onFrame?: (frame: RGBImage, i: number) => void;
}

/** The plan (DecodeStart: the index in the video of each sampled frame, the video's average frame
 * rate, the rate the sampled frames represent = nframes / totalFrames * videoFps, the size) and the frames. */
export interface DecodedVideo extends DecodeStart {
  /** The sampled frames (empty when onFrame was given). */
  frames: RGBImage[];
  /**
   * Sampled frames that the stream did not deliver (its real frame count fell short of the
   * container's): each was filled with the last frame decoded. 0 normally.
   */
  missing: number;
}

/**
 * Decodes the frames of the video file `path` that qwen-vl-utils would sample (see smartNframes
 * and sampleFrameIndices; or exactly `indices`) as RGB images, with the ffprobe and ffmpeg
 * command-line tools. Decoding stops after the last sampled frame. Errors: a TypeError/RangeError
 * for a bad argument; an Error naming the tool when ffmpeg/ffprobe is missing or fails, or the
 * file is unreadable; `signal.reason` when aborted (the child is killed).
 */
export async function decodeVideo(path: string, opts: DecodeOptions = {}): Promise<DecodedVideo> {
  if (typeof path !== 'string' || path === '') throw typeError('path', 'a video file path', path);
  const o = checkOptions('options', opts);
  checkTools(o);
  checkSampleOptions(o);
  if (o.onFrame !== undefined && typeof o.onFrame !== 'function') throw typeError('onFrame', 'a function', o.onFrame);
  if (o.onStart !== undefined && typeof o.onStart !== 'function') throw typeError('onStart', 'a function', o.onStart);
  if (o.indices !== undefined) {
    if (!Array.isArray(o.indices) || o.indices.length === 0) throw typeError('indices', 'a non-empty array of frame indices', o.indices);
    if (o.fps !== undefined || o.nframes !== undefined) throw typeError('options', 'either indices or fps/nframes, not both', o);
    o.indices.forEach((v, i) => {
      checkInteger(`indices[${i}]`, v, 0);
      if (i > 0 && v < o.indices![i - 1]!) throw rangeError(`indices[${i}]`, `an index >= ${o.indices![i - 1]} (ascending)`, v);
    });
  }
  const probe = await probeVideo(path, o);
  let indices: number[], sampleFps: number;
  if (o.indices !== undefined) {
    const last = o.indices[o.indices.length - 1]!;
    if (last >= probe.totalFrames) throw rangeError('indices', `frame indices below ${probe.totalFrames} (the video's frame count)`, last);
    indices = o.indices.slice();
    sampleFps = (indices.length / probe.totalFrames) * probe.fps;
  } else {
    const plan = planFrames(probe.totalFrames, probe.fps, o);
    indices = plan.indices;
    sampleFps = plan.sampleFps;
  }
  const { width: W, height: H } = probe;
  o.onStart?.({ indices: indices.slice(), totalFrames: probe.totalFrames, videoFps: probe.fps, sampleFps, width: W, height: H });
  // An index may repeat (given, or a rounding tie): decode each once and pass it at every position.
  const distinct = [...new Set(indices)];
  const frameBytes = W * H * 3;
  const decoded: RGBImage[] = [];
  const frames: RGBImage[] = [];
  let count = 0;
  const emit = (img: RGBImage) => {
    // Map decoded distinct frame -> every sampled position that uses it.
    const idx = distinct[decoded.length]!;
    decoded.push(img);
    while (count < indices.length && indices[count] === idx) {
      if (o.onFrame) o.onFrame(img, count); else frames.push(img);
      count++;
    }
  };
  let cur = new Uint8Array(frameBytes), fill = 0;
  const onStdout = (chunk: Buffer) => {
    let off = 0;
    while (off < chunk.length) {
      // Past the last wanted frame (ffmpeg should have stopped), or aborted: drop the rest.
      if (decoded.length >= distinct.length || o.signal?.aborted) return;
      const n = Math.min(frameBytes - fill, chunk.length - off);
      cur.set(chunk.subarray(off, off + n), fill);
      fill += n; off += n;
      if (fill === frameBytes) {
        emit({ data: cur, height: H, width: W });
        cur = new Uint8Array(frameBytes); fill = 0;
      }
    }
  };
  const select = distinct.map((i) => `eq(n\\,${i})`).join('+');
  const args = ['-nostdin', '-v', 'error', '-i', path, '-map', '0:v:0', '-an', '-sn', '-dn',
    '-vf', `select=${select}`, '-vsync', 'passthrough', '-frames:v', String(distinct.length),
    '-pix_fmt', 'rgb24', '-f', 'rawvideo', 'pipe:1'];
  await runTool(o.ffmpeg ?? 'ffmpeg', 'ffmpeg', args, o.signal, onStdout);
  if (fill !== 0) throw new Error(`ffmpeg gave a partial frame for '${path}' (${fill} of ${frameBytes} bytes): the frame size changed mid-stream?`);
  if (decoded.length === 0) throw new Error(`ffmpeg decoded no frames of '${path}' (wanted frame indices ${indices.slice(0, 8).join(', ')}${indices.length > 8 ? ', ...' : ''})`);
  const missing = indices.length - count;
  const lastFrame = decoded[decoded.length - 1]!;
  while (count < indices.length) {
    if (o.onFrame) o.onFrame(lastFrame, count); else frames.push(lastFrame);
    count++;
  }
  return { frames, indices, totalFrames: probe.totalFrames, videoFps: probe.fps, sampleFps, width: W, height: H, missing };
}

/**
 * Decodes an image file (PNG, JPEG, WebP, ... whatever the system's ffmpeg reads) as one RGB
 * image: the first frame of the file, through decodeVideo.
 */
export async function decodeImage(path: string, opts: ToolOptions = {}): Promise<RGBImage> {
  if (typeof path !== 'string' || path === '') throw typeError('path', 'an image file path', path);
  const o = checkOptions('options', opts);
  const d = await decodeVideo(path, { indices: [0], ...(o.signal ? { signal: o.signal } : {}), ...(o.ffmpeg ? { ffmpeg: o.ffmpeg } : {}), ...(o.ffprobe ? { ffprobe: o.ffprobe } : {}) });
  return d.frames[0]!;
}
