// Supervised fine-tuning: cross-entropy on the assistant's answer tokens only (the prompt and
// its vision tokens masked), computed with the fused LM-head log-probs, through the shared
// training loop. The answer of a row is its reference reasoning (`process`, when it has one)
// followed by its `solution`, then the end-of-turn token: `<think>...</think><answer>B</answer>`.
import { checkInteger, checkNumber, checkOneOf, checkOptions, typeError } from '../errors.js';
import { hash32, Rng } from '../data/random.js';
import { describeBadRows, readDataset, type BadRow, type LoadedRow } from '../data/dataset.js';
import { loadModel } from '../infer/load.js';
import type { QwenModel } from '../infer/model.js';
import type { VideoOptions } from '../inputs/processor.js';
import { linearLogprobsWithGrad } from '../kernels/gather.js';
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
  /**
   * Rows that cannot be used (missing media, an unsupported data_type, malformed: see readDataset;
   * for SFT also an answer longer than maxAnswerTokens): 'skip' (each one reported on stderr by
   * its row / line, and listed in the result's badRows) or 'fail' (a RangeError naming every one
   * before any step). Default 'skip'.
   */
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
  /** Answers (process + solution + the end-of-turn token) longer than this many tokens are bad rows (default 1024). */
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

/** The rows of the question files and every bad one (not yet reported). */
export function readRows(o: DataOptions): { rows: LoadedRow[]; bad: BadRow[]; files: readonly string[]; policy: BadRowPolicy } {
  const files = typeof o.data === 'string' ? [o.data] : o.data;
  if (!Array.isArray(files) || files.length === 0 || files.some((f) => typeof f !== 'string' || f === '')) throw typeError('data', 'a question file path or a non-empty array of them', o.data);
  const policy = checkOneOf('onBadRow', o.onBadRow ?? 'skip', ['skip', 'fail']);
  if (o.filter !== undefined && typeof o.filter !== 'function') throw typeError('filter', 'a function of the row', o.filter);
  const rows: LoadedRow[] = [];
  const bad: BadRow[] = [];
  for (const f of files) {
    const d = readDataset(f, o.videoRoot !== undefined ? { videoRoot: o.videoRoot } : {});
    bad.push(...d.bad);
    for (const r of d.rows) if (!o.filter || o.filter(r.row)) rows.push(r);
  }
  return { rows, bad, files, policy };
}

/**
 * Reports bad rows, naming every one (describeBadRows): a RangeError with policy 'fail', else a
 * message on stderr. Nothing when there is none.
 */
export function reportBadRows(bad: readonly BadRow[], policy: BadRowPolicy): void {
  if (bad.length === 0) return;
  const text = describeBadRows(bad);
  if (policy === 'fail') throw new RangeError(`Expected only usable rows (onBadRow: 'fail') but found ${bad.length} bad row${bad.length === 1 ? '' : 's'}: ${text}`);
  process.stderr.write(`skipping ${bad.length} bad row${bad.length === 1 ? '' : 's'} (onBadRow: 'skip'): ${text}\n`);
}

/** The rows of the question files, with the bad ones reported (or thrown, with policy 'fail'). */
export function loadRows(o: DataOptions, what = 'training'): LoadedRow[] {
  const { rows, bad, files, policy } = readRows(o);
  reportBadRows(bad, policy);
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

/** What trainSft returns: the loop's summary and the rows it left out (empty with none). */
export interface SftResult extends LoopResult {
  /** Every bad row skipped (onBadRow 'skip'), by file, index (and line of a JSON-lines file) and reason. */
  badRows: BadRow[];
}

/**
 * Supervised fine-tuning from code: trains, writes the run folder, returns the loop's summary.
 * Bad rows (see DataOptions.onBadRow) are all found before the first step (the answers' lengths
 * need the model's tokenizer) and reported together.
 */
export async function trainSft(options: SftOptions): Promise<SftResult> {
  const o = checkOptions('options', options);
  const bs = checkInteger('batchSize', o.batchSize ?? 1, 1, 4096);
  const accum = checkInteger('gradAccum', o.gradAccum ?? 1, 1, 1 << 20);
  const epochs = checkNumber('epochs', o.epochs ?? 1, 0, 1e6, { exclusiveMin: true });
  const seed = checkInteger('seed', o.seed ?? 0, 0, 2 ** 32 - 1);
  const maxAnswer = checkInteger('maxAnswerTokens', o.maxAnswerTokens ?? 1024, 1);
  const { rows, bad, files, policy } = readRows(o);
  // Without any usable row there is nothing to tokenize: fail before loading the model.
  if (rows.length === 0) {
    reportBadRows(bad, policy);
    throw new RangeError(`Expected some training rows in ${files.join(', ')} but none is usable`);
  }
  const own = typeof o.model === 'string';
  if (!own && !(o.model && typeof o.model === 'object' && 'forward' in o.model)) throw typeError('model', 'a checkpoint folder or a QwenModel', o.model);
  const model = typeof o.model === 'string' ? await loadModel(o.model, { train: trainConfig(o) }) : o.model;
  const release = () => { if (own) { model.dispose(); (model as QwenModel & { checkpoint?: { dispose(): void } }).checkpoint?.dispose(); } };
  let cache: PromptCache | undefined;
  try {
    const tok = model.tokenizer;
    if (!tok) throw new TypeError('Expected a model with a tokenizer (tokenizer.json in the checkpoint folder)');
    const imEnd = tok.tokenId('<|im_end|>') ?? tok.eosTokenIds[0];
    if (imEnd === undefined) throw new RangeError('Expected an end-of-turn token (<|im_end|>) in the tokenizer');
    // Answers, tokenized once; rows whose answer is too long are bad rows.
    const answers: Int32Array[] = [];
    const usable: LoadedRow[] = [];
    for (const r of rows) {
      const text = (typeof r.row.process === 'string' ? r.row.process : '') + r.row.solution;
      const ids = tok.encode(text, { addSpecialTokens: false });
      if (ids.length + 1 > maxAnswer) {
        bad.push({ file: r.file, index: r.index, ...(r.line !== undefined ? { line: r.line } : {}), reason: 'answerTooLong', detail: `${ids.length + 1} tokens, over maxAnswerTokens ${maxAnswer}` });
        continue;
      }
      const a = new Int32Array(ids.length + 1);
      a.set(ids); a[ids.length] = imEnd;
      answers.push(a);
      usable.push(r);
    }
    // Every bad row of the run at once, in file order (an answer's length is known only now).
    bad.sort((a, b) => (a.file === b.file ? a.index - b.index : files.indexOf(a.file) - files.indexOf(b.file)));
    reportBadRows(bad, policy);
    if (usable.length === 0) throw new RangeError(`Expected some usable training rows but none is left (${bad.length} bad)`);
    const n = usable.length;
    const steps = o.maxSteps !== undefined ? checkInteger('maxSteps', o.maxSteps, 1) : Math.max(1, Math.ceil((epochs * n) / (bs * accum)));
    const prompts = new PromptCache(model, usable, o.videoOptions ? { videoOptions: o.videoOptions } : {});
    cache = prompts;
    const orders = new Map<number, Int32Array>();
    const task = {
      async microStep(step: number, micro: number, micros: number) {
        const idx = Array.from({ length: bs }, (_, j) => rowAt((step * micros + micro) * bs + j, n, seed, orders));
        const got = await prompts.get(idx, o.signal);
        const batch = collate(got, idx.map((i) => answers[i]!));
        const out = await model.forward({
          inputIds: batch.inputIds, attentionMask: batch.attentionMask, logits: 'none', grad: true,
          ...mediaInputs(batch),
        });
        const sc = scoredTokens(batch);
        const h = gatherRows(out.hidden, sc.rows);
        const N = sc.targets.length;
        // The cross-entropy's gradient in the log-probs (-1/N per token) is known before the
        // forward, so the head's forward and backward are one pass (linearLogprobsWithGrad).
        const d = Tensor.from(new Float32Array(N).fill(-1 / (N * micros)));
        const head = model.lmHeadGrad;
        // The first micro-batch of a step writes the head's gradient (cheapest), later ones add.
        const g = await linearLogprobsWithGrad(h, model.lmHead, sc.targets, d, head ? { dWeight: head, accumulate: micro > 0 } : { weightGrad: false });
        let nll = 0;
        for (const v of g.logprobs.data as Float32Array) nll -= v;
        const dh = scatterRows(g.dHidden, sc.rows, out.hidden.shape);
        await model.backward(out, { dHidden: dh });
        for (const t of [h, g.logprobs, g.lse, d, g.dHidden, dh]) t.dispose();
        out.dispose();
        batch.dispose();
        return { loss: nll / N, tokens: batch.lengths.reduce((a, b) => a + b, 0) };
      },
    };
    return { ...(await trainLoop(model, task, { ...o, steps, gradAccum: accum })), badRows: bad };
  } finally {
    cache?.dispose();
    release();
  }
}
