#!/usr/bin/env node
// The `videothinker` command.
import { parseArgs } from 'node:util';

import { backend, matmul, setNumThreads, Tensor } from './index.js';

const HELP = `videothinker: train and run small video-reasoning models with CDPO, on native kernels.

Usage:
  videothinker info [--json]            what the native backend has: SIMD level, threads, BLAS, CUDA
  videothinker check [--size N]         runs a matmul against a float64 reference and times it
  videothinker --version | --help

Options:
  --threads N    native threads (default: VT_NUM_THREADS, else all hardware threads)

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
    default:
      console.error(`Unknown command '${cmd}'.\n\n${HELP}`);
      return 2;
  }
}

main(process.argv.slice(2)).then((code) => { process.exitCode = code; }, (e: unknown) => {
  console.error(e instanceof Error ? `${e.name}: ${e.message}` : String(e));
  process.exitCode = 1;
});
