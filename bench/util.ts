// Shared benchmark machinery: tinybench timing (medians), the result table, --json output, the
// machine's ceilings (../shared/docs/performance.md) and onnxruntime-node, the peer.
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { Bench } from 'tinybench';

/**
 * Ceilings of this machine, measured at the start of the run (bench/index.ts): fp32 FMA peak of
 * register-resident loops at the best SIMD level on all threads, and DRAM read bandwidth.
 * VT_PEAK_GFLOPS / VT_DRAM_GBS override them.
 */
export const CEILINGS = {
  peakGflops: Number(process.env.VT_PEAK_GFLOPS ?? NaN),
  dramGBs: Number(process.env.VT_DRAM_GBS ?? NaN),
};

export interface Row {
  suite: string;
  case: string;
  impl: string;
  /** Median time of one call, ms. */
  ms: number;
  gflops?: number;
  gbs?: number;
  /** Fraction of the machine's ceiling (FMA peak for GFLOP/s, DRAM bandwidth for GB/s). */
  ofPeak?: number;
  /** How many times faster than the naive version in this run. */
  vsNaive?: number;
  /** How many times faster than onnxruntime-node in this run. */
  vsPeer?: number;
  /** Peak extra memory, bytes (where measured). */
  extraBytes?: number;
  note?: string;
}

export interface Ctx {
  rows: Row[];
  /** Minimum time per measurement, ms (VT_BENCH_MS, default 1500). */
  timeMs: number;
  quick: boolean;
  ort: OrtModule | null;
  /** The suite running now (progress lines name it). */
  suite?: string;
}

// ---- progress: each row is printed as it is measured; on a terminal a status line names what
// is being timed now (the final table follows at the end) ----
const tty = process.stdout.isTTY === true;
let statusShown = false;
function clearStatus(): void {
  if (statusShown) { process.stdout.write('\r\x1b[K'); statusShown = false; }
}
/** Shows "suite: what" on the status line of a terminal (nothing when the output is a file or pipe). */
export function progress(ctx: Ctx, what: string): void {
  if (!tty) return;
  process.stdout.write(`\r\x1b[K  ... ${ctx.suite ? `${ctx.suite}: ` : ''}${what}`.slice(0, (process.stdout.columns || 100) - 1));
  statusShown = true;
}
/** Prints a line above the status line. */
export function log(line: string): void {
  clearStatus();
  console.log(line);
}

/** Times fn (sync or async) with tinybench; returns the median ms of one call. */
export async function time(name: string, fn: () => unknown, ctx: Ctx, opts: { minIters?: number } = {}): Promise<number> {
  progress(ctx, name);
  const bench = new Bench({ time: ctx.timeMs, warmupTime: Math.min(300, ctx.timeMs / 4), iterations: opts.minIters ?? 5, warmupIterations: 2 });
  bench.add(name, fn as () => void);
  await bench.run();
  const t = bench.tasks[0]!;
  const r = t.result as unknown as { latency?: { p50?: number }; p50?: number; error?: unknown };
  if (r?.error) throw r.error;
  const median = r?.latency?.p50 ?? r?.p50;
  if (median === undefined) throw new Error(`tinybench gave no median for ${name}`);
  return median;
}

/**
 * Calls fn back to back for at least ctx.timeMs and returns the mean ms per call: wall time over
 * all calls, so that work a call causes between calls (a garbage collection of the results it
 * left) is counted, which a median of per-call samples would hide. `warm`: calls first, untimed
 * (results left to the GC need a few collection cycles before the allocator cache is in its
 * steady state; see warmCalls()). cpuMs: the process's CPU time per call, all threads (what other
 * jobs on a shared machine do not inflate; onnxruntime's includes its threads' spin-waiting).
 */
export async function timeMean(name: string, fn: () => unknown, ctx: Ctx, opts: { warm?: number; minCalls?: number } = {}): Promise<{ ms: number; calls: number; cpuMs: number }> {
  progress(ctx, `${name} (warm-up)`);
  // Up to 2 warm-up calls, more up to `warm` within a time budget (kernels of 300 ms with tiny
  // results need no long warm-up).
  const w0 = performance.now(), warmMs = ctx.quick ? 1500 : 4000;
  const warm = opts.warm ?? 2;
  for (let i = 0; i < warm && (i < Math.min(2, warm) || performance.now() - w0 < warmMs); i++) await fn();
  progress(ctx, name);
  const min = opts.minCalls ?? 3;
  let calls = 0;
  const c0 = process.cpuUsage(), t0 = performance.now();
  while (calls < min || performance.now() - t0 < ctx.timeMs) { await fn(); calls++; }
  const ms = (performance.now() - t0) / calls, c = process.cpuUsage(c0);
  return { ms, calls, cpuMs: (c.user + c.system) / 1e3 / calls };
}

/**
 * Untimed calls before timing a calling pattern: enough to produce `mib` MiB of results (default
 * 640: two of the collection cycles that results left to the GC go through, native/core/storage.cc),
 * at least 2, at most `cap`.
 */
export function warmCalls(resultBytes: number, cap = 400, mib = 640): number {
  return Math.max(2, Math.min(cap, Math.ceil((mib * 2 ** 20) / Math.max(1, resultBytes))));
}

/** A full collection now, between rows, so that one row's garbage is not collected in the next. */
export const collectGarbage: () => void = (() => {
  if (typeof globalThis.gc === 'function') return globalThis.gc;
  setFlagsFromString('--expose-gc');
  return runInNewContext('gc') as () => void;
})();

/** Disposes what a call returned: a tensor (anything with dispose()), or each such field of a result object. */
function disposeAll(r: object | undefined): void {
  if (!r) return;
  const d = (x: unknown) => { const f = (x as { dispose?: unknown } | undefined)?.dispose; if (typeof f === 'function') f.call(x); };
  if (typeof (r as { dispose?: unknown }).dispose === 'function') { d(r); return; }
  for (const v of Object.values(r)) d(v);
}

/**
 * The two ways users call a kernel, one row each: `${impl}, disposed` (every result disposed at
 * once) and `${impl}, left to GC` (never disposed). Each is the mean of back-to-back calls after
 * a warm-up of warmCalls(resultBytes), timed in 4 alternating slices (which pattern goes first
 * alternates too), so that other jobs on a shared machine weigh on both alike. Each slice ends
 * with a full collection that is timed with it: the GC slice pays for collecting what it left
 * (rather than the slice after it), and the disposed slice pays the same baseline, so the
 * comparison is fair and, against onnxruntime, conservative. The GC row's note gives its time
 * and CPU time over the disposed one.
 */
export async function patternRows(ctx: Ctx, o: { suite: string; kase: string; impl: string; call: () => Promise<object>;
  resultBytes: number; flops?: number; bytes?: number; note?: string; extraBytes?: number }): Promise<void> {
  const warm = warmCalls(o.resultBytes);
  const what = o.note ? `${o.note}; ` : '';
  const pats = [
    { name: 'disposed', fn: async () => disposeAll(await o.call()), ms: 0, cpu: 0, calls: 0 },
    { name: 'left to GC', fn: async () => { await o.call(); }, ms: 0, cpu: 0, calls: 0 },
  ];
  collectGarbage();
  for (const p of pats) {
    progress(ctx, `${o.kase} ${o.impl}, ${p.name} (warm-up)`);
    const w0 = performance.now(), warmMs = ctx.quick ? 1500 : 4000;
    for (let i = 0; i < warm && (i < 2 || performance.now() - w0 < warmMs); i++) await p.fn();
    collectGarbage();
  }
  const slices = 4;
  for (let s = 0; s < slices; s++) {
    for (const p of s % 2 ? [...pats].reverse() : pats) {
      progress(ctx, `${o.kase} ${o.impl}, ${p.name} (${s + 1}/${slices})`);
      const c0 = process.cpuUsage(), t0 = performance.now();
      let calls = 0;
      // At least 300 ms a slice: the timed collection that ends it (a few ms) must stay small.
      while (calls < 1 || performance.now() - t0 < Math.max(300, ctx.timeMs / slices)) { await p.fn(); calls++; }
      collectGarbage();
      await new Promise((r) => setImmediate(r));  // the collected handles' finalizers run here
      const c = process.cpuUsage(c0);
      p.ms += performance.now() - t0; p.cpu += (c.user + c.system) / 1e3; p.calls += calls;
    }
  }
  const [d, g] = pats.map((p) => ({ ms: p.ms / p.calls, cpuMs: p.cpu / p.calls, calls: p.calls })) as [{ ms: number; cpuMs: number; calls: number }, { ms: number; cpuMs: number; calls: number }];
  record(ctx, { suite: o.suite, case: o.kase, impl: `${o.impl}, disposed`, ms: d.ms, flops: o.flops, bytes: o.bytes, extraBytes: o.extraBytes,
    note: `${what}results disposed; mean of ${d.calls} calls; cpu ${d.cpuMs.toFixed(1)} ms/call` });
  record(ctx, { suite: o.suite, case: o.kase, impl: `${o.impl}, left to GC`, ms: g.ms, flops: o.flops, bytes: o.bytes,
    note: `${what}results never disposed; mean of ${g.calls} calls; cpu ${g.cpuMs.toFixed(1)} ms/call; ${(g.ms / d.ms).toFixed(3)}x the disposed time, ${(g.cpuMs / d.cpuMs).toFixed(3)}x its cpu` });
}

/**
 * onnxruntime-node on the same case, both ways: outputs dispose()d after each run, and left to
 * the GC (its CPU outputs are JS typed arrays, collected like any ArrayBuffer either way).
 */
export async function ortRows(ctx: Ctx, o: { suite: string; kase: string; session: OrtSession; feeds: Record<string, unknown>;
  resultBytes: number; flops?: number; bytes?: number; note?: string }): Promise<void> {
  const warm = warmCalls(o.resultBytes, 50);
  const what = o.note ? `${o.note}; ` : '';
  collectGarbage();
  const d = await timeMean(`ort ${o.kase}, dispose()`, async () => { for (const t of Object.values(await o.session.run(o.feeds))) t.dispose?.(); }, ctx, { warm });
  record(ctx, { suite: o.suite, case: o.kase, impl: 'onnxruntime, dispose()', ms: d.ms, flops: o.flops, bytes: o.bytes,
    note: `${what}outputs dispose()d; mean of ${d.calls} calls; cpu ${d.cpuMs.toFixed(1)} ms/call` });
  collectGarbage();
  const g = await timeMean(`ort ${o.kase}, left to GC`, () => o.session.run(o.feeds), ctx, { warm });
  record(ctx, { suite: o.suite, case: o.kase, impl: 'onnxruntime, left to GC', ms: g.ms, flops: o.flops, bytes: o.bytes,
    note: `${what}mean of ${g.calls} calls; cpu ${g.cpuMs.toFixed(1)} ms/call` });
  collectGarbage();
  // onnxruntime's pool threads spin after a run (measured: 21-34 ms of CPU in the next 50 ms,
  // none after), which would be charged to whatever row is timed next on a 2-core machine.
  await new Promise((r) => setTimeout(r, 100));
}

/** For compare(): a 'left to GC' row against onnxruntime left to the GC, every other row against onnxruntime dispose()d. */
export const peerByPattern = (impl: string): string => (impl.endsWith('left to GC') ? 'onnxruntime, left to GC' : 'onnxruntime, dispose()');

const fmtRow = (r: Row): string => {
  const parts = [`${r.ms.toFixed(2)} ms`];
  if (r.gflops !== undefined) parts.push(`${r.gflops.toFixed(1)} GFLOP/s`);
  if (r.gbs !== undefined) parts.push(`${r.gbs.toFixed(1)} GB/s`);
  if (r.ofPeak !== undefined) parts.push(`${(100 * r.ofPeak).toFixed(0)}% peak`);
  if (r.extraBytes !== undefined) parts.push(`${(r.extraBytes / 2 ** 20).toFixed(1)} MiB extra`);
  return `  ${r.suite} | ${r.case} | ${r.impl}: ${parts.join(', ')}${r.note ? `  (${r.note})` : ''}`;
};

/** Adds a row (and prints it at once); derives GFLOP/s or GB/s and the fraction of the ceiling. */
export function record(ctx: Ctx, row: Omit<Row, 'gflops' | 'gbs' | 'ofPeak'> & { flops?: number; bytes?: number }): Row {
  const { flops, bytes, ...rest } = row;
  const out: Row = { ...rest };
  if (flops !== undefined) { out.gflops = flops / (row.ms * 1e6); out.ofPeak = out.gflops / CEILINGS.peakGflops; }
  if (bytes !== undefined) { out.gbs = bytes / (row.ms * 1e6); out.ofPeak ??= out.gbs / CEILINGS.dramGBs; }
  ctx.rows.push(out);
  log(fmtRow(out));
  return out;
}

/**
 * Fills vsNaive / vsPeer for the rows of one case from the named baseline rows (the peer row
 * may be given per row: `peerOf` maps a row's impl to the peer impl it is compared with) and
 * prints the ratios.
 */
export function compare(ctx: Ctx, suite: string, kase: string, naiveImpl: string | null, peerImpl: string | null,
  peerOf?: (impl: string) => string | null): void {
  const rows = ctx.rows.filter((r) => r.suite === suite && r.case === kase);
  const naive = naiveImpl ? rows.find((r) => r.impl === naiveImpl) : undefined;
  const peers = new Set<Row>();
  const said: string[] = [];
  for (const r of rows) {
    const pi = peerOf ? peerOf(r.impl) : peerImpl;
    const peer = pi ? rows.find((x) => x.impl === pi) : undefined;
    if (peer) peers.add(peer);
    if (naive && r !== naive) r.vsNaive = naive.ms / r.ms;
    if (peer && r !== peer && !r.impl.startsWith('onnxruntime')) { r.vsPeer = peer.ms / r.ms; said.push(`${r.impl} ${r.vsPeer.toFixed(2)}x`); }
  }
  if (said.length) log(`  ${suite} | ${kase} | vs ${[...peers].map((p) => p.impl).join(' / ')}: ${said.join(', ')}`);
}

export function printTable(rows: Row[]): void {
  clearStatus();
  const fmt = (v: number | undefined, d = 1) => (v === undefined ? '' : v.toFixed(d));
  const head = ['suite', 'case', 'impl', 'ms', 'GFLOP/s', 'GB/s', '% peak', 'x naive', 'x onnxrt', 'extra MiB', 'note'];
  const body = rows.map((r) => [r.suite, r.case, r.impl, fmt(r.ms, 2), fmt(r.gflops), fmt(r.gbs), r.ofPeak === undefined ? '' : (100 * r.ofPeak).toFixed(0),
    fmt(r.vsNaive, 2), fmt(r.vsPeer, 2), r.extraBytes === undefined ? '' : (r.extraBytes / 2 ** 20).toFixed(1), r.note ?? '']);
  const w = head.map((h, i) => Math.max(h.length, ...body.map((b) => b[i]!.length)));
  const line = (cells: string[]) => cells.map((c, i) => (i < 3 || i === 10 ? c.padEnd(w[i]!) : c.padStart(w[i]!))).join('  ');
  console.log(line(head));
  console.log(w.map((n) => '-'.repeat(n)).join('  '));
  for (const b of body) console.log(line(b));
}

// ---- onnxruntime-node, the peer ----
export interface OrtTensor { data: unknown; dispose?(): void }
export interface OrtSession { run(feeds: Record<string, unknown>): Promise<Record<string, OrtTensor>>; release?(): Promise<void> }
export interface OrtModule {
  InferenceSession: { create(path: string, opts: object): Promise<OrtSession> };
  Tensor: new (type: string, data: unknown, dims: number[]) => unknown;
}

/** onnxruntime-node from ORT_DIR or this project's devDependencies; null when absent. */
export function loadOrt(): OrtModule | null {
  const bases = [process.env.ORT_DIR, path.dirname(fileURLToPath(import.meta.url))].filter(Boolean) as string[];
  for (const b of bases) {
    try {
      return createRequire(path.join(b, 'x.js'))('onnxruntime-node') as OrtModule;
    } catch { /* try the next */ }
  }
  return null;
}

/** The peers' ONNX graphs (../shared/peers/models), or VT_PEER_MODELS. */
export function peerModel(name: string): string {
  const dir = process.env.VT_PEER_MODELS ?? path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..', 'shared', 'peers', 'models');
  return path.join(dir, name);
}

export const ORT_OPTIONS = { intraOpNumThreads: 2, interOpNumThreads: 1, graphOptimizationLevel: 'all' };

/** Peak resident memory growth while fn runs, sampled from process.memoryUsage().rss (coarse). */
export async function peakExtraRss(fn: () => Promise<unknown>): Promise<number> {
  globalThis.gc?.();
  const base = process.memoryUsage().rss;
  let peak = base;
  const timer = setInterval(() => { peak = Math.max(peak, process.memoryUsage().rss); }, 1);
  try { await fn(); } finally { clearInterval(timer); }
  peak = Math.max(peak, process.memoryUsage().rss);
  return peak - base;
}
