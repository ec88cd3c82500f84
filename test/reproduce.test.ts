// The reproduction pipeline (npm run reproduce) in its --quick form, as a user runs it: it completes,
// its results.json has the documented shape with accuracies that agree with each stage's own
// evaluation, results.md / curves.svg / frontier.svg are written, a second run reuses every
// finished stage and gives the same numbers, and bad options are refused. That CDPO wins is not
// tested (the quick run trains for seconds); the full run's numbers are in the README.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { test } from 'uvu';
import * as assert from 'uvu/assert';

import { formatTable, readResults, reproduce, REPRODUCE_RECIPES, type ReproduceResults } from '../src/index.js';
import { rejectsLike } from './helpers.js';
import { skipWithoutFfmpeg } from './synth_fixture.js';

const ROOT = path.join(path.dirname(fileURLToPath(import.meta.url)), '..');
const TSX = import.meta.resolve('tsx');
const TMP = mkdtempSync(path.join(tmpdir(), 'vt-reproduce-'));
const OUT = path.join(TMP, 'run');
const cli = (...args: string[]) => spawnSync(process.execPath, ['--import', TSX, path.join(ROOT, 'src', 'cli', 'index.ts'), 'reproduce', ...args],
  { cwd: TMP, encoding: 'utf8', timeout: 540_000 });

const METHODS = ['sft', 'bias', 'grpo', 'cdpo', 'cdpo0.1', 'grpo_kl0.04'];
const STAGES = ['sft', 'bias', 'grpo', 'cdpo0.1', 'grpo_kl0.04'];
let first: ReproduceResults | undefined;

test('npm run reproduce -- --quick: completes and writes well-formed results', () => {
  if (skipWithoutFfmpeg()) return;
  const r = cli('--quick', '--out', OUT);
  assert.is(r.status, 0, r.stderr.slice(-3000));
  // the table on stdout, progress on stderr
  assert.match(r.stdout, /\| method \| observational \| inferential \| overall \| variant \| shortcut rate \|/);
  assert.match(r.stdout, /\| GRPO \+ KL to SFT \(betaRef 0\.04\) \|/);
  for (const s of STAGES) assert.match(r.stderr, new RegExp(`\\[seed 1\\] ${s.replace('.', '\\.')}\\s+observational`));
  const res = readResults(OUT);
  first = res;
  assert.equal(res.seeds, [1]);
  assert.equal(Object.keys(res.methods).sort(), [...METHODS].sort());
  assert.equal(res.recipe, { ...REPRODUCE_RECIPES.quick });
  const test_ = JSON.parse(readFileSync(path.join(res.data, 'test.json'), 'utf8')) as { question_type: string }[];
  const nObs = test_.filter((q) => q.question_type === 'observational').length;
  assert.is(nObs * 2, test_.length, 'a balanced test split');
  for (const m of METHODS) {
    const x = res.methods[m]!;
    for (const k of ['observational', 'inferential', 'overall', 'variant', 'shortcut'] as const) {
      assert.ok(x[k].mean >= 0 && x[k].mean <= 1, `${m}.${k}.mean is a fraction (${x[k].mean})`);
      assert.is(x[k].std, 0, 'one seed: no spread');
    }
    // balanced: overall is the mean of the two types; each accuracy a whole number of questions
    assert.ok(Math.abs(x.overall.mean - (x.observational.mean + x.inferential.mean) / 2) < 1e-12, `${m}: overall of a balanced split`);
    assert.ok(Math.abs(x.observational.mean * nObs - Math.round(x.observational.mean * nObs)) < 1e-9);
  }
  assert.equal(res.methods.cdpo, res.methods['cdpo0.1'], 'cdpo is the sweep\'s run at the headline beta');
  // every stage: a loadable model folder and its own evaluation, which the results repeat
  for (const s of STAGES) {
    const dir = path.join(OUT, 'seed-1', s);
    assert.ok(existsSync(path.join(dir, 'config.json')) && existsSync(path.join(dir, 'model.safetensors')), `${s}: the model`);
    const ev = JSON.parse(readFileSync(path.join(dir, 'eval.json'), 'utf8')) as { scores: Record<string, number>; test: { byQuestionType: Record<string, { accuracy: number }> } };
    assert.is(res.perSeed['1']![s]!.inferential, ev.test.byQuestionType.inferential!.accuracy, `${s}: the table is the stage's evaluation`);
    assert.is(res.methods[s]!.observational.mean, ev.scores.observational);
  }
  // RL curves come from the runs' metrics; the effect summary is arithmetic on the table
  for (const s of ['bias', 'grpo', 'cdpo0.1', 'grpo_kl0.04']) {
    const lines = readFileSync(path.join(OUT, 'seed-1', s, 'metrics.jsonl'), 'utf8').trim().split('\n');
    assert.is(lines.length, REPRODUCE_RECIPES.quick.rlSteps, `${s}: one metrics line per step`);
  }
  assert.ok(Math.abs(res.effect.cdpoMinusGrpoInferential - (res.methods.cdpo!.inferential.mean - res.methods.grpo!.inferential.mean)) < 1e-12);
  assert.ok(Math.abs(res.effect.grpoInferentialDrop - (res.methods.sft!.inferential.mean - res.methods.grpo!.inferential.mean)) < 1e-12);
  assert.is(readFileSync(path.join(OUT, 'results.md'), 'utf8'), formatTable(res));
  for (const f of ['curves.svg', 'frontier.svg']) {
    const svg = readFileSync(path.join(OUT, f), 'utf8');
    assert.ok(svg.startsWith('<svg') && svg.trimEnd().endsWith('</svg>'), `${f} is an SVG`);
  }
  assert.match(readFileSync(path.join(OUT, 'frontier.svg'), 'utf8'), /observational accuracy/);
});

test('a second run reuses every finished stage and gives the same numbers; another recipe in that folder is refused', async () => {
  if (skipWithoutFfmpeg() || !first) return;
  const before = readFileSync(path.join(OUT, 'seed-1', 'grpo', 'model.safetensors'));
  const r = cli('--quick', '--out', OUT);
  assert.is(r.status, 0, r.stderr.slice(-2000));
  assert.match(r.stderr, /data: .* \(exists\)/);
  assert.not.match(r.stderr, /\(\d+ s\)/, 'no stage trained again');
  const again = readResults(OUT);
  assert.equal(again.methods, first.methods);
  assert.ok(readFileSync(path.join(OUT, 'seed-1', 'grpo', 'model.safetensors')).equals(before));
  // another recipe in the same folder would reuse stages that are not its own: refused, nothing run
  await rejectsLike(reproduce({ quick: true, out: OUT, rlSteps: 7, log: () => {} }), RangeError,
    /Expected 6, the value .* was run with \(.*--fresh.*\) for rlSteps but received 7/);
  assert.ok(readFileSync(path.join(OUT, 'seed-1', 'grpo', 'model.safetensors')).equals(before));
  assert.equal(JSON.parse(readFileSync(path.join(OUT, 'recipe.json'), 'utf8')), { ...REPRODUCE_RECIPES.quick }, 'the folder keeps its recipe');
});

test('bad options: named errors, nothing run', async () => {
  await rejectsLike(reproduce({ quick: true, seeds: [] }), TypeError, /non-empty array of integer seeds for seeds/);
  await rejectsLike(reproduce({ quick: true, seeds: [1, 1] }), RangeError, /distinct seeds for seeds/);
  await rejectsLike(reproduce({ quick: true, rlSteps: 0 }), RangeError, /for rlSteps but received 0/);
  await rejectsLike(reproduce({ quick: true, numGenerations: 1 }), RangeError, /at least 2 \(group advantages\) for numGenerations/);
  await rejectsLike(reproduce({ quick: true, cdpoBetas: [0.1, -1] }), RangeError, /cdpoBetas\[1\]/);
  await rejectsLike(reproduce({ quick: true, klBetas: [] }), TypeError, /non-empty array of numbers for klBetas/);
  await rejectsLike(reproduce({ quick: true, preset: 'huge' as never }), RangeError, /'tiny' or 'small' for preset/);
  await rejectsLike(reproduce({ quick: 'yes' as never }), TypeError, /boolean for quick/);
  await rejectsLike(reproduce({ quick: true, steps: 3 } as never), RangeError, /no such option .* for options\.steps/);
  const none = path.join(TMP, 'never');
  await rejectsLike(reproduce({ quick: true, out: none, log: () => {}, signal: AbortSignal.abort(new Error('stop now')) }), Error, /stop now/);
  const bad = cli('--quick', '--seeds', '1,x');
  assert.is(bad.status, 1);
  assert.match(bad.stderr, /Expected a number for --seeds but received 'x'/);
  const unknown = cli('--fast');
  assert.is(unknown.status, 2);
  assert.match(unknown.stderr, /Unknown option '--fast'/);
});

test.after(() => rmSync(TMP, { recursive: true, force: true }));
test.run();
