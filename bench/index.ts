// `npm run bench [-- [SUITE ...] [--json FILE] [--quick]]`: times every kernel family (or the named
// suites; `--only a,b` works too when calling node directly: npm takes `--only` for itself),
// printing each row as it is measured (and, on a terminal, a status line naming the suite and
// case being timed), then one table: time, GFLOP/s or GB/s, fraction of this machine's ceiling,
// and ratios against a naive version and onnxruntime-node run in the same process.
import { writeFileSync, renameSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';

import { backend } from '../src/index.js';
import { native } from '../src/native.js';
import { CEILINGS, loadOrt, log, printTable, progress, type Ctx } from './util.js';

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
// OpenBLAS's kernel set (e.g. 190 against 321 GFLOP/s at 1024^3 on an AVX-512 Xeon whose
// environment pinned OPENBLAS_CORETYPE=Haswell) decides the 'blas' rows and what 'auto' runs, so
// the header names it, the pin, and the GEMM auto chose.
const core = /\(core ([^,)]+)/.exec(info.blas)?.[1] ?? '?';
const forced = process.env.OPENBLAS_CORETYPE ? ` (OPENBLAS_CORETYPE=${process.env.OPENBLAS_CORETYPE} set in the environment)` : '';
console.log(`videothinker ${info.version}: ${info.kernels} kernels, ${info.threads} threads, BLAS: ${info.blas.split(' ').slice(0, 2).join(' ')} ${core} kernels${forced}, CUDA compiled: ${info.cuda.compiled}, devices: ${info.cuda.devices.length}`);
console.log(`GEMM for impl 'auto' and every internal GEMM: ${info.gemm.auto} (${info.gemm.reason})`);
console.log(`load average when starting: ${loadavg().map((x) => x.toFixed(2)).join(' ')} on ${cpus().length} CPUs (other processes share them: compare rows of one run)`);
if (Number.isNaN(CEILINGS.peakGflops) || Number.isNaN(CEILINGS.dramGBs)) {
  progress({ rows: [], timeMs: 0, quick, ort: null }, 'measuring the FMA peak and DRAM bandwidth');
  const m = native.measureCeilings(info.threads, 0.5);
  if (Number.isNaN(CEILINGS.peakGflops)) CEILINGS.peakGflops = m.fmaGflops;
  if (Number.isNaN(CEILINGS.dramGBs)) CEILINGS.dramGBs = m.readGBs;
}
log(`ceilings measured now: fp32 FMA peak ${CEILINGS.peakGflops.toFixed(0)} GFLOP/s (${info.kernels}, ${info.threads} threads), DRAM read ${CEILINGS.dramGBs.toFixed(1)} GB/s; '% peak' below is against these`);
const ort = loadOrt();
if (!ort) console.log('onnxruntime-node not found: peer columns stay empty (npm install; it is a devDependency)');
const ctx: Ctx = { rows: [], timeMs: Number(process.env.VT_BENCH_MS ?? (quick ? 400 : 1500)), quick, ort };
for (const [name, load] of Object.entries(SUITES)) {
  if (only && !only.includes(name)) continue;
  const suite = await load();
  ctx.suite = name;
  log(`-- ${name}`);
  await suite.run(ctx);
}
console.log(`\nload average at the end: ${loadavg().map((x) => x.toFixed(2)).join(' ')}`);
printTable(ctx.rows);
if (jsonPath) {
  const tmp = `${jsonPath}.tmp-${process.pid}`;
  writeFileSync(tmp, JSON.stringify({ backend: info, date: new Date().toISOString(), rows: ctx.rows }, null, 2));
  renameSync(tmp, jsonPath);
  console.log(`\nwrote ${ctx.rows.length} rows to ${jsonPath}`);
}
