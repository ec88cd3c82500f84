// Evaluation of a model on question files: accuracy overall, per question_type, per problem_type
// and per dataset source, the format rate, and the shortcut rate (inferential questions answered
// with the observed outcome). The model is a parameter typed by what is used (generate, and a
// tokenizer to decode token-only samples), so this module needs nothing from the model's code and
// a test can pass a stub.
//
// Prompt (buildPrompt): problem + "Options:\n" + one option per line, then two spaces and the
// training instruction; one user turn with the video first (the chat template's default system
// turn). Answers are scored by accuracyReward / formatReward (answers.ts), the RL rewards' own
// functions. Greedy by default; with n samples an item's accuracy is the mean of its samples'.
import { checkInteger, checkNumber, checkOptions, typeError } from '../errors.js';
import { accuracyReward, asSolution, extractAnswer, formatReward } from './answers.js';
import { readDataset, type DatasetSkips, type LoadedRow } from './dataset.js';
import { decodeFrameBatch, type BatchSpec, type Frame } from './frames.js';
import { writeJsonAtomic } from '../files.js';
import { buildPrompt } from './prompt.js';

/**
 * Video options for rows that carry none (the real benchmarks): the paper's evaluation setting
 * (cdpo.md: up to 32 frames at 2 fps, at most 200704 = 256*28*28 pixels per frame).
 */
export const EVAL_VIDEO_OPTIONS = Object.freeze({ fps: 2, minFrames: 4, maxFrames: 32, maxPixels: 256 * 28 * 28 });

/** What evaluate() asks of the model for one question. */
export interface EvalRequest {
  prompt: string;
  /** The video file, or its decoded frames (all of them; videoOptions.videoFps says their rate, so they are sampled as the file would be). */
  video?: string | Frame[];
  images?: string[];
  videoOptions?: Record<string, unknown>;
  maxNewTokens: number;
  temperature: number;
  topP?: number;
  n: number;
  seed: number;
  signal?: AbortSignal;
}
/** One generated sample: its text, or its tokens for the model's tokenizer to decode. */
export interface EvalSample { text?: string; tokens?: readonly number[] }
/** The model: anything with generate() (a QwenModel from loadModel is one). */
export interface EvalModel {
  generate(request: EvalRequest): Promise<readonly EvalSample[]>;
  tokenizer?: { decode(ids: ArrayLike<number>): string };
}

export interface EvaluateOptions {
  /** One question file or several (each a dataset source unless its rows name one). */
  data: string | readonly string[];
  /** Folder of the benchmark's videos (relative media paths are under it; default: each JSON file's folder). */
  videoRoot?: string;
  /** Samples per question (default 1). */
  n?: number;
  /** 0 is greedy (default). */
  temperature?: number;
  topP?: number;
  /** Default 256. */
  maxNewTokens?: number;
  /** Sampling seed (default 1); question i uses seed + i. */
  seed?: number;
  /** Evaluate only the first `limit` evaluable questions (in file order). */
  limit?: number;
  /** Video options for every row, over each row's own `video_options` and EVAL_VIDEO_OPTIONS. */
  videoOptions?: Record<string, unknown>;
  /**
   * Videos of the synthetic benchmark (rows with a `scene` giving their size and length) decoded per
   * ffmpeg call, the next batch while the model answers the current one (default 32; 0: the
   * model decodes each file itself). Other rows always pass the file.
   */
  batch?: number;
  signal?: AbortSignal;
  /** Called after each question. */
  onItem?: (done: number, total: number, item: EvalItem) => void;
}

export interface GroupStats {
  /** Questions. */
  count: number;
  /** Mean accuracy reward (fraction in [0, 1]). */
  accuracy: number;
  /** Mean format reward. */
  format: number;
}

export interface EvalItem {
  file: string;
  index: number;
  problem_id?: unknown;
  question_type?: string;
  problem_type?: string;
  source: string;
  solution: string;
  shortcut_answer?: string;
  /** Per sample: the completion, the parsed answer, accuracy and format rewards, whether it gave the shortcut answer. */
  outputs: string[];
  answers: string[];
  rewards: number[];
  formats: number[];
  shortcut?: number[];
  /** Mean of rewards. */
  accuracy: number;
}

export interface EvalReport {
  data: string[];
  settings: { n: number; temperature: number; topP?: number; maxNewTokens: number; seed: number; limit?: number };
  /** Rows read, evaluated, and skipped by reason (never silently). */
  counts: { rows: number; evaluated: number; skipped: Omit<DatasetSkips, 'examples'>; skippedExamples: string[] };
  overall: GroupStats;
  byQuestionType: Record<string, GroupStats>;
  byProblemType: Record<string, GroupStats>;
  bySource: Record<string, GroupStats>;
  /** Inferential questions with a known shortcut answer: how often the model gave it (null when there are none). */
  shortcut: { count: number; rate: number | null };
  items: EvalItem[];
}

function group(items: readonly EvalItem[]): GroupStats {
  const count = items.length;
  const mean = (f: (i: EvalItem) => number) => (count ? items.reduce((a, i) => a + f(i), 0) / count : 0);
  return { count, accuracy: mean((i) => i.accuracy), format: mean((i) => i.formats.reduce((a, b) => a + b, 0) / i.formats.length) };
}

function groupBy(items: readonly EvalItem[], key: (i: EvalItem) => string | undefined): Record<string, GroupStats> {
  const m = new Map<string, EvalItem[]>();
  for (const i of items) {
    const k = key(i) ?? 'unspecified';
    if (!m.has(k)) m.set(k, []);
    m.get(k)!.push(i);
  }
  return Object.fromEntries([...m.keys()].sort().map((k) => [k, group(m.get(k)!)]));
}

/** Scores already generated completions of one row (what evaluate() does per question). */
export function scoreItem(r: LoadedRow, outputs: readonly string[]): EvalItem {
  const row = r.row;
  const solution = asSolution(row.solution);
  const item: EvalItem = {
    file: r.file, index: r.index, source: r.source, solution, outputs: [...outputs],
    answers: outputs.map(extractAnswer), rewards: outputs.map((o) => accuracyReward(o, solution)), formats: outputs.map(formatReward), accuracy: 0,
  };
  if (row.problem_id !== undefined) item.problem_id = row.problem_id;
  if (typeof row.question_type === 'string') item.question_type = row.question_type;
  if (typeof row.problem_type === 'string') item.problem_type = row.problem_type;
  if (typeof row.shortcut_answer === 'string') {
    item.shortcut_answer = row.shortcut_answer;
    item.shortcut = outputs.map((o) => accuracyReward(o, asSolution(row.shortcut_answer!)));
  }
  item.accuracy = item.rewards.reduce((a, b) => a + b, 0) / Math.max(1, item.rewards.length);
  return item;
}

/** The report's numbers from scored items (and the counts of rows read and skipped). */
export function summarize(items: readonly EvalItem[], base: Pick<EvalReport, 'data' | 'settings' | 'counts'>): EvalReport {
  const inf = items.filter((i) => i.question_type === 'inferential' && i.shortcut !== undefined);
  const rate = inf.length ? inf.reduce((a, i) => a + i.shortcut!.reduce((x, y) => x + y, 0) / i.shortcut!.length, 0) / inf.length : null;
  return {
    ...base, overall: group(items),
    byQuestionType: groupBy(items, (i) => i.question_type), byProblemType: groupBy(items, (i) => i.problem_type), bySource: groupBy(items, (i) => i.source),
    shortcut: { count: inf.length, rate }, items: [...items],
  };
}

/**
 * Evaluates `model` on the question files of `opts.data`. Rows whose video is missing (or of an
 * unsupported data_type, or malformed) are skipped and counted in `counts.skipped`.
 */
export async function evaluate(model: EvalModel, opts: EvaluateOptions): Promise<EvalReport> {
  if (model === null || typeof model !== 'object' || typeof (model as EvalModel).generate !== 'function') throw typeError('model', 'a model with a generate() method', model);
  const o = checkOptions('options', opts);
  const files = typeof o.data === 'string' ? [o.data] : o.data;
  if (!Array.isArray(files) || files.length === 0 || files.some((f) => typeof f !== 'string' || f === '')) throw typeError('options.data', 'a question file path or a non-empty array of them', o.data);
  const n = checkInteger('options.n', o.n ?? 1, 1, 1024);
  const temperature = checkNumber('options.temperature', o.temperature ?? 0, 0, 100);
  const maxNewTokens = checkInteger('options.maxNewTokens', o.maxNewTokens ?? 256, 1, 1 << 20);
  const seed = checkInteger('options.seed', o.seed ?? 1, 0, 2 ** 31 - 1);
  if (o.topP !== undefined) checkNumber('options.topP', o.topP, 0, 1, { exclusiveMin: true });
  if (o.limit !== undefined) checkInteger('options.limit', o.limit, 1);
  if (o.videoOptions !== undefined) checkOptions('options.videoOptions', o.videoOptions);
  if (o.onItem !== undefined && typeof o.onItem !== 'function') throw typeError('options.onItem', 'a function', o.onItem);
  if (o.signal !== undefined && !(o.signal instanceof AbortSignal)) throw typeError('options.signal', 'an AbortSignal', o.signal);

  const skipped = { missingMedia: 0, unsupported: 0, invalid: 0 };
  const skippedExamples: string[] = [];
  let rows: LoadedRow[] = [];
  let total = 0;
  for (const f of files) {
    const d = readDataset(f, o.videoRoot !== undefined ? { videoRoot: o.videoRoot } : {});
    total += d.rows.length + d.skipped.missingMedia + d.skipped.unsupported + d.skipped.invalid;
    skipped.missingMedia += d.skipped.missingMedia; skipped.unsupported += d.skipped.unsupported; skipped.invalid += d.skipped.invalid;
    skippedExamples.push(...d.skipped.examples.map((e) => `${f}: ${e}`));
    rows.push(...d.rows);
  }
  if (o.limit !== undefined) rows = rows.slice(0, o.limit);
  const batch = checkInteger('options.batch', o.batch ?? 32, 0, 4096);
  // Batches of consecutive rows; within one, the synthetic rows of one size are decoded together.
  const decodeChunk = async (c: number): Promise<Map<number, Frame[]>> => {
    const out = new Map<number, Frame[]>();
    if (batch === 0) return out;
    const groups = new Map<string, { spec: BatchSpec; idx: number[] }>();
    for (let i = c * batch; i < Math.min(rows.length, (c + 1) * batch); i++) {
      const spec = sceneSpec(rows[i]!);
      if (!spec) continue;
      const key = `${spec.frames}x${spec.width}x${spec.height}`;
      if (!groups.has(key)) groups.set(key, { spec, idx: [] });
      groups.get(key)!.idx.push(i);
    }
    for (const g of groups.values()) {
      try {
        const frames = await decodeFrameBatch(g.idx.map((i) => rows[i]!.media!.file), g.spec, o.signal ? { signal: o.signal } : {});
        g.idx.forEach((i, k) => out.set(i, frames[k]!));
      } catch (e) {
        if (o.signal?.aborted) throw e;
        // a file of another size or a broken one: the model decodes these files one by one (and reports a broken one)
      }
    }
    return out;
  };
  const items: EvalItem[] = [];
  const chunks = Math.ceil(rows.length / Math.max(1, batch || rows.length));
  let pending = rows.length ? decodeChunk(0) : Promise.resolve(new Map<number, Frame[]>());
  for (let c = 0; c < chunks; c++) {
    const decoded = await pending;
    pending = c + 1 < chunks ? decodeChunk(c + 1) : Promise.resolve(new Map());
    pending.catch(() => { /* awaited (and thrown) in the next round */ });
    const end = batch ? Math.min(rows.length, (c + 1) * batch) : rows.length;
    for (let i = batch ? c * batch : 0; i < end; i++) {
      const r = rows[i]!;
      o.signal?.throwIfAborted();
      const req: EvalRequest = { prompt: buildPrompt(r.row), maxNewTokens, temperature, n, seed: seed + i };
      if (o.topP !== undefined) req.topP = o.topP;
      if (o.signal) req.signal = o.signal;
      if (r.media?.type === 'video') {
        const frames = decoded.get(i);
        req.video = frames ?? r.media.file;
        req.videoOptions = { ...(r.row.video_options ?? EVAL_VIDEO_OPTIONS), ...(o.videoOptions ?? {}), ...(frames ? { videoFps: sceneSpec(r)!.fps } : {}) };
      } else if (r.media?.type === 'image') {
        req.images = [r.media.file];
      }
      let samples: readonly EvalSample[];
      try {
        samples = await model.generate(req);
      } catch (e) {
        throw new Error(`The model failed on ${r.file} row ${r.index}: ${(e as Error).message}`, { cause: e });
      }
      if (!Array.isArray(samples) || samples.length === 0) throw typeError('model.generate() result', 'a non-empty array of samples', samples);
      const outputs = samples.map((s, k) => {
        if (typeof s?.text === 'string') return s.text;
        if (s?.tokens && model.tokenizer) return model.tokenizer.decode(s.tokens);
        throw typeError(`sample ${k} of ${r.file} row ${r.index}`, 'a sample with text (or tokens and a model tokenizer)', s);
      });
      const item = scoreItem(r, outputs);
      items.push(item);
      o.onItem?.(items.length, rows.length, item);
    }
  }
  const settings: EvalReport['settings'] = { n, temperature, maxNewTokens, seed };
  if (o.topP !== undefined) settings.topP = o.topP;
  if (o.limit !== undefined) settings.limit = o.limit;
  return summarize(items, { data: [...files], settings, counts: { rows: total, evaluated: items.length, skipped, skippedExamples } });
}

/** The size, length and rate of a synthetic row's video (its `scene`), when it has one. */
export function sceneSpec(r: LoadedRow): (BatchSpec & { fps: number }) | undefined {
  const sc = r.row.scene as { frames?: unknown; width?: unknown; height?: unknown; fps?: unknown } | undefined;
  if (r.media?.type !== 'video' || !sc || typeof sc !== 'object') return undefined;
  const { frames, width, height, fps } = sc;
  if (![frames, width, height].every((v) => Number.isInteger(v) && (v as number) > 0) || typeof fps !== 'number' || !(fps > 0)) return undefined;
  return { frames: frames as number, width: width as number, height: height as number, fps };
}

const pct = (x: number) => `${(100 * x).toFixed(1)}%`;

/** The report as a plain-text table. */
export function formatReport(r: EvalReport): string {
  const lines: string[] = [];
  const sk = r.counts.skipped;
  const nSkip = sk.missingMedia + sk.unsupported + sk.invalid;
  lines.push(`${r.counts.evaluated} of ${r.counts.rows} questions evaluated` +
    (nSkip ? ` (skipped: ${sk.missingMedia} missing video, ${sk.unsupported} unsupported data_type, ${sk.invalid} malformed)` : '') +
    `; ${r.settings.temperature === 0 ? 'greedy' : `temperature ${r.settings.temperature}`}, ${r.settings.n} sample${r.settings.n > 1 ? 's' : ''} each`);
  const row = (name: string, g: GroupStats) => lines.push(`  ${name.padEnd(22)}${String(g.count).padStart(7)}  ${pct(g.accuracy).padStart(8)}  ${pct(g.format).padStart(7)}`);
  lines.push(`  ${''.padEnd(22)}${'n'.padStart(7)}  ${'accuracy'.padStart(8)}  ${'format'.padStart(7)}`);
  row('overall', r.overall);
  for (const [title, g] of [['question_type', r.byQuestionType], ['problem_type', r.byProblemType], ['source', r.bySource]] as const) {
    lines.push(`  ${title}`);
    for (const [k, v] of Object.entries(g)) row('  ' + k, v);
  }
  if (r.shortcut.rate !== null) lines.push(`  shortcut rate: ${pct(r.shortcut.rate)} of ${r.shortcut.count} inferential questions answered with the observed outcome`);
  return lines.join('\n');
}

/** Writes the report as JSON (atomically). */
export function writeReport(file: string, r: EvalReport): void {
  writeJsonAtomic(file, r);
}
