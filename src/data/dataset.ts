// Reading question files in the VideoThinker / Video-R1 format (a JSON array, or JSON lines):
// rows with `problem`, `options`, `solution`, `problem_type`, `data_type` and a media path, either
// `path` (the synthetic benchmark and Video-R1's training data) or `video` (the evaluation
// benchmarks). Where a relative path points: under `videoRoot` when one is given (a benchmark's
// own video folder; its leading '/' is not the file system's root there), else the JSON file's
// folder. Rows that cannot be evaluated are counted by reason and never dropped silently.
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
  /** The JSON file and the row's index in it. */
  file: string;
  index: number;
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

export interface ReadDatasetOptions {
  /** The folder that relative media paths are under (default: the JSON file's folder). */
  videoRoot?: string;
  /** Check that each media file exists, skipping rows whose file is missing (default true). */
  checkFiles?: boolean;
}

function parseRows(file: string): unknown[] {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (e) {
    throw new Error(`Cannot read the question file '${file}': ${(e as Error).message}`, { cause: e });
  }
  const t = text.trimStart();
  try {
    if (t.startsWith('[')) return JSON.parse(text) as unknown[];
    return text.split('\n').filter((l) => l.trim() !== '').map((l) => JSON.parse(l) as unknown);
  } catch (e) {
    throw new RangeError(`Invalid question file '${file}' (expected a JSON array or JSON lines): ${(e as Error).message}`);
  }
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

/** Reads a question file; rows that cannot be evaluated are counted in `skipped`. */
export function readDataset(file: string, opts: ReadDatasetOptions = {}): { rows: LoadedRow[]; skipped: DatasetSkips } {
  if (typeof file !== 'string' || file === '') throw new TypeError(`Expected a question file path for file but received ${typeof file}`);
  if (opts.videoRoot !== undefined && (typeof opts.videoRoot !== 'string' || opts.videoRoot === '')) throw new TypeError('Expected a folder path for videoRoot');
  if (opts.videoRoot !== undefined && !existsSync(opts.videoRoot)) throw new Error(`The video root '${opts.videoRoot}' does not exist`);
  const raw = parseRows(file);
  if (!Array.isArray(raw)) throw new RangeError(`Invalid question file '${file}': expected an array of rows`);
  const check = opts.checkFiles ?? true;
  const skipped: DatasetSkips = { missingMedia: 0, unsupported: 0, invalid: 0, examples: [] };
  const skip = (kind: 'missingMedia' | 'unsupported' | 'invalid', why: string) => {
    skipped[kind]++;
    if (skipped.examples.length < 5) skipped.examples.push(why);
  };
  const rows: LoadedRow[] = [];
  raw.forEach((r, index) => {
    const row = r as DatasetRow;
    if (typeof r !== 'object' || r === null || typeof row.problem !== 'string' || typeof row.solution !== 'string') {
      skip('invalid', `row ${index}: no problem / solution strings`);
      return;
    }
    const file_ = resolveMedia(row, file, opts.videoRoot);
    if (file_ === undefined && row.data_type !== undefined && row.data_type !== 'text') {
      skip('invalid', `row ${index}: data_type '${row.data_type}' but no path / video field`);
      return;
    }
    const type = row.data_type ?? 'video';
    const out: LoadedRow = { row, file, index, source: rowSource(row, file) };
    if (file_ !== undefined) {
      if (type !== 'video' && type !== 'image') { skip('unsupported', `row ${index}: data_type '${type}'`); return; }
      if (check && !existsSync(file_)) { skip('missingMedia', `row ${index}: ${file_}`); return; }
      out.media = { type, file: file_ };
    }
    rows.push(out);
  });
  return { rows, skipped };
}
