// videothinker eval: accuracy of a checkpoint on question files, per question type, problem type
// and source, and the shortcut rate.
import { evaluate, formatReport, loadModel, writeReport, type EvaluateOptions } from '../index.js';
import { COMMON_HELP, int, num, parse, UsageError } from './args.js';

export const summary = 'evaluates a checkpoint folder on question files (accuracy per type and source, shortcut rate)';
export const help = `Usage: videothinker eval MODEL_DIR --data FILE [--data FILE ...] [--out results.json] [options]

${summary}.
Each question becomes one user turn: the video, then problem + "Options:\\n" + one option per line +
"  Output the thinking process in <think> </think> and final answer (letters separated by , if
multiple) in <answer> </answer> tags." Answers are scored as the RL rewards score them. Rows whose
video is missing are skipped and counted.

  --data FILE          a question file (JSON array or JSON lines; repeatable); relative video paths are
                       under the file's folder, or under --video-root
  --video-root DIR     the benchmark's video folder (e.g. for ../shared/data/benchmarks/eval_mmvu.json)
  --out FILE           write the report (and every answer) as JSON
  --n N                samples per question (default 1)    --temperature T   default 0 (greedy)
  --top-p P            nucleus sampling                     --seed S          default 1
  --max-new-tokens N   default 256                          --limit N         the first N questions only
  --fps F, --min-frames N, --max-frames N, --min-pixels N, --max-pixels N
                       video sampling (default: each row's video_options, else 2 fps, 4 to 32
                       frames, at most 256*28*28 pixels: the paper's evaluation setting)
  --quiet              no progress on stderr
${COMMON_HELP}`;

export async function run(argv: string[]): Promise<number> {
  const str = { type: 'string' } as const;
  const a = parse('eval', argv, {
    data: { type: 'string', multiple: true }, 'video-root': str, out: str, n: str, temperature: str, 'top-p': str, seed: str,
    'max-new-tokens': str, limit: str, fps: str, 'min-frames': str, 'max-frames': str, 'min-pixels': str, 'max-pixels': str, quiet: { type: 'boolean' },
  }, 1);
  if (!a) { console.log(help); return 0; }
  const v = a.values;
  const dir = a.positionals[0];
  if (dir === undefined) throw new UsageError('MODEL_DIR is required', 'eval');
  if (!v.data?.length) throw new UsageError('--data FILE is required', 'eval');
  const o: EvaluateOptions = { data: v.data };
  if (v['video-root'] !== undefined) o.videoRoot = v['video-root'];
  const set = <K extends keyof EvaluateOptions>(k: K, x: EvaluateOptions[K] | undefined) => { if (x !== undefined) o[k] = x; };
  set('n', int('n', v.n)); set('temperature', num('temperature', v.temperature)); set('topP', num('top-p', v['top-p']));
  set('seed', int('seed', v.seed)); set('maxNewTokens', int('max-new-tokens', v['max-new-tokens'])); set('limit', int('limit', v.limit));
  const video: Record<string, number> = {};
  for (const [flag, key] of [['fps', 'fps'], ['min-frames', 'minFrames'], ['max-frames', 'maxFrames'], ['min-pixels', 'minPixels'], ['max-pixels', 'maxPixels']] as const) {
    const x = num(flag, v[flag]);
    if (x !== undefined) video[key] = x;
  }
  if (Object.keys(video).length) o.videoOptions = video;
  const ac = new AbortController();
  const stop = () => ac.abort(new Error('interrupted'));
  process.once('SIGINT', stop);
  o.signal = ac.signal;
  if (!v.quiet) {
    const t0 = performance.now();
    o.onItem = (done, total) => {
      if (done === total || done % Math.max(1, Math.floor(total / 20)) === 0) {
        process.stderr.write(`${done}/${total} questions (${((performance.now() - t0) / 1000).toFixed(0)} s)\n`);
      }
    };
  }
  const model = await loadModel(dir);
  try {
    const r = await evaluate(model, o);
    const sk = r.counts.skipped;
    if (sk.missingMedia + sk.unsupported + sk.invalid > 0) {
      process.stderr.write(`note: ${sk.missingMedia + sk.unsupported + sk.invalid} rows skipped (${sk.missingMedia} missing video, ${sk.unsupported} unsupported data_type, ` +
        `${sk.invalid} malformed), e.g. ${r.counts.skippedExamples.slice(0, 2).join('; ')}\n`);
    }
    console.log(`${dir}\n${formatReport(r)}`);
    if (v.out !== undefined) { writeReport(v.out, r); console.log(`wrote ${v.out}`); }
  } finally {
    process.off('SIGINT', stop);
    model.dispose();
    model.checkpoint.dispose();
  }
  return 0;
}
