// The reproduction of the paper's effect on the synthetic race benchmark, end to end on a CPU:
// synth -> init -> SFT warm-up -> Bias-Aware Training -> GRPO, CDPO (a sweep of push strengths)
// and GRPO with a plain KL to the SFT model (a sweep of pull strengths), every RL run from the
// same SFT checkpoint with the same data order -> greedy evaluation on the balanced test split and
// the held-out variant split, for several seeds. Writes results.json (the shape other tools read),
// results.md (the table), curves.svg (RL training curves) and frontier.svg (observational against
// inferential accuracy, one point per run, one line per method over its beta).
//
// The recipe and why (docs/reproduction.md has the measurements behind it):
// - The SFT warm-up runs on a balanced subset (half observational, half inferential) in two
//   parts: first on the reference reasoning (`process`: which ball is marked, who finishes first
//   and second, the counterfactual), whose every word is a supervised perception target, then on
//   the short answers the RL stages sample (`<think></think><answer>X</answer>`). A tiny model
//   trained on answers alone stays near chance in this budget; with the reasoning first it reaches
//   about 87% observational / 80% inferential.
// - RL samples short answers: with the long reasoning, the CDPO push away from the bias model
//   acts on every reasoning token and the policy learnt to write an empty reasoning instead (the
//   bias model finds that unlikely); with one answer token the push acts where the shortcut is.
// - Every stage is resumable: a finished stage (its eval.json) is skipped when the command runs
//   again, an interrupted one resumes from its last checkpoint.
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import path from 'node:path';

import { checkInteger, checkNumber, checkOptions, rangeError, typeError } from '../errors.js';
import { synth, type SynthRow } from '../data/synth.js';
import { writeJsonAtomic, writeTextAtomic } from '../files.js';
import { initModel } from '../init.js';
import { loadModel } from '../infer/load.js';
import { evaluateBatched } from './evalbatch.js';
import { plotRuns, readMetrics, renderSvg } from './plot.js';
import { trainBias, trainGrpo, type RlOptions } from './rl.js';
import { trainSft } from './sft.js';

/** The numbers of a reproduction: data sizes, steps, learning rates, sweeps. */
export interface ReproduceRecipe {
  /** synth: questions per split (the test splits are balanced), the data seed. */
  train: number; test: number; variant: number; dataSeed: number;
  /** Model preset of `init`. */
  preset: 'tiny' | 'small';
  /** SFT: balanced rows (half observational, half inferential), steps on the reasoning, then on the short answers. */
  sftRows: number; sftReasoningSteps: number; sftAnswerSteps: number; sftBatch: number; sftLr: number;
  /** RL: steps, prompts per step, completions per prompt, learning rate (all RL runs; bias: biasLr). */
  rlSteps: number; promptsPerStep: number; numGenerations: number; rlLr: number; biasLr: number; maxCompletionLength: number;
  /** CDPO's push strengths (betaBias) and the one reported as method `cdpo`. */
  cdpoBetas: number[]; cdpoBeta: number;
  /** GRPO + KL to the SFT model: pull strengths (betaRef). */
  klBetas: number[];
}

export const REPRODUCE_RECIPES: Readonly<Record<'full' | 'quick', Readonly<ReproduceRecipe>>> = Object.freeze({
  full: {
    train: 6000, test: 600, variant: 600, dataSeed: 1, preset: 'tiny',
    sftRows: 2000, sftReasoningSteps: 600, sftAnswerSteps: 200, sftBatch: 16, sftLr: 1e-3,
    rlSteps: 100, promptsPerStep: 8, numGenerations: 8, rlLr: 1e-4, biasLr: 2e-4, maxCompletionLength: 16,
    cdpoBetas: [0.05, 0.1, 0.3], cdpoBeta: 0.05, klBetas: [0.04, 0.3, 1],
  },
  quick: {
    train: 1200, test: 100, variant: 100, dataSeed: 1, preset: 'tiny',
    sftRows: 400, sftReasoningSteps: 60, sftAnswerSteps: 20, sftBatch: 16, sftLr: 1e-3,
    rlSteps: 6, promptsPerStep: 4, numGenerations: 8, rlLr: 1e-4, biasLr: 2e-4, maxCompletionLength: 16,
    cdpoBetas: [0.1], cdpoBeta: 0.1, klBetas: [0.04],
  },
});

export interface ReproduceOptions extends Partial<ReproduceRecipe> {
  /** The run folder (default 'runs/reproduce'). */
  out?: string;
  /** The benchmark folder (default `${out}/data`; generated when it has no train.json). */
  data?: string;
  /** Model seeds (default [1, 2, 3]; quick: [1]). */
  seeds?: number[];
  /** One seed and a few steps of everything: checks the pipeline in minutes, shows no effect. */
  quick?: boolean;
  /** Start over: ignore finished stages in `out` (default false: they are reused). */
  fresh?: boolean;
  /** Progress lines (default: stderr). */
  log?: (line: string) => void;
  signal?: AbortSignal;
}

/** Accuracies of one model, fractions in [0, 1]. */
export interface MethodScores { observational: number; inferential: number; overall: number; variant: number; shortcut: number }
export interface Spread { mean: number; std: number }

export interface ReproduceResults {
  seeds: number[];
  /** sft, bias, grpo, cdpo, grpo_kl<beta>, cdpo<beta>: mean and sample std over the seeds. */
  methods: Record<string, { observational: Spread; inferential: Spread; overall: Spread; variant: Spread; shortcut: Spread }>;
  /** The same per seed. */
  perSeed: Record<string, Record<string, MethodScores>>;
  /** RL training curves (accuracy of the sampled completions per question type, moving average of 10 steps), mean over seeds. */
  curves: Record<string, { inferentialMin: number; inferentialMinStep: number; inferentialEnd: number; observationalEnd: number; allWrongInferentialEnd: number }>;
  /** What the run shows, checked against the paper's description. */
  effect: {
    grpoInferentialDrop: number; grpoObservationalGain: number;
    cdpoMinusGrpoInferential: number; cdpoMinusGrpoObservational: number;
    /** GRPO below SFT on inferential and above it on observational; CDPO >= 5 points above GRPO on inferential losing <= 2 on observational. */
    grpoShortcut: boolean; cdpoHelps: boolean;
  };
  recipe: ReproduceRecipe;
  data: string;
  seconds: number;
}

export interface ReproduceResult { dir: string; results: ReproduceResults; table: string; files: string[] }

const RECIPE_KEYS = Object.keys(REPRODUCE_RECIPES.full) as (keyof ReproduceRecipe)[];
const OPTION_KEYS = new Set<string>([...RECIPE_KEYS, 'out', 'data', 'seeds', 'quick', 'fresh', 'log', 'signal']);

function checkRecipe(r: ReproduceRecipe): ReproduceRecipe {
  for (const k of ['train', 'test', 'variant', 'sftRows', 'sftReasoningSteps', 'sftAnswerSteps', 'sftBatch', 'rlSteps', 'promptsPerStep', 'numGenerations', 'maxCompletionLength'] as const) {
    checkInteger(k, r[k], k === 'sftReasoningSteps' || k === 'sftAnswerSteps' ? 0 : 1, 10_000_000);
  }
  if (r.numGenerations < 2) throw rangeError('numGenerations', 'at least 2 (group advantages)', r.numGenerations);
  if (r.test < 2) throw rangeError('test', 'at least 2 questions (one of each type)', r.test);
  checkInteger('dataSeed', r.dataSeed, 0, 2 ** 32 - 1);
  for (const k of ['sftLr', 'rlLr', 'biasLr'] as const) checkNumber(k, r[k], 0, 1, { exclusiveMin: true });
  if (r.preset !== 'tiny' && r.preset !== 'small') throw rangeError('preset', "'tiny' or 'small'", r.preset);
  for (const k of ['cdpoBetas', 'klBetas'] as const) {
    if (!Array.isArray(r[k]) || r[k].length === 0) throw typeError(k, 'a non-empty array of numbers', r[k]);
    r[k].forEach((b, i) => checkNumber(`${k}[${i}]`, b, 0, 100, { exclusiveMin: true }));
  }
  checkNumber('cdpoBeta', r.cdpoBeta, 0, 100, { exclusiveMin: true });
  if (!r.cdpoBetas.includes(r.cdpoBeta)) r.cdpoBetas = [...r.cdpoBetas, r.cdpoBeta].sort((a, b) => a - b);
  return r;
}

const fmtBeta = (b: number) => String(b);
const mean = (v: readonly number[]) => v.reduce((a, b) => a + b, 0) / Math.max(1, v.length);
const sampleStd = (v: readonly number[]) => {
  if (v.length < 2) return 0;
  const m = mean(v);
  return Math.sqrt(v.reduce((a, b) => a + (b - m) ** 2, 0) / (v.length - 1));
};

/** Runs the reproduction (or continues it: finished stages are reused unless `fresh`). */
export async function reproduce(options: ReproduceOptions = {}): Promise<ReproduceResult> {
  const o = checkOptions('options', options);
  for (const k of Object.keys(o)) if (!OPTION_KEYS.has(k)) throw rangeError(`options.${k}`, `no such option (known: ${[...OPTION_KEYS].join(', ')})`, (o as Record<string, unknown>)[k]);
  if (o.quick !== undefined && typeof o.quick !== 'boolean') throw typeError('quick', 'a boolean', o.quick);
  if (o.fresh !== undefined && typeof o.fresh !== 'boolean') throw typeError('fresh', 'a boolean', o.fresh);
  const base = REPRODUCE_RECIPES[o.quick ? 'quick' : 'full'];
  const recipe = checkRecipe({ ...base, cdpoBetas: [...base.cdpoBetas], klBetas: [...base.klBetas], ...Object.fromEntries(RECIPE_KEYS.filter((k) => o[k] !== undefined).map((k) => [k, o[k]])) } as ReproduceRecipe);
  const seeds = o.seeds ?? (o.quick ? [1] : [1, 2, 3]);
  if (!Array.isArray(seeds) || seeds.length === 0) throw typeError('seeds', 'a non-empty array of integer seeds', seeds);
  seeds.forEach((s, i) => checkInteger(`seeds[${i}]`, s, 0, 2 ** 31 - 1));
  if (new Set(seeds).size !== seeds.length) throw rangeError('seeds', 'distinct seeds', seeds);
  if (o.out !== undefined && (typeof o.out !== 'string' || o.out === '')) throw typeError('out', 'a folder path', o.out);
  if (o.data !== undefined && (typeof o.data !== 'string' || o.data === '')) throw typeError('data', 'a folder path', o.data);
  if (o.log !== undefined && typeof o.log !== 'function') throw typeError('log', 'a function', o.log);
  if (o.signal !== undefined && !(o.signal instanceof AbortSignal)) throw typeError('signal', 'an AbortSignal', o.signal);
  const log = o.log ?? ((l: string) => process.stderr.write(l + '\n'));
  const signal = o.signal;
  const out = path.resolve(o.out ?? path.join('runs', 'reproduce'));
  const data = path.resolve(o.data ?? path.join(out, 'data'));
  mkdirSync(out, { recursive: true });
  // A run folder belongs to one recipe: finished stages of another would be reused as if they were
  // this one's. The sweeps may grow or shrink (each beta is its own stage).
  const recipeFile = path.join(out, 'recipe.json');
  const stageKeys = RECIPE_KEYS.filter((k) => k !== 'cdpoBetas' && k !== 'klBetas' && k !== 'cdpoBeta');
  if (!o.fresh && existsSync(recipeFile)) {
    const before = JSON.parse(readFileSync(recipeFile, 'utf8')) as Partial<ReproduceRecipe>;
    for (const k of stageKeys) {
      if (before[k] !== undefined && JSON.stringify(before[k]) !== JSON.stringify(recipe[k])) {
        throw rangeError(k, `${JSON.stringify(before[k])}, the value ${out} was run with (its finished stages belong to that recipe: pass fresh: true / --fresh, or another out)`, recipe[k]);
      }
    }
  }
  writeJsonAtomic(recipeFile, recipe);
  const t0 = performance.now();
  const since = () => `${((performance.now() - t0) / 1000).toFixed(0)} s`;

  // 1. The benchmark (once, for every seed).
  if (!existsSync(path.join(data, 'train.json'))) {
    log(`synth: ${recipe.train} training questions (74% observational), ${recipe.test} test, ${recipe.variant} variant -> ${data}`);
    await synth({ out: data, train: recipe.train, test: recipe.test, variant: recipe.variant, seed: recipe.dataSeed, overwrite: true, ...(signal ? { signal } : {}) });
  } else {
    log(`data: ${data} (exists)`);
  }
  const train = JSON.parse(readFileSync(path.join(data, 'train.json'), 'utf8')) as SynthRow[];
  const counterfactual = train.filter((r) => r.question_type === 'observational' || r.question_type === 'inferential');
  const half = Math.floor(recipe.sftRows / 2);
  const inf = counterfactual.filter((r) => r.question_type === 'inferential').slice(0, half);
  const obs = counterfactual.filter((r) => r.question_type === 'observational').slice(0, half);
  if (inf.length < half || obs.length < half) throw rangeError('sftRows', `at most twice the inferential training questions (${2 * inf.length})`, recipe.sftRows);
  // Interleaved so that every batch is balanced.
  const sftRows = inf.flatMap((r, i) => [r, obs[i]!]);
  const files = {
    reasoning: path.join(out, 'sft_reasoning.json'),
    answers: path.join(out, 'sft_answers.json'),
    rl: path.join(out, 'rl_train.json'),
    test: path.join(data, 'test.json'),
    variant: path.join(data, 'test_variant.json'),
  };
  writeJsonAtomic(files.reasoning, sftRows);
  writeJsonAtomic(files.answers, sftRows.map((r) => ({ ...r, process: '<think></think>' })));
  writeJsonAtomic(files.rl, counterfactual);
  const hasVariant = existsSync(files.variant) && recipe.variant > 0;

  const perSeed: Record<string, Record<string, MethodScores>> = {};
  const runsBySeed: Record<string, Record<string, string>> = {};
  const stageDone = (dir: string) => !o.fresh && existsSync(path.join(dir, 'eval.json')) && existsSync(path.join(dir, 'config.json'));

  const evaluate = async (dir: string): Promise<MethodScores> => {
    const m = await loadModel(dir);
    try {
      const settings = { maxNewTokens: recipe.maxCompletionLength, ...(signal ? { signal } : {}) };
      const t = await evaluateBatched(m, { data: files.test, ...settings });
      const v = hasVariant ? await evaluateBatched(m, { data: files.variant, ...settings }) : null;
      const scores: MethodScores = {
        observational: t.byQuestionType.observational?.accuracy ?? NaN,
        inferential: t.byQuestionType.inferential?.accuracy ?? NaN,
        overall: t.overall.accuracy,
        variant: v ? v.overall.accuracy : NaN,
        shortcut: t.shortcut.rate ?? NaN,
      };
      const strip = (r: typeof t) => ({ overall: r.overall, byQuestionType: r.byQuestionType, shortcut: r.shortcut, counts: r.counts });
      writeJsonAtomic(path.join(dir, 'eval.json'), { scores, test: strip(t), ...(v ? { variant: strip(v) } : {}) });
      return scores;
    } finally {
      m.dispose();
    }
  };
  const readScores = (dir: string): MethodScores => (JSON.parse(readFileSync(path.join(dir, 'eval.json'), 'utf8')) as { scores: MethodScores }).scores;
  const pct = (x: number) => (Number.isFinite(x) ? (100 * x).toFixed(1) : '-');
  const say = (seed: number, name: string, s: MethodScores, secs?: number) =>
    log(`[seed ${seed}] ${name.padEnd(12)} observational ${pct(s.observational)}  inferential ${pct(s.inferential)}  variant ${pct(s.variant)}  shortcut ${pct(s.shortcut)}${secs !== undefined ? `  (${secs.toFixed(0)} s)` : ''}  [${since()}]`);

  for (const seed of seeds) {
    const sd = path.join(out, `seed-${seed}`);
    mkdirSync(sd, { recursive: true });
    const scores: Record<string, MethodScores> = {};
    const runs: Record<string, string> = {};
    const stage = async (name: string, dir: string, train: () => Promise<unknown>) => {
      runs[name] = dir;
      if (stageDone(dir)) { scores[name] = readScores(dir); say(seed, name, scores[name], undefined); return; }
      signal?.throwIfAborted();
      const t = performance.now();
      await train();
      scores[name] = await evaluate(dir);
      say(seed, name, scores[name], (performance.now() - t) / 1000);
    };
    // 2. init + SFT warm-up (reasoning, then short answers).
    const baseDir = path.join(sd, 'base');
    const sftReasoning = path.join(sd, 'sft-reasoning');
    const sftDir = path.join(sd, 'sft');
    if (!stageDone(sftDir)) {
      if (o.fresh || !existsSync(path.join(baseDir, 'config.json'))) {
        await initModel({ preset: recipe.preset, tokenizer: path.join(data, 'tokenizer.json'), out: baseDir, seed, overwrite: true });
      }
    }
    const common = { progress: false as const, seed, saveDtype: 'f32' as const, videoRoot: data, resume: !o.fresh, saveEvery: 50, keepLast: 1, ...(signal ? { signal } : {}) };
    await stage('sft', sftDir, async () => {
      if (recipe.sftReasoningSteps > 0 && (o.fresh || !existsSync(path.join(sftReasoning, 'config.json')))) {
        await trainSft({ ...common, model: baseDir, data: [files.reasoning], out: sftReasoning, maxSteps: recipe.sftReasoningSteps, batchSize: recipe.sftBatch, lr: recipe.sftLr, schedule: 'cosine', warmupSteps: Math.min(20, recipe.sftReasoningSteps >> 2) });
      }
      await trainSft({ ...common, model: recipe.sftReasoningSteps > 0 ? sftReasoning : baseDir, data: [files.answers], out: sftDir, maxSteps: Math.max(1, recipe.sftAnswerSteps), batchSize: recipe.sftBatch, lr: recipe.sftLr, schedule: 'cosine', warmupSteps: Math.min(10, recipe.sftAnswerSteps >> 2) });
    });
    // 3. RL: every run from the SFT checkpoint, the same data order (seed) and settings.
    const rl: Omit<RlOptions, 'out'> = {
      ...common, model: sftDir, data: [files.rl], maxSteps: recipe.rlSteps, lr: recipe.rlLr, numGenerations: recipe.numGenerations,
      promptsPerStep: recipe.promptsPerStep, maxCompletionLength: recipe.maxCompletionLength,
    };
    const biasDir = path.join(sd, 'bias');
    await stage('bias', biasDir, () => trainBias({ ...rl, out: biasDir, lr: recipe.biasLr }));
    await stage('grpo', path.join(sd, 'grpo'), () => trainGrpo({ ...rl, out: path.join(sd, 'grpo') }));
    for (const b of recipe.cdpoBetas) {
      const name = `cdpo${fmtBeta(b)}`, dir = path.join(sd, name);
      await stage(name, dir, () => trainGrpo({ ...rl, out: dir, biasModel: biasDir, betaBias: b }));
    }
    for (const b of recipe.klBetas) {
      const name = `grpo_kl${fmtBeta(b)}`, dir = path.join(sd, name);
      await stage(name, dir, () => trainGrpo({ ...rl, out: dir, betaRef: b }));
    }
    scores.cdpo = scores[`cdpo${fmtBeta(recipe.cdpoBeta)}`]!;
    runs.cdpo = runs[`cdpo${fmtBeta(recipe.cdpoBeta)}`]!;
    perSeed[String(seed)] = scores;
    runsBySeed[String(seed)] = runs;
  }

  // 4. Aggregate, write, draw.
  const names = ['sft', 'bias', 'grpo', 'cdpo', ...recipe.cdpoBetas.map((b) => `cdpo${fmtBeta(b)}`), ...recipe.klBetas.map((b) => `grpo_kl${fmtBeta(b)}`)];
  const methods: ReproduceResults['methods'] = {};
  for (const n of names) {
    const vals = seeds.map((s) => perSeed[String(s)]![n]!);
    const agg = (k: keyof MethodScores): Spread => ({ mean: mean(vals.map((v) => v[k])), std: sampleStd(vals.map((v) => v[k])) });
    methods[n] = { observational: agg('observational'), inferential: agg('inferential'), overall: agg('overall'), variant: agg('variant'), shortcut: agg('shortcut') };
  }
  const curves: ReproduceResults['curves'] = {};
  for (const n of names.filter((x) => x !== 'sft')) {
    const per = seeds.map((s) => curveStats(runsBySeed[String(s)]![n]!));
    const m = (k: keyof ReturnType<typeof curveStats>) => mean(per.map((p) => p[k]));
    curves[n] = { inferentialMin: m('inferentialMin'), inferentialMinStep: m('inferentialMinStep'), inferentialEnd: m('inferentialEnd'), observationalEnd: m('observationalEnd'), allWrongInferentialEnd: m('allWrongInferentialEnd') };
  }
  const M = (n: string, k: 'observational' | 'inferential') => methods[n]![k].mean;
  const effect: ReproduceResults['effect'] = {
    grpoInferentialDrop: M('sft', 'inferential') - M('grpo', 'inferential'),
    grpoObservationalGain: M('grpo', 'observational') - M('sft', 'observational'),
    cdpoMinusGrpoInferential: M('cdpo', 'inferential') - M('grpo', 'inferential'),
    cdpoMinusGrpoObservational: M('cdpo', 'observational') - M('grpo', 'observational'),
    grpoShortcut: false, cdpoHelps: false,
  };
  effect.grpoShortcut = effect.grpoInferentialDrop > 0 && effect.grpoObservationalGain > 0;
  effect.cdpoHelps = effect.cdpoMinusGrpoInferential >= 0.05 && effect.cdpoMinusGrpoObservational >= -0.02;
  const results: ReproduceResults = { seeds, methods, perSeed, curves, effect, recipe, data, seconds: (performance.now() - t0) / 1000 };
  const table = formatTable(results);
  const written = [path.join(out, 'results.json'), path.join(out, 'results.md'), path.join(out, 'curves.svg'), path.join(out, 'frontier.svg')];
  writeJsonAtomic(written[0]!, results);
  writeTextAtomic(written[1]!, table);
  const first = runsBySeed[String(seeds[0])]!;
  const curveRuns = ['bias', 'grpo', 'cdpo', ...recipe.klBetas.slice(-1).map((b) => `grpo_kl${fmtBeta(b)}`)];
  writeTextAtomic(written[2]!, await plotRuns(curveRuns.map((n) => first[n]!), {
    labels: curveRuns.map((n) => (n === 'cdpo' ? `cdpo${fmtBeta(recipe.cdpoBeta)}` : n)),
    metrics: ['accuracy/observational', 'accuracy/inferential', 'allWrong/inferential', 'klBias', 'klRef'],
    smooth: 10, title: `RL training curves, seed ${seeds[0]} (sampled completions, moving average of 10 steps)`,
  }));
  writeTextAtomic(written[3]!, await frontierSvg(results));
  log(`wrote ${written.join(', ')} [${since()}]`);
  return { dir: out, results, table, files: written };
}

/** Statistics of an RL run's curves: the moving average (10 steps) of the sampled accuracy per type. */
function curveStats(run: string): { inferentialMin: number; inferentialMinStep: number; inferentialEnd: number; observationalEnd: number; allWrongInferentialEnd: number } {
  const rows = readMetrics(run);
  const smooth = (k: string) => {
    const pts = rows.filter((r) => typeof r[k] === 'number').map((r) => ({ step: r.step!, v: r[k]! }));
    return pts.map((p, i) => { const w = pts.slice(Math.max(0, i - 9), i + 1); return { step: p.step, v: mean(w.map((x) => x.v)) }; });
  };
  const inf = smooth('accuracy/inferential'), obs = smooth('accuracy/observational'), dead = smooth('allWrong/inferential');
  const min = inf.reduce((a, p) => (p.v < a.v ? p : a), inf[0] ?? { step: NaN, v: NaN });
  return {
    inferentialMin: min.v, inferentialMinStep: min.step, inferentialEnd: inf.at(-1)?.v ?? NaN,
    observationalEnd: obs.at(-1)?.v ?? NaN, allWrongInferentialEnd: dead.at(-1)?.v ?? NaN,
  };
}

const LABELS: Record<string, string> = { sft: 'SFT', bias: 'bias model', grpo: 'GRPO', cdpo: 'CDPO' };
function label(n: string, r: ReproduceResults): string {
  if (LABELS[n]) return n === 'cdpo' ? `CDPO (betaBias ${r.recipe.cdpoBeta})` : LABELS[n]!;
  if (n.startsWith('grpo_kl')) return `GRPO + KL to SFT (betaRef ${n.slice(7)})`;
  return `CDPO (betaBias ${n.slice(4)})`;
}

/** results.md: the table (mean ± std over seeds, in %), the effect as measured, the curves' minima. */
export function formatTable(r: ReproduceResults): string {
  const p = (s: Spread) => (Number.isFinite(s.mean) ? `${(100 * s.mean).toFixed(1)} ± ${(100 * s.std).toFixed(1)}` : '-');
  const lines = [
    `# Reproduction: ${r.seeds.length} seed(s) (${r.seeds.join(', ')}), ${(r.seconds / 60).toFixed(1)} min`,
    '',
    'Greedy accuracy in % on the balanced test split (observational / inferential), both types together (overall),',
    `the held-out variant split (overall), and the shortcut rate (inferential questions answered with the observed winner); mean ± std over seeds.`,
    '',
    '| method | observational | inferential | overall | variant | shortcut rate |',
    '|---|---|---|---|---|---|',
  ];
  // The sweep's run at the headline beta is the `cdpo` row itself.
  const headline = `cdpo${r.recipe.cdpoBeta}`;
  const order = ['sft', 'bias', 'grpo', 'cdpo', ...Object.keys(r.methods).filter((n) => n.startsWith('cdpo') && n !== 'cdpo' && n !== headline), ...Object.keys(r.methods).filter((n) => n.startsWith('grpo_kl'))];
  for (const n of order) {
    const m = r.methods[n]!;
    lines.push(`| ${label(n, r)} | ${p(m.observational)} | ${p(m.inferential)} | ${p(m.overall)} | ${p(m.variant)} | ${p(m.shortcut)} |`);
  }
  const e = r.effect, pts = (x: number) => `${x >= 0 ? '+' : ''}${(100 * x).toFixed(1)}`;
  lines.push('', '## The effect, as measured', '',
    `- GRPO against SFT: inferential ${pts(-e.grpoInferentialDrop)} points, observational ${pts(e.grpoObservationalGain)} (${e.grpoShortcut ? 'the shortcut: inferential down, observational up' : 'not the paper\'s pattern of inferential down and observational up'}).`,
    `- CDPO (betaBias ${r.recipe.cdpoBeta}) against GRPO: inferential ${pts(e.cdpoMinusGrpoInferential)}, observational ${pts(e.cdpoMinusGrpoObservational)} (${e.cdpoHelps ? 'meets' : 'misses'} the target of >= +5 inferential and >= -2 observational).`,
    '', '## RL training curves (sampled completions, moving average of 10 steps; mean over seeds)', '',
    '| run | inferential: minimum (step) | inferential: end | observational: end | inferential prompts with every sample wrong: end |',
    '|---|---|---|---|---|');
  for (const [n, c] of Object.entries(r.curves)) {
    if (n === headline) continue;
    const q = (x: number) => (Number.isFinite(x) ? (100 * x).toFixed(1) : '-');
    lines.push(`| ${label(n, r)} | ${q(c.inferentialMin)} (${Number.isFinite(c.inferentialMinStep) ? c.inferentialMinStep.toFixed(0) : '-'}) | ${q(c.inferentialEnd)} | ${q(c.observationalEnd)} | ${q(c.allWrongInferentialEnd)} |`);
  }
  lines.push('');
  return lines.join('\n');
}

/** frontier.svg: observational against inferential accuracy, a point per run (mean over seeds), a line per method over its beta. */
export async function frontierSvg(r: ReproduceResults): Promise<string> {
  const values: { family: string; run: string; label: string; beta: number; observational: number; inferential: number }[] = [];
  for (const [n, m] of Object.entries(r.methods)) {
    if (n === 'cdpo') continue;
    const family = n.startsWith('cdpo') ? 'CDPO (over betaBias)' : n.startsWith('grpo_kl') ? 'GRPO + KL to SFT (over betaRef)' : label(n, r);
    const beta = n.startsWith('cdpo') ? Number(n.slice(4)) : n.startsWith('grpo_kl') ? Number(n.slice(7)) : 0;
    const tag = n.startsWith('cdpo') ? `CDPO ${beta}` : n.startsWith('grpo_kl') ? `KL ${beta}` : n === 'sft' ? 'SFT' : n === 'bias' ? 'bias model' : n.toUpperCase();
    values.push({ family, run: n, label: tag, beta, observational: 100 * m.observational.mean, inferential: 100 * m.inferential.mean });
    // GRPO is beta = 0 of both families: each line starts there.
    if (n === 'grpo') {
      values.push({ family: 'CDPO (over betaBias)', run: n, label: '', beta: 0, observational: 100 * m.observational.mean, inferential: 100 * m.inferential.mean });
      values.push({ family: 'GRPO + KL to SFT (over betaRef)', run: n, label: '', beta: 0, observational: 100 * m.observational.mean, inferential: 100 * m.inferential.mean });
    }
  }
  const enc = {
    x: { field: 'observational', type: 'quantitative', title: 'observational accuracy (%)', scale: { zero: false } },
    y: { field: 'inferential', type: 'quantitative', title: 'inferential accuracy (%)', scale: { zero: false } },
    color: { field: 'family', type: 'nominal', title: null, legend: { orient: 'bottom', columns: 2, labelLimit: 400 } },
  };
  return renderSvg({
    $schema: 'https://vega.github.io/schema/vega-lite/v6.json',
    title: `Observational against inferential accuracy (test split, mean over ${r.seeds.length} seed(s))`,
    width: 480, height: 360,
    data: { values },
    layer: [
      { transform: [{ filter: "datum.family === 'CDPO (over betaBias)' || datum.family === 'GRPO + KL to SFT (over betaRef)'" }], mark: { type: 'line', point: true }, encoding: { ...enc, order: { field: 'beta', type: 'quantitative' } } },
      { mark: { type: 'point', filled: true, size: 60 }, encoding: enc },
      { mark: { type: 'text', dx: 6, dy: -6, align: 'left', fontSize: 9 }, encoding: { x: enc.x, y: enc.y, text: { field: 'label' } } },
    ],
  });
}

/** Reads a finished reproduction's results.json (for tools and tests). */
export function readResults(dir: string): ReproduceResults {
  const f = path.join(dir, 'results.json');
  if (!existsSync(f)) throw new RangeError(`Expected ${f} (a finished reproduction) but it does not exist`);
  return JSON.parse(readFileSync(f, 'utf8')) as ReproduceResults;
}

