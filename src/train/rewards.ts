// Rewards of the RL trainers, as the reference run and Video-R1 define them, plus user functions.
//   format:   1 for `<think>...</think><answer>...</answer>` (src/data/answers.ts), else 0
//   accuracy: by the row's problem_type: multiple choice and multi-select (letters separated by
//             commas; |pred| / |truth| when pred is a subset of truth, else 0: TW-GRPO's partial
//             credit), numerical (equal after rounding to 2 decimals), free-form / OCR (ROUGE-L F1)
// A user reward is `(completion, row, context) => number | null | Promise<...>`; null skips the
// sample (it gets no advantage and no loss).
import { accuracyReward, extractAnswer, formatReward } from '../data/answers.js';
import type { DatasetRow } from '../data/dataset.js';

export interface RewardContext {
  /** The completion's token ids. */
  tokens: readonly number[];
  /** Which of the prompt's completions this is, and how many there are. */
  sample: number;
  numGenerations: number;
  /** The optimizer step (0-based) this completion was generated for. */
  step: number;
  finishReason: 'stop' | 'length';
}

export type RewardFn = (completion: string, row: DatasetRow, context: RewardContext) => number | null | Promise<number | null>;
export type BuiltinReward = 'format' | 'accuracy';
export type Reward = BuiltinReward | RewardFn | { name: string; fn: RewardFn };

/** Longest common subsequence length of two token lists. */
function lcs(a: readonly string[], b: readonly string[]): number {
  const prev = new Array<number>(b.length + 1).fill(0), cur = new Array<number>(b.length + 1).fill(0);
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) cur[j] = a[i - 1] === b[j - 1] ? prev[j - 1]! + 1 : Math.max(prev[j]!, cur[j - 1]!);
    for (let j = 0; j <= b.length; j++) prev[j] = cur[j]!;
  }
  return prev[b.length]!;
}

/** ROUGE-L F1 of two texts over lower-cased word tokens (0 when either is empty). */
export function rougeL(pred: string, ref: string): number {
  const t = (s: string) => s.toLowerCase().split(/\s+/).filter(Boolean);
  const a = t(pred), b = t(ref);
  if (!a.length || !b.length) return 0;
  const l = lcs(a, b);
  if (!l) return 0;
  const p = l / a.length, r = l / b.length;
  return (2 * p * r) / (p + r);
}

/** A number written in an answer (commas as thousands separators allowed), or NaN. */
function parseNumber(s: string): number {
  const m = /-?\d[\d,]*(\.\d+)?|-?\.\d+/.exec(s.replace(/\s/g, ''));
  return m ? Number(m[0].replace(/,/g, '')) : NaN;
}

/** The accuracy reward of a completion for a row, by its problem_type. */
export function accuracyFor(completion: string, row: DatasetRow): number {
  const type = String(row.problem_type ?? 'multiple choice').toLowerCase();
  if (type === 'numerical') {
    const a = parseNumber(extractAnswer(completion)), b = parseNumber(extractAnswer(row.solution));
    return Number.isFinite(a) && Number.isFinite(b) && Math.round(a * 100) === Math.round(b * 100) ? 1 : 0;
  }
  if (type === 'free-form' || type === 'ocr' || type === 'free form') return rougeL(extractAnswer(completion), extractAnswer(row.solution));
  return accuracyReward(completion, row.solution);
}

/** The name a reward is reported under. */
export function rewardName(r: Reward, i: number): string {
  if (typeof r === 'string') return r;
  if (typeof r === 'function') return r.name && r.name !== 'anonymous' ? r.name : `reward${i}`;
  return r.name;
}

/** Evaluates one reward on one completion (builtins synchronously). */
export async function evalReward(r: Reward, completion: string, row: DatasetRow, ctx: RewardContext): Promise<number | null> {
  if (r === 'format') return formatReward(completion);
  if (r === 'accuracy') return accuracyFor(completion, row);
  const fn = typeof r === 'function' ? r : r.fn;
  const v = await fn(completion, row, ctx);
  if (v !== null && (typeof v !== 'number' || !Number.isFinite(v))) {
    throw new TypeError(`Expected a finite number or null from reward '${rewardName(r, 0)}' but received ${String(v)}`);
  }
  return v;
}
