// Evaluating a model on many questions at once: prompts prepared through the training cache (the
// synthetic videos decoded many per ffmpeg call), then `batch` prompts decoded together by the
// rollout engine, scored exactly as evaluate() scores (src/data/evaluate.ts): the same report.
// Greedy decoding gives the same answers as evaluate(); it is just many times faster for the
// small models of the reproduction (one forward per token for the whole batch).
import { checkInteger, checkNumber } from '../errors.js';
import { readDataset, type LoadedRow } from '../data/dataset.js';
import { scoreItem, summarize, type EvalItem, type EvalReport } from '../data/evaluate.js';
import type { QwenModel } from '../infer/model.js';
import { rollout } from '../infer/rollout.js';
import type { VideoOptions } from '../inputs/processor.js';
import { PromptCache, rolloutPrompt } from './examples.js';

export interface BatchEvalOptions {
  /** Question files. */
  data: string | readonly string[];
  /** Prompts decoded together (default 64). */
  batch?: number;
  maxNewTokens?: number;
  /** 0 (default): greedy. */
  temperature?: number;
  n?: number;
  seed?: number;
  limit?: number;
  videoOptions?: VideoOptions;
  signal?: AbortSignal;
}

/** The evaluation report of `model` on the questions of `opts.data` (rows whose media is missing are counted as skipped). */
export async function evaluateBatched(model: QwenModel, opts: BatchEvalOptions): Promise<EvalReport> {
  const files = typeof opts.data === 'string' ? [opts.data] : [...opts.data];
  const batch = checkInteger('batch', opts.batch ?? 64, 1, 4096);
  const maxNewTokens = checkInteger('maxNewTokens', opts.maxNewTokens ?? 96, 1, 1 << 20);
  const temperature = checkNumber('temperature', opts.temperature ?? 0, 0, 100);
  const n = checkInteger('n', opts.n ?? 1, 1, 1024);
  const seed = checkInteger('seed', opts.seed ?? 1, 0, 2 ** 31 - 1);
  let rows: LoadedRow[] = [];
  const skipped = { missingMedia: 0, unsupported: 0, invalid: 0 };
  const skippedExamples: string[] = [];
  let total = 0;
  for (const f of files) {
    const d = readDataset(f);
    total += d.rows.length + d.skipped.missingMedia + d.skipped.unsupported + d.skipped.invalid;
    skipped.missingMedia += d.skipped.missingMedia; skipped.unsupported += d.skipped.unsupported; skipped.invalid += d.skipped.invalid;
    skippedExamples.push(...d.skipped.examples.map((e) => `${f}: ${e}`));
    rows.push(...d.rows);
  }
  if (opts.limit !== undefined) rows = rows.slice(0, checkInteger('limit', opts.limit, 1));
  const stop = new Set(model.tokenizer?.eosTokenIds ?? []);
  const items: EvalItem[] = [];
  for (let b = 0; b < rows.length; b += batch) {
    const part = rows.slice(b, b + batch);
    const cache = new PromptCache(model, part, opts.videoOptions ? { videoOptions: opts.videoOptions } : {});
    try {
      const prompts = await cache.get(part.map((_, i) => i), opts.signal);
      const outs = await rollout(model, prompts.map((p, i) => rolloutPrompt(p, b + i)), { n, maxNewTokens, temperature, topP: 1, topK: 0, seed, stop, ...(opts.signal ? { signal: opts.signal } : {}) });
      part.forEach((r, i) => items.push(scoreItem(r, outs[i]!.map((s) => model.tokenizer!.decode(s.tokens)))));
    } finally { cache.dispose(); }
  }
  return summarize(items, { data: files, settings: { n, temperature, maxNewTokens, seed, ...(opts.limit !== undefined ? { limit: opts.limit } : {}) },
    counts: { rows: total, evaluated: items.length, skipped, skippedExamples } });
}
