// How a completion is scored, as the reference trainer's reward functions score it (cdpo.md; the
// public VideoThinker grpo.py): pure functions on strings, shared by the evaluation and the RL
// rewards so that what is measured is what is trained.
//
// accuracy: the text of the first <answer>...</answer> (or, with no such tag, the whole completion,
// as the reference falls back), trimmed, spaces removed, split at commas into a set of options; the
// same for the solution. A prediction that is a subset of the truth scores |pred| / |truth| (1 for a
// right single choice, partial credit for part of a multi-select answer), anything else 0.
// format: 1 if the trimmed completion has at most one <think> and one <answer> and contains
// <think>...</think> then <answer>...</answer> with only whitespace or '!' after it.

const ANSWER_RE = /<answer>([\s\S]*?)<\/answer>/;
const FORMAT_RE = /<think>[\s\S]*?<\/think>\s*<answer>[\s\S]*?<\/answer>[\s!]*$/;

/** Python's str.strip() (whitespace at both ends). */
const strip = (s: string): string => s.replace(/^\s+|\s+$/g, '');

/** The answer text of a completion or solution: inside the first <answer> tag, else all of it; trimmed. */
export function extractAnswer(text: string): string {
  if (typeof text !== 'string') throw new TypeError(`Expected a string for text but received ${typeof text}`);
  const m = ANSWER_RE.exec(text);
  return strip(m ? m[1]! : text);
}

/** The set of options an answer names: spaces removed, split at commas, each trimmed (e.g. 'A, C' -> {A, C}). */
export function answerSet(answer: string): Set<string> {
  return new Set(answer.replace(/ /g, '').split(',').map(strip));
}

/** The accuracy reward of a completion against a solution (both may carry <answer> tags): in [0, 1]. */
export function accuracyReward(completion: string, solution: string): number {
  const truth = answerSet(extractAnswer(solution));
  const pred = answerSet(extractAnswer(completion));
  for (const p of pred) if (!truth.has(p)) return 0;
  return pred.size / truth.size;
}

/** The format reward: 1 for `<think>...</think><answer>...</answer>` (see the module comment), else 0. */
export function formatReward(completion: string): number {
  if (typeof completion !== 'string') throw new TypeError(`Expected a string for completion but received ${typeof completion}`);
  const count = (tag: string) => completion.split(tag).length - 1;
  if (count('<think>') > 1 || count('<answer>') > 1) return 0;
  return FORMAT_RE.test(strip(completion)) ? 1 : 0;
}

/** Wraps a bare answer as a solution string (`A` -> `<answer>A</answer>`); a tagged one is kept. */
export function asSolution(answer: string): string {
  return ANSWER_RE.test(answer) ? answer : `<answer>${answer}</answer>`;
}
