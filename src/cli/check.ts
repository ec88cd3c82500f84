// videothinker check: a matmul against a float64 reference, timed.
import { matmul, Tensor } from '../index.js';
import { COMMON_HELP, int, parse } from './args.js';

export const summary = 'runs a matmul against a float64 reference and times it';
export const help = `Usage: videothinker check [--size N]

${summary}; exits 1 when the relative error is over 1e-5.

  --size N             the matrices are N x N, N in [1, 8192] (default 512)
${COMMON_HELP}`;

export async function run(argv: string[]): Promise<number> {
  const a0 = parse('check', argv, { size: { type: 'string' } }, 0);
  if (!a0) { console.log(help); return 0; }
  const size = a0.values.size;
  const n = int('size', size, 512)!;
  if (n < 1 || n > 8192) throw new RangeError(`Expected an integer in [1, 8192] for --size but received ${size}`);
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
