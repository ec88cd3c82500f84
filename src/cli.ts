#!/usr/bin/env node
// The `videothinker` command.
import { parseArgs } from 'node:util';

import { backend, loadModel, matmul, setNumThreads, Tensor, VIDEOTHINKER_VIDEO_OPTIONS as VT_VIDEO } from './index.js';

const HELP = `videothinker: train and run small video-reasoning models with CDPO, on native kernels.

Usage:
  videothinker info [--json]            what the native backend has: SIMD level, threads, BLAS, CUDA
  videothinker check [--size N]         runs a matmul against a float64 reference and times it
  videothinker ask MODEL_DIR "QUESTION" [--video FILE] [options]
                                        answers a question about a video with a Qwen2.5-VL
                                        checkpoint folder; the answer streams to stdout
  videothinker --version | --help

Options:
  --threads N          native threads (default: VT_NUM_THREADS, else all hardware threads)
ask:
  --video FILE         a video file (decoded by ffmpeg from the system)
  --system TEXT        a system turn
  --max-new-tokens N   default 512          --temperature T   default 0 (greedy)
  --top-p P, --top-k K, --seed S, --n N     sampling; n samples share one prefill
  --fps F              frames sampled per second (default 2)
  --min-frames N, --max-frames N            default 4 and 16
  --max-pixels N       per frame (default 196*28*28 = 153664, VideoThinker's training size)

Environment: VT_NUM_THREADS, VT_SIMD=scalar|avx2|avx512 (cap the kernel level),
VT_ADDON_PATH (load a specific videothinker.node).`;

async function main(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      help: { type: 'boolean', short: 'h' },
      version: { type: 'boolean', short: 'v' },
      json: { type: 'boolean' },
      size: { type: 'string' },
      threads: { type: 'string' },
      video: { type: 'string' },
      system: { type: 'string' },
      'max-new-tokens': { type: 'string' },
      temperature: { type: 'string' },
      'top-p': { type: 'string' },
      'top-k': { type: 'string' },
      seed: { type: 'string' },
      n: { type: 'string' },
      fps: { type: 'string' },
      'min-frames': { type: 'string' },
      'max-frames': { type: 'string' },
      'max-pixels': { type: 'string' },
    },
  });
  if (values.help) { console.log(HELP); return 0; }
  if (values.version) { console.log(backend().version); return 0; }
  if (values.threads !== undefined) setNumThreads(Number(values.threads));
  const cmd = positionals[0] ?? 'info';
  switch (cmd) {
    case 'info': {
      const b = backend();
      if (values.json) { console.log(JSON.stringify(b, null, 2)); return 0; }
      console.log(`videothinker ${b.version}`);
      console.log(`  kernels   ${b.kernels} (best on this CPU: ${b.bestKernels})`);
      console.log(`  threads   ${b.threads}`);
      console.log(`  BLAS      ${b.blas}`);
      console.log(`  CUDA      ${b.cuda.compiled ? `compiled (runtime ${b.cuda.runtime}, sm_${b.cuda.architectures.join(', sm_')})` : 'not compiled'}; ` +
        `${b.cuda.devices.length ? b.cuda.devices.map((d) => `${d.index}: ${d.name} (cc ${d.computeCapability})`).join(', ') : 'no device'}`);
      return 0;
    }
    case 'check': {
      const n = Number(values.size ?? 512);
      if (!Number.isInteger(n) || n < 1 || n > 8192) throw new RangeError(`Expected an integer in [1, 8192] for --size but received ${values.size}`);
      using a = Tensor.randn([n, n], { seed: 1 });
      using b = Tensor.randn([n, n], { seed: 2 });
      const t0 = performance.now();
      using c = await matmul(a, b);
      const ms = performance.now() - t0;
      // float64 reference of a few rows
      const A = a.data as Float32Array, B = b.data as Float32Array, C = c.data as Float32Array;
      let err = 0, scale = 0;
      for (const i of [0, n >> 1, n - 1]) {
        for (let j = 0; j < n; j++) {
          let s = 0;
          for (let k = 0; k < n; k++) s += A[i * n + k]! * B[k * n + j]!;
          err = Math.max(err, Math.abs(C[i * n + j]! - s));
          scale = Math.max(scale, Math.abs(s));
        }
      }
      const rel = err / scale;
      console.log(`matmul ${n}^3: ${ms.toFixed(2)} ms (${(2 * n ** 3 / ms / 1e6).toFixed(1)} GFLOP/s, first call), relative error vs float64 ${rel.toExponential(2)}`);
      return rel < 1e-5 ? 0 : 1;
    }
    case 'ask': {
      const [, dir, question] = positionals;
      if (!dir || question === undefined) throw new TypeError(`Expected 'ask MODEL_DIR "QUESTION"' but received ${positionals.length - 1} arguments`);
      const num = (flag: string, v: string | undefined, d?: number): number | undefined => {
        if (v === undefined) return d;
        const x = Number(v);
        if (v.trim() === '' || !Number.isFinite(x)) throw new TypeError(`Expected a number for --${flag} but received '${v}'`);
        return x;
      };
      const model = await loadModel(dir);
      const ac = new AbortController();
      const stop = () => ac.abort();
      process.once('SIGINT', stop);
      try {
        const n = num('n', values.n, 1)!;
        const opts = {
          prompt: question, signal: ac.signal, n,
          maxNewTokens: num('max-new-tokens', values['max-new-tokens'], 512), temperature: num('temperature', values.temperature, 0),
          topP: num('top-p', values['top-p']), topK: num('top-k', values['top-k']), seed: num('seed', values.seed),
          videoOptions: { fps: num('fps', values.fps, VT_VIDEO.fps), minFrames: num('min-frames', values['min-frames'], VT_VIDEO.minFrames),
            maxFrames: num('max-frames', values['max-frames'], VT_VIDEO.maxFrames), maxPixels: num('max-pixels', values['max-pixels'], VT_VIDEO.maxPixels) },
          ...(values.video !== undefined ? { video: values.video } : {}),
          ...(values.system !== undefined ? { system: values.system } : {}),
        };
        if (n === 1) {
          for await (const e of model.generateStream(opts)) process.stdout.write(e.text ?? '');
          process.stdout.write('\n');
        } else {
          const samples = await model.generate(opts);
          samples.forEach((s, i) => console.log(`--- sample ${i} (${s.finishReason}, ${s.tokens.length} tokens)\n${s.text ?? s.tokens.join(' ')}`));
        }
      } finally {
        process.off('SIGINT', stop);
        model.dispose();
        model.checkpoint.dispose();
      }
      return ac.signal.aborted ? 130 : 0;
    }
    default:
      console.error(`Unknown command '${cmd}'.\n\n${HELP}`);
      return 2;
  }
}

main(process.argv.slice(2)).then((code) => { process.exitCode = code; }, (e: unknown) => {
  console.error(e instanceof Error ? `${e.name}: ${e.message}` : String(e));
  process.exitCode = 1;
});
