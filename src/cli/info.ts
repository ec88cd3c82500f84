// videothinker info: what the native backend has.
import { backend } from '../index.js';
import { COMMON_HELP, parse } from './args.js';

export const summary = 'what the native backend has: SIMD level, threads, BLAS, CUDA';
export const help = `Usage: videothinker info [--json]

${summary}.

  --json               the same as JSON
${COMMON_HELP}`;

export async function run(argv: string[]): Promise<number> {
  const a = parse('info', argv, { json: { type: 'boolean' } }, 0);
  if (!a) { console.log(help); return 0; }
  const b = backend();
  if (a.values.json) { console.log(JSON.stringify(b, null, 2)); return 0; }
  console.log(`videothinker ${b.version}`);
  console.log(`  kernels   ${b.kernels} (best on this CPU: ${b.bestKernels})`);
  console.log(`  threads   ${b.threads}`);
  console.log(`  BLAS      ${b.blas}`);
  console.log(`  GEMM      ${b.gemm.auto}: ${b.gemm.reason}`);
  console.log(`  bf16      ${b.gemm.bf16.reason}; matmul precision now ${b.gemm.precision}`);
  console.log(`  CUDA      ${b.cuda.compiled ? `compiled (runtime ${b.cuda.runtime}, sm_${b.cuda.architectures.join(', sm_')})` : 'not compiled'}; ` +
    `${b.cuda.devices.length ? b.cuda.devices.map((d) => `${d.index}: ${d.name} (cc ${d.computeCapability})`).join(', ') : 'no device'}`);
  return 0;
}
