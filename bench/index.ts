// `npm run bench [-- [SUITE ...] [--json FILE] [--quick]]`: times every kernel family (or the named
// suites; `--only a,b` works too when calling node directly: npm takes `--only` for itself) and
// prints one table: time, GFLOP/s or GB/s, fraction of this machine's ceiling, and ratios against
// a naive version and onnxruntime-node run in the same process.
import { writeFileSync, renameSync } from 'node:fs';

import { backend } from '../src/index.js';
import { native } from '../src/native.js';
import { CEILINGS, loadOrt, printTable, type Ctx } from './util.js';

type Suite = { run(ctx: Ctx): Promise<void> };
const SUITES: Record<string, () => Promise<Suite>> = {
  matmul: () => import('./matmul.js'),
  attention: () => import('./attention.js'),
  logprobs: () => import('./gather.js'),
  cdpo: () => import('./cdpo.js'),
  model: () => import('./model.js'),
  train: () => import('./train.js'),
};

const args = process.argv.slice(2);
const flag = (name: string) => { const i = args.indexOf(name); return i >= 0 ? args[i + 1] : undefined; };
const jsonPath = flag('--json');
const jsonIdx = args.indexOf('--json');
const named = args.filter((a, i) => !a.startsWith('--') && (jsonIdx < 0 || i !== jsonIdx + 1) && args[i - 1] !== '--only').flatMap((a) => a.split(','));
const onlyFlag = flag('--only')?.split(',');
const only = onlyFlag || named.length ? [...(onlyFlag ?? []), ...named] : undefined;
const quick = args.includes('--quick');
for (const name of only ?? []) if (!(name in SUITES)) throw new RangeError(`Unknown suite '${name}': expected one of ${Object.keys(SUITES).join(', ')}`);

const info = backend();
// The BLAS kernel set moves every GEMM-bound row (e.g. 192 against 326 GFLOP/s at 1024^3 on one
// AVX-512 machine whose environment forced OPENBLAS_CORETYPE=Haswell), so the header names it.
const core = /\(core ([^,)]+)/.exec(info.blas)?.[1] ?? '?';
const forced = process.env.OPENBLAS_CORETYPE ? ` (OPENBLAS_CORETYPE=${process.env.OPENBLAS_CORETYPE} set in the environment)` : '';
console.log(`videothinker ${info.version}: ${info.kernels} kernels, ${info.threads} threads, BLAS: ${info.blas.split(' ').slice(0, 2).join(' ')} ${core} kernels${forced}, CUDA compiled: ${info.cuda.compiled}, devices: ${info.cuda.devices.length}`);
if (Number.isNaN(CEILINGS.peakGflops) || Number.isNaN(CEILINGS.dramGBs)) {
  const m = native.measureCeilings(info.threads, 0.5);
  if (Number.isNaN(CEILINGS.peakGflops)) CEILINGS.peakGflops = m.fmaGflops;
  if (Number.isNaN(CEILINGS.dramGBs)) CEILINGS.dramGBs = m.readGBs;
}
console.log(`ceilings measured now: fp32 FMA peak ${CEILINGS.peakGflops.toFixed(0)} GFLOP/s (${info.kernels}, ${info.threads} threads), DRAM read ${CEILINGS.dramGBs.toFixed(1)} GB/s; '% peak' below is against these`);
const ort = loadOrt();
if (!ort) console.log('onnxruntime-node not found: peer columns stay empty (npm install; it is a devDependency)');
const ctx: Ctx = { rows: [], timeMs: Number(process.env.VT_BENCH_MS ?? (quick ? 400 : 1500)), quick, ort };
for (const [name, load] of Object.entries(SUITES)) {
  if (only && !only.includes(name)) continue;
  const suite = await load();
  await suite.run(ctx);
}
console.log();
printTable(ctx.rows);
if (jsonPath) {
  const tmp = `${jsonPath}.tmp-${process.pid}`;
  writeFileSync(tmp, JSON.stringify({ backend: info, date: new Date().toISOString(), rows: ctx.rows }, null, 2));
  renameSync(tmp, jsonPath);
  console.log(`\nwrote ${ctx.rows.length} rows to ${jsonPath}`);
}
