// Reading question files in the VideoThinker / Video-R1 format (a JSON array, or JSON lines):
// rows with `problem`, `options`, `solution`, `problem_type`, `data_type` and a media path, either
// `path` (the synthetic benchmark and Video-R1's training data) or `video` (the evaluation
// benchmarks). Where a relative path points: under `videoRoot` when one is given (a benchmark's
// own video folder; its leading '/' is not the file system's root there), else the JSON file's
// folder. Rows that cannot be evaluated are counted by reason and never dropped silently: each one
// is listed in `bad` (file, index, line, reason), and describeBadRows() names every one of them.
// A row is malformed (reason 'invalid') when problem / solution are not strings, when a field the
// format defines has a value of the wrong type (options not an array of strings; path, video,
// data_type, problem_type or process not strings), when a line of a JSON-lines file is not JSON,
// or when a row has no media field and no data_type 'text' (data_type defaults to 'video': a row
// whose video sits under a field of another name would otherwise become a text question without a
// word). Fields the format does not define are kept (reward functions and filters read them).
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';

/** A row as read (extra fields are kept). */
export interface DatasetRow {
  problem: string;
  options?: string[];
  solution: string;
  problem_type?: string;
  question_type?: string;
  data_type?: string;
  data_source?: string;
  path?: string;
  video?: string;
  /** The option letter that answering the observed outcome gives (the synthetic benchmark). */
  shortcut_answer?: string;
  /** The package's videoOptions for this row's video (the synthetic benchmark). */
  video_options?: Record<string, unknown>;
  [k: string]: unknown;
}

export interface LoadedRow {
  row: DatasetRow;
  /** The JSON file and the row's index in it (0-based; for JSON lines, among its non-blank lines). */
  file: string;
  index: number;
  /** Its line (1-based) in a JSON-lines file; absent for a JSON array. */
  line?: number;
  /** The row's dataset source: its data_source when that is a short name, else the file's name. */
  source: string;
  /** The resolved media file (absent for text-only rows). */
  media?: { type: 'video' | 'image'; file: string };
}

export interface DatasetSkips {
  /** Rows whose video / image file does not exist. */
  missingMedia: number;
  /** Rows of a data_type that is not read here (e.g. MVBench's 'frame' folders). */
  unsupported: number;
  /** Rows without a string problem or solution. */
  invalid: number;
  /** A few of the skipped rows, for the message. */
  examples: string[];
}

/** Why a row cannot be used: the three of readDataset, and (for training) an answer over the length limit. */
export type BadRowReason = 'missingMedia' | 'unsupported' | 'invalid' | 'answerTooLong';

/** One row that cannot be used. */
export interface BadRow {
  /** The question file. */
  file: string;
  /** The row's index in the file (0-based; for JSON lines, among its non-blank lines). */
  index: number;
  /** Its line in a JSON-lines file (1-based); absent for a JSON array. */
  line?: number;
  reason: BadRowReason;
  /** What is wrong, e.g. the missing file's path or the malformed field. */
  detail: string;
}

const REASON_TEXT: Record<BadRowReason, string> = {
  missingMedia: 'missing media', unsupported: 'unsupported data_type', invalid: 'malformed', answerTooLong: 'answer over the token limit',
};

/** Sorted integers as ranges: [1, 2, 3, 7, 9, 10] -> '1-3, 7, 9-10'. */
export function formatRanges(ns: readonly number[]): string {
  const out: string[] = [];
  for (let i = 0; i < ns.length;) {
    let j = i;
    while (j + 1 < ns.length && ns[j + 1] === ns[j]! + 1) j++;
    out.push(j === i ? String(ns[i]) : `${ns[i]}-${ns[j]}`);
    i = j + 1;
  }
  return out.join(', ');
}

/**
 * A report of bad rows naming every one: per file and reason, the count, every row (0-based
 * indices of a JSON array, 1-based lines of a JSON-lines file, as ranges) and the details of the
 * first `examples` of them. For example
 * "q.json: 9 bad rows: 7 missing media (rows 1, 3-8; e.g. row 1: /data/v/1.mp4), 2 malformed (rows 0, 12; ...)".
 */
export function describeBadRows(bad: readonly BadRow[], examples = 3): string {
  const byFile = new Map<string, BadRow[]>();
  for (const b of bad) {
    let l = byFile.get(b.file);
    if (!l) byFile.set(b.file, l = []);
    l.push(b);
  }
  const parts: string[] = [];
  for (const [file, rows] of byFile) {
    const reasons: string[] = [];
    for (const reason of Object.keys(REASON_TEXT) as BadRowReason[]) {
      const r = rows.filter((b) => b.reason === reason);
      if (r.length === 0) continue;
      const lines = r.every((b) => b.line !== undefined);
      const where = (b: BadRow) => (lines ? `line ${b.line}` : `row ${b.index}`);
      const ns = [...new Set(r.map((b) => (lines ? b.line! : b.index)))].sort((a, b) => a - b);
      const eg = r.slice(0, examples).map((b) => `${where(b)}: ${b.detail}`).join('; ');
      reasons.push(`${r.length} ${REASON_TEXT[reason]} (${lines ? 'lines' : 'rows'} ${formatRanges(ns)}; e.g. ${eg})`);
    }
    parts.push(`${file}: ${rows.length} bad row${rows.length === 1 ? '' : 's'}: ${reasons.join(', ')}`);
  }
  return parts.join(' | ');
}

export interface ReadDatasetOptions {
  /** The folder that relative media paths are under (default: the JSON file's folder). */
  videoRoot?: string;
  /** Check that each media file exists, skipping rows whose file is missing (default true). */
  checkFiles?: boolean;
}

/** A file's rows; for JSON lines also each row's line (1-based), and the lines that are not JSON as errors. */
function parseRows(file: string): { raw: unknown[]; lines?: number[]; errors: Map<number, string> } {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (e) {
    throw new Error(`Cannot read the question file '${file}': ${(e as Error).message}`, { cause: e });
  }
  const t = text.trimStart();
  if (t.startsWith('[')) {
    try {
      return { raw: JSON.parse(text) as unknown[], errors: new Map() };
    } catch (e) {
      throw new RangeError(`Invalid question file '${file}' (expected a JSON array or JSON lines): ${(e as Error).message}`);
    }
  }
  // JSON lines: a line that is not JSON is one bad row (by its line), not the whole file.
  const raw: unknown[] = [], lines: number[] = [], errors = new Map<number, string>();
  text.split('\n').forEach((l, i) => {
    if (l.trim() === '') return;
    try {
      raw.push(JSON.parse(l) as unknown);
    } catch (e) {
      errors.set(raw.length, `not JSON (${(e as Error).message})`);
      raw.push(undefined);
    }
    lines.push(i + 1);
  });
  if (raw.length > 0 && errors.size === raw.length) {
    throw new RangeError(`Invalid question file '${file}' (expected a JSON array or JSON lines): line ${lines[0]}: ${errors.get(0)}`);
  }
  return { raw, lines, errors };
}

/** What is malformed in a row (see the module comment), or undefined. */
function malformed(r: unknown): string | undefined {
  if (typeof r !== 'object' || r === null || Array.isArray(r)) return `not an object (${r === null ? 'null' : Array.isArray(r) ? 'an array' : typeof r})`;
  const row = r as Record<string, unknown>;
  if (typeof row.problem !== 'string' || typeof row.solution !== 'string') return 'no problem / solution strings';
  if (row.options !== undefined && (!Array.isArray(row.options) || row.options.some((o) => typeof o !== 'string'))) return 'options is not an array of strings';
  for (const k of ['path', 'video', 'data_type', 'problem_type', 'process']) {
    if (row[k] !== undefined && typeof row[k] !== 'string') return `${k} is not a string (${row[k] === null ? 'null' : Array.isArray(row[k]) ? 'an array' : typeof row[k]})`;
  }
  return undefined;
}

/** The dataset source of a row: a short data_source names it (a URL does not: MMVU puts each video's page there). */
export function rowSource(row: { data_source?: unknown }, file: string): string {
  const ds = row.data_source;
  if (typeof ds === 'string' && ds !== '' && !ds.includes('://') && ds.length <= 64) return ds;
  return path.basename(file).replace(/\.(json|jsonl)$/i, '');
}

/** The media file of a row (see the module comment), or undefined for a row without one. */
export function resolveMedia(row: { path?: unknown; video?: unknown }, jsonFile: string, videoRoot?: string): string | undefined {
  const p = typeof row.path === 'string' && row.path !== '' ? row.path : typeof row.video === 'string' && row.video !== '' ? row.video : undefined;
  if (p === undefined) return undefined;
  return videoRoot !== undefined ? path.join(videoRoot, p) : path.resolve(path.dirname(jsonFile), p);
}

/** Reads a question file; rows that cannot be evaluated are counted in `skipped` and each listed in `bad`. */
export function readDataset(file: string, opts: ReadDatasetOptions = {}): { rows: LoadedRow[]; skipped: DatasetSkips; bad: BadRow[] } {
  if (typeof file !== 'string' || file === '') throw new TypeError(`Expected a question file path for file but received ${typeof file}`);
  if (opts.videoRoot !== undefined && (typeof opts.videoRoot !== 'string' || opts.videoRoot === '')) throw new TypeError('Expected a folder path for videoRoot');
  if (opts.videoRoot !== undefined && !existsSync(opts.videoRoot)) throw new Error(`The video root '${opts.videoRoot}' does not exist`);
  const { raw, lines, errors } = parseRows(file);
  if (!Array.isArray(raw)) throw new RangeError(`Invalid question file '${file}': expected an array of rows`);
  const check = opts.checkFiles ?? true;
  const skipped: DatasetSkips = { missingMedia: 0, unsupported: 0, invalid: 0, examples: [] };
  const bad: BadRow[] = [];
  let index = 0;
  const skip = (kind: 'missingMedia' | 'unsupported' | 'invalid', detail: string) => {
    skipped[kind]++;
    const line = lines?.[index];
    if (skipped.examples.length < 5) skipped.examples.push(`${line !== undefined ? `line ${line}` : `row ${index}`}: ${detail}`);
    bad.push({ file, index, ...(line !== undefined ? { line } : {}), reason: kind, detail });
  };
  const rows: LoadedRow[] = [];
  for (; index < raw.length; index++) {
    const r = raw[index];
    const why = errors.get(index) ?? malformed(r);
    if (why !== undefined) { skip('invalid', why); continue; }
    const row = r as DatasetRow;
    const file_ = resolveMedia(row, file, opts.videoRoot);
    if (file_ === undefined && row.data_type !== 'text') {
      skip('invalid', row.data_type !== undefined
        ? `data_type '${row.data_type}' but no path / video field`
        : `no path / video field and no data_type 'text' (its fields: ${Object.keys(row).join(', ')})`);
      continue;
    }
    const type = row.data_type ?? 'video';
    const out: LoadedRow = { row, file, index, source: rowSource(row, file) };
    if (lines) out.line = lines[index]!;
    if (file_ !== undefined) {
      if (type !== 'video' && type !== 'image') { skip('unsupported', `data_type '${type}'`); continue; }
      if (check && !existsSync(file_)) { skip('missingMedia', file_); continue; }
      out.media = { type, file: file_ };
    }
    rows.push(out);
  }
  return { rows, skipped, bad };
}
