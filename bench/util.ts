// Shared benchmark machinery: tinybench timing (medians), the result table, --json output, the
// machine's ceilings (../shared/docs/performance.md) and onnxruntime-node, the peer.
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
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
}

/** Times fn (sync or async) with tinybench; returns the median ms of one call. */
export async function time(name: string, fn: () => unknown, ctx: Ctx, opts: { minIters?: number } = {}): Promise<number> {
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

/** Adds a row; derives GFLOP/s or GB/s and the fraction of the ceiling. */
export function record(ctx: Ctx, row: Omit<Row, 'gflops' | 'gbs' | 'ofPeak'> & { flops?: number; bytes?: number }): Row {
  const { flops, bytes, ...rest } = row;
  const out: Row = { ...rest };
  if (flops !== undefined) { out.gflops = flops / (row.ms * 1e6); out.ofPeak = out.gflops / CEILINGS.peakGflops; }
  if (bytes !== undefined) { out.gbs = bytes / (row.ms * 1e6); out.ofPeak ??= out.gbs / CEILINGS.dramGBs; }
  ctx.rows.push(out);
  return out;
}

/** Fills vsNaive / vsPeer for the rows of one case from the named baseline rows. */
export function compare(ctx: Ctx, suite: string, kase: string, naiveImpl: string | null, peerImpl: string | null): void {
  const rows = ctx.rows.filter((r) => r.suite === suite && r.case === kase);
  const naive = naiveImpl ? rows.find((r) => r.impl === naiveImpl) : undefined;
  const peer = peerImpl ? rows.find((r) => r.impl === peerImpl) : undefined;
  for (const r of rows) {
    if (naive && r !== naive) r.vsNaive = naive.ms / r.ms;
    if (peer && r !== peer) r.vsPeer = peer.ms / r.ms;
  }
}

export function printTable(rows: Row[]): void {
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
export interface OrtTensor { data: unknown }
export interface OrtSession { run(feeds: Record<string, unknown>): Promise<Record<string, OrtTensor>> }
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
