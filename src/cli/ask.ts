// videothinker ask: a question about a video, answered by a checkpoint folder; streamed to stdout.
import { loadModel, VIDEOTHINKER_VIDEO_OPTIONS as VT_VIDEO } from '../index.js';
import { COMMON_HELP, int, num, outputClosed, parse } from './args.js';

export const summary = 'answers a question about a video with a Qwen2.5-VL checkpoint folder; the answer streams to stdout';
export const help = `Usage: videothinker ask MODEL_DIR "QUESTION" [--video FILE] [options]

${summary}.

  --video FILE         a video file (decoded by ffmpeg from the system)
  --system TEXT        a system turn
  --max-new-tokens N   default 512          --temperature T   default 0 (greedy)
  --top-p P, --top-k K, --seed S, --n N     sampling; n samples share one prefill
  --fps F              frames sampled per second (default 2)
  --min-frames N, --max-frames N            default 4 and 16
  --max-pixels N       per frame (default 196*28*28 = 153664, VideoThinker's training size)
${COMMON_HELP}`;

export async function run(argv: string[]): Promise<number> {
  const a = parse('ask', argv, {
    video: { type: 'string' }, system: { type: 'string' }, 'max-new-tokens': { type: 'string' }, temperature: { type: 'string' },
    'top-p': { type: 'string' }, 'top-k': { type: 'string' }, seed: { type: 'string' }, n: { type: 'string' }, fps: { type: 'string' },
    'min-frames': { type: 'string' }, 'max-frames': { type: 'string' }, 'max-pixels': { type: 'string' },
  }, 2);
  if (!a) { console.log(help); return 0; }
  const values = a.values;
  const [dir, question] = a.positionals;
  if (!dir || question === undefined) throw new TypeError(`Expected 'ask MODEL_DIR "QUESTION"' but received ${a.positionals.length} arguments`);
  const n = int('n', values.n, 1)!;
  const opts = {
    prompt: question, n,
    maxNewTokens: int('max-new-tokens', values['max-new-tokens'], 512), temperature: num('temperature', values.temperature, 0),
    topP: num('top-p', values['top-p']), topK: int('top-k', values['top-k']), seed: int('seed', values.seed),
    videoOptions: { fps: num('fps', values.fps, VT_VIDEO.fps), minFrames: int('min-frames', values['min-frames'], VT_VIDEO.minFrames),
      maxFrames: int('max-frames', values['max-frames'], VT_VIDEO.maxFrames), maxPixels: int('max-pixels', values['max-pixels'], VT_VIDEO.maxPixels) },
    ...(values.video !== undefined ? { video: values.video } : {}),
    ...(values.system !== undefined ? { system: values.system } : {}),
  };
  const model = await loadModel(dir);
  // Ctrl-C stops the answer (exit 130, as a shell reports an interrupted command); a closed stdout
  // (EPIPE) stops it too (exit 0: the reader has what it wanted). Neither is an error to print.
  const ac = new AbortController();
  let interrupted = false;
  const stop = () => { interrupted = true; ac.abort(); };
  const closed = () => ac.abort();
  process.once('SIGINT', stop);
  outputClosed.signal.addEventListener('abort', closed, { once: true });
  try {
    if (outputClosed.signal.aborted) return 0;
    const request = { ...opts, signal: ac.signal };
    if (n === 1) {
      for await (const e of model.generateStream(request)) process.stdout.write(e.text ?? '');
      process.stdout.write('\n');
    } else {
      const samples = await model.generate(request);
      samples.forEach((s, i) => console.log(`--- sample ${i} (${s.finishReason}, ${s.tokens.length} tokens)\n${s.text ?? s.tokens.join(' ')}`));
    }
  } catch (e) {
    if (!ac.signal.aborted) throw e;
  } finally {
    process.off('SIGINT', stop);
    outputClosed.signal.removeEventListener('abort', closed);
    model.dispose();
    model.checkpoint.dispose();
  }
  return interrupted ? 130 : 0;
}
