// videothinker train-sft: supervised fine-tuning on question rows.
import { trainSft, type SftOptions } from '../index.js';
import { COMMON_HELP, parse, int } from './args.js';
import { finish, LOOP_FLAGS, LOOP_HELP, loopOptions } from './train.js';

export const summary = 'supervised fine-tuning on the answers of question rows (the warm-up before RL)';
export const help = `Usage: videothinker train-sft --model DIR --data FILE --out DIR [options]

${summary}: cross-entropy on the assistant's answer (the row's
process, if any, then its solution) with the prompt and the video tokens masked. Ctrl-C writes a
checkpoint and stops; --resume continues exactly where the last checkpoint left off.

${LOOP_HELP}
  --max-answer-tokens N  answers (process + solution) longer than N tokens are bad rows (default 1024)
${COMMON_HELP}`;

export async function run(argv: string[]): Promise<number> {
  const a = parse('train-sft', argv, { ...LOOP_FLAGS, 'max-answer-tokens': { type: 'string' } }, 0);
  if (!a) { console.log(help); return 0; }
  const { 'max-answer-tokens': mat, ...rest } = a.values as Record<string, unknown>;
  const o = loopOptions('train-sft', rest as never) as unknown as SftOptions;
  if (mat !== undefined) o.maxAnswerTokens = int('max-answer-tokens', mat as string);
  const r = await trainSft(o);
  return finish(r, o.out);
}
