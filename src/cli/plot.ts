// videothinker plot: training curves of runs as one SVG.
import { plotRuns, writeTextAtomic } from '../index.js';
import { COMMON_HELP, int, parse, UsageError } from './args.js';

export const summary = 'draws runs\' training curves (reward, accuracy per question type, KL to the bias model) into one SVG';
export const help = `Usage: videothinker plot RUN_DIR [RUN_DIR ...] --out curves.svg [--metrics a,b] [--smooth N]

${summary}.

  --out FILE           the SVG to write (required)
  --metrics LIST       metric names of metrics.jsonl (default: reward, accuracy/observational,
                       accuracy/inferential, klBias, loss; those the runs have)
  --labels LIST        one label per run (default: the folders' names)
  --smooth N           moving average over N steps (default 1)
  --title TEXT
${COMMON_HELP}`;

export async function run(argv: string[]): Promise<number> {
  const a = parse('plot', argv, { out: { type: 'string' }, metrics: { type: 'string' }, labels: { type: 'string' }, smooth: { type: 'string' }, title: { type: 'string' } }, 64);
  if (!a) { console.log(help); return 0; }
  if (a.positionals.length === 0) throw new UsageError('at least one run folder is required', 'plot');
  if (!a.values.out) throw new UsageError('--out FILE is required', 'plot');
  const svg = await plotRuns(a.positionals, {
    ...(a.values.metrics ? { metrics: a.values.metrics.split(',') } : {}), ...(a.values.labels ? { labels: a.values.labels.split(',') } : {}),
    ...(a.values.smooth ? { smooth: int('smooth', a.values.smooth)! } : {}), ...(a.values.title ? { title: a.values.title } : {}),
  });
  writeTextAtomic(a.values.out, svg);
  console.log(`wrote ${a.values.out} (${a.positionals.length} run(s))`);
  return 0;
}
