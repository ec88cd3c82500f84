// Supervised fine-tuning: cross-entropy on the assistant's answer tokens only (the prompt and
// its vision tokens masked), computed with the fused LM-head log-probs, through the shared
// training loop. The answer of a row is its reference reasoning (`process`, when it has one)
// followed by its `solution`, then the end-of-turn token: `<think>...</think><answer>B</answer>`.
import { checkInteger, checkNumber, checkOneOf, checkOptions, typeError } from '../errors.js';
import { hash32, Rng } from '../data/random.js';
import { readDataset, type LoadedRow } from '../data/dataset.js';
import { loadModel } from '../infer/load.js';
import type { QwenModel } from '../infer/model.js';
import type { VideoOptions } from '../inputs/processor.js';
import { linearLogprobs, linearLogprobsBackward } from '../kernels/gather.js';
import type { TrainOptions } from '../model/qwen.js';
import { Tensor } from '../tensor.js';
import { collate, mediaInputs, PromptCache } from './examples.js';
import { gatherRows, scatterRows, scoredTokens } from './logprobs.js';
import { trainLoop, type LoopOptions, type LoopResult } from './trainer.js';

/** How a run treats rows it cannot train on. */
export type BadRowPolicy = 'skip' | 'fail';

export interface DataOptions {
  /** Question files (JSON array or JSON lines) in the Video-R1 / VideoThinker format. */
  data: string | readonly string[];
  /** Where relative media paths point (default: each JSON file's folder). */
  videoRoot?: string;
  /** Rows that cannot be used (missing media, malformed, an answer longer than maxAnswerTokens): 'skip' (reported) or 'fail' (default 'skip'). */
  onBadRow?: BadRowPolicy;
  /** Decoding and resizing of the rows' videos (default: each row's video_options, else VideoThinker's). */
  videoOptions?: VideoOptions;
  /** Only rows for which this returns true (e.g. one question type). */
  filter?: (row: LoadedRow['row']) => boolean;
}

export interface SftOptions extends Omit<LoopOptions, 'steps'>, DataOptions {
  /** A checkpoint folder, or a model loaded with `train`. */
  model: string | QwenModel;
  epochs?: number;
  /** Optimizer steps (default: epochs over the data). */
  maxSteps?: number;
  /** Rows per micro-batch (default 1). */
  batchSize?: number;
  /** Answers longer than this (tokens) are bad rows (default 1024). */
  maxAnswerTokens?: number;
  /** LoRA instead of full fine-tuning (rank; alpha default 2 x rank). */
  loraRank?: number;
  loraAlpha?: number;
  /** Freeze the vision tower. */
  freezeVision?: boolean;
  recompute?: 'none' | 'layer';
  /** Seed of the data order (default 0). */
  seed?: number;
}

/** The rows of the question files, with the bad ones reported (or thrown, with policy 'fail'). */
export function loadRows(o: DataOptions, what = 'training'): LoadedRow[] {
  const files = typeof o.data === 'string' ? [o.data] : o.data;
  if (!Array.isArray(files) || files.length === 0 || files.some((f) => typeof f !== 'string' || f === '')) throw typeError('data', 'a question file path or a non-empty array of them', o.data);
  const policy = checkOneOf('onBadRow', o.onBadRow ?? 'skip', ['skip', 'fail']);
  if (o.filter !== undefined && typeof o.filter !== 'function') throw typeError('filter', 'a function of the row', o.filter);
  const rows: LoadedRow[] = [];
  const bad: string[] = [];
  let nbad = 0;
  for (const f of files) {
    const d = readDataset(f, o.videoRoot !== undefined ? { videoRoot: o.videoRoot } : {});
    const n = d.skipped.missingMedia + d.skipped.unsupported + d.skipped.invalid;
    nbad += n;
    if (n) bad.push(`${f}: ${n} bad row(s) (${d.skipped.missingMedia} missing media, ${d.skipped.unsupported} unsupported data_type, ${d.skipped.invalid} malformed), e.g. ${d.skipped.examples.join('; ')}`);
    for (const r of d.rows) if (!o.filter || o.filter(r.row)) rows.push(r);
  }
  if (nbad && policy === 'fail') throw new RangeError(`Expected only usable rows (onBadRow: 'fail') but found ${nbad}: ${bad.join(' | ')}`);
  if (nbad) process.stderr.write(`skipping ${nbad} bad row(s): ${bad.join(' | ')}\n`);
  if (rows.length === 0) throw new RangeError(`Expected some ${what} rows in ${files.join(', ')} but none is usable`);
  return rows;
}

/** The order of rows of one epoch: a permutation drawn from (seed, epoch) only. */
export function epochOrder(n: number, seed: number, epoch: number): Int32Array {
  const a = Array.from({ length: n }, (_, i) => i);
  new Rng(hash32(seed, epoch, 0x5f7)).shuffle(a);
  return Int32Array.from(a);
}

/** Row index of global example g (epochs follow each other, each in its own order). */
export function rowAt(g: number, n: number, seed: number, orders: Map<number, Int32Array>): number {
  const e = Math.floor(g / n);
  let o = orders.get(e);
  if (!o) { o = epochOrder(n, seed, e); orders.set(e, o); if (orders.size > 2) orders.delete(orders.keys().next().value!); }
  return o[g % n]!;
}

/** What a model must be built with for a run's LoRA / freezing options. */
export function trainConfig(o: { loraRank?: number; loraAlpha?: number; freezeVision?: boolean; recompute?: 'none' | 'layer'; seed?: number }): TrainOptions {
  const t: TrainOptions = { recompute: o.recompute ?? 'none' };
  if (o.freezeVision) t.freeze = ['visual.'];
  if (o.loraRank !== undefined) t.lora = { rank: checkInteger('loraRank', o.loraRank, 1, 4096), alpha: o.loraAlpha ?? 2 * o.loraRank, seed: o.seed ?? 0 };
  return t;
}

/** Supervised fine-tuning from code: trains, writes the run folder, returns the loop's summary. */
export async function trainSft(options: SftOptions): Promise<LoopResult> {
  const o = checkOptions('options', options);
  const bs = checkInteger('batchSize', o.batchSize ?? 1, 1, 4096);
  const accum = checkInteger('gradAccum', o.gradAccum ?? 1, 1, 1 << 20);
  const epochs = checkNumber('epochs', o.epochs ?? 1, 0, 1e6, { exclusiveMin: true });
  const seed = checkInteger('seed', o.seed ?? 0, 0, 2 ** 32 - 1);
  const maxAnswer = checkInteger('maxAnswerTokens', o.maxAnswerTokens ?? 1024, 1);
  const rows = loadRows(o);
  const own = typeof o.model === 'string';
  const model = typeof o.model === 'string' ? await loadModel(o.model, { train: trainConfig(o) }) : o.model;
  if (!own && !(model && typeof model === 'object' && 'forward' in model)) throw typeError('model', 'a checkpoint folder or a QwenModel', o.model);
  const tok = model.tokenizer;
  if (!tok) throw new TypeError('Expected a model with a tokenizer (tokenizer.json in the checkpoint folder)');
  const imEnd = tok.tokenId('<|im_end|>') ?? tok.eosTokenIds[0];
  if (imEnd === undefined) throw new RangeError('Expected an end-of-turn token (<|im_end|>) in the tokenizer');
  // Answers, tokenized once; rows whose answer is too long are bad rows.
  const answers: Int32Array[] = [];
  const usable: LoadedRow[] = [];
  const long: string[] = [];
  for (const r of rows) {
    const text = (typeof r.row.process === 'string' ? r.row.process : '') + r.row.solution;
    const ids = tok.encode(text, { addSpecialTokens: false });
    if (ids.length + 1 > maxAnswer) { long.push(`${r.file} row ${r.index} (${ids.length + 1} tokens)`); continue; }
    const a = new Int32Array(ids.length + 1);
    a.set(ids); a[ids.length] = imEnd;
    answers.push(a);
    usable.push(r);
  }
  if (long.length && (o.onBadRow ?? 'skip') === 'fail') throw new RangeError(`Expected answers of at most ${maxAnswer} tokens but ${long.length} are longer: ${long.slice(0, 5).join('; ')}`);
  if (long.length) process.stderr.write(`skipping ${long.length} row(s) with answers over ${maxAnswer} tokens: ${long.slice(0, 5).join('; ')}\n`);
  if (usable.length === 0) throw new RangeError('Expected some usable training rows but none is left');
  const n = usable.length;
  const steps = o.maxSteps !== undefined ? checkInteger('maxSteps', o.maxSteps, 1) : Math.max(1, Math.ceil((epochs * n) / (bs * accum)));
  const cache = new PromptCache(model, usable, o.videoOptions ? { videoOptions: o.videoOptions } : {});
  const orders = new Map<number, Int32Array>();
  const task = {
    async microStep(step: number, micro: number, micros: number) {
      const idx = Array.from({ length: bs }, (_, j) => rowAt((step * micros + micro) * bs + j, n, seed, orders));
      const prompts = await cache.get(idx, o.signal);
      const batch = collate(prompts, idx.map((i) => answers[i]!));
      const out = await model.forward({
        inputIds: batch.inputIds, attentionMask: batch.attentionMask, logits: 'none', grad: true,
        ...mediaInputs(batch),
      });
      const sc = scoredTokens(batch);
      const h = gatherRows(out.hidden, sc.rows);
      const lp = await linearLogprobs(h, model.lmHead, sc.targets);
      const N = sc.targets.length;
      let nll = 0;
      for (const v of lp.logprobs.data as Float32Array) nll -= v;
      const d = Tensor.from(new Float32Array(N).fill(-1 / (N * micros)));
      const head = model.lmHeadGrad;
      // The first micro-batch of a step writes the head's gradient (cheapest), later ones add.
      const g = await linearLogprobsBackward(h, model.lmHead, sc.targets, lp.lse, d, head ? { dWeight: head, accumulate: micro > 0 } : { weightGrad: false });
      const dh = scatterRows(g.dHidden, sc.rows, out.hidden.shape);
      await model.backward(out, { dHidden: dh });
      for (const t of [h, lp.logprobs, lp.lse, d, g.dHidden, dh]) t.dispose();
      out.dispose();
      batch.dispose();
      return { loss: nll / N, tokens: batch.lengths.reduce((a, b) => a + b, 0) };
    },
  };
  try {
    return await trainLoop(model, task, { ...o, steps, gradAccum: accum });
  } finally {
    cache.dispose();
    if (own) { model.dispose(); (model as QwenModel & { checkpoint?: { dispose(): void } }).checkpoint?.dispose(); }
  }
}
