// Training curves as SVG, rendered in Node without a browser by vega-lite + vega: one panel per
// metric (reward, accuracy per question type, KL to the bias model, ...), one line per run.
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';

import { typeError } from '../errors.js';

/** The metrics drawn when none are named: whichever of these the runs have. */
export const DEFAULT_PLOT_METRICS = ['reward', 'accuracy/observational', 'accuracy/inferential', 'klBias', 'loss'];

type Row = Record<string, number>;

/** A run's metrics.jsonl rows. */
export function readMetrics(run: string): Row[] {
  const f = run.endsWith('.jsonl') ? run : path.join(run, 'metrics.jsonl');
  if (!existsSync(f)) throw new RangeError(`Expected ${f} (a run folder's metrics) but it does not exist`);
  return readFileSync(f, 'utf8').split('\n').filter((l) => l.trim()).map((l, i) => {
    try { return JSON.parse(l) as Row; } catch { throw new RangeError(`Invalid ${f} line ${i + 1}: not JSON`); }
  });
}

/** Renders a vega-lite spec to an SVG string. */
export async function renderSvg(spec: Record<string, unknown>): Promise<string> {
  const vl = await import('vega-lite');
  const vega = await import('vega');
  const compiled = vl.compile(spec as never).spec;
  const view = new vega.View(vega.parse(compiled), { renderer: 'none' });
  const svg = await view.toSVG();
  view.finalize();
  return svg;
}


export interface PlotOptions {
  /** Metric names (default: DEFAULT_PLOT_METRICS that the runs have). */
  metrics?: readonly string[];
  /** Run labels (default: each folder's name). */
  labels?: readonly string[];
  title?: string;
  /** Moving-average window over steps (default 1: raw). */
  smooth?: number;
}

/** SVG of the runs' curves: a panel per metric, a line per run. */
export async function plotRuns(runs: readonly string[], opts: PlotOptions = {}): Promise<string> {
  if (!Array.isArray(runs) || runs.length === 0 || runs.some((r) => typeof r !== 'string' || r === '')) throw typeError('runs', 'a non-empty array of run folders', runs);
  const labels = opts.labels ?? runs.map((r) => path.basename(path.resolve(r)));
  const data = runs.map(readMetrics);
  const have = new Set(data.flatMap((rows) => rows.flatMap((r) => Object.keys(r))));
  const metrics = (opts.metrics ?? DEFAULT_PLOT_METRICS).filter((m) => have.has(m));
  if (metrics.length === 0) throw new RangeError(`Expected some of the metrics [${(opts.metrics ?? DEFAULT_PLOT_METRICS).join(', ')}] in the runs but none is there`);
  const win = Math.max(1, Math.floor(opts.smooth ?? 1));
  const values: { run: string; step: number; metric: string; value: number }[] = [];
  data.forEach((rows, k) => {
    for (const m of metrics) {
      const pts = rows.filter((r) => typeof r[m] === 'number' && Number.isFinite(r[m])).map((r) => ({ step: r.step!, v: r[m]! }));
      pts.forEach((p, i) => {
        const w = pts.slice(Math.max(0, i - win + 1), i + 1);
        values.push({ run: labels[k]!, step: p.step, metric: m, value: w.reduce((a, x) => a + x.v, 0) / w.length });
      });
    }
  });
  return renderSvg({
    $schema: 'https://vega.github.io/schema/vega-lite/v6.json',
    ...(opts.title ? { title: opts.title } : {}),
    data: { values },
    facet: { row: { field: 'metric', type: 'nominal', title: null, sort: metrics } },
    resolve: { scale: { y: 'independent' } },
    spec: {
      width: 520, height: 140,
      mark: { type: 'line', strokeWidth: 1.5 },
      encoding: {
        x: { field: 'step', type: 'quantitative', title: 'step' },
        y: { field: 'value', type: 'quantitative', title: null, scale: { zero: false } },
        color: { field: 'run', type: 'nominal', title: 'run' },
      },
    },
  });
}
