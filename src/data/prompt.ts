// The user turn a question becomes, for training and evaluation alike. VideoThinker's evaluation
// appends the options to the problem ("Options:\n" then one option per line, directly after the
// problem's last character) and its trainer formats "{Question}  Output the thinking process ..."
// (two spaces). The same text here, so a checkpoint sees at evaluation what it saw in training.

/** The reference trainer's instruction (cdpo.md), after the question. */
export const PROMPT_SUFFIX = 'Output the thinking process in <think> </think> and final answer (letters separated by , if multiple) in <answer> </answer> tags.';

/** The fields of a dataset row that make its prompt. */
export interface PromptFields {
  problem: string;
  options?: readonly string[];
}

/**
 * The question text of a row: `problem + "Options:\n" + one option per line` when the row has
 * options, else `problem`; then two spaces and PROMPT_SUFFIX. For example
 * "Which ball finishes first?Options:\nA. red\nB. blue\n  Output the thinking process in ...".
 */
export function buildPrompt(row: PromptFields): string {
  if (row === null || typeof row !== 'object') throw new TypeError(`Expected a row { problem, options } but received ${row === null ? 'null' : typeof row}`);
  if (typeof row.problem !== 'string') throw new TypeError(`Expected a string for row.problem but received ${typeof row.problem}`);
  let q = row.problem;
  if (row.options !== undefined) {
    if (!Array.isArray(row.options) || row.options.some((o) => typeof o !== 'string')) throw new TypeError('Expected an array of strings for row.options');
    if (row.options.length > 0) q += 'Options:\n' + row.options.map((o) => o + '\n').join('');
  }
  return `${q}  ${PROMPT_SUFFIX}`;
}
