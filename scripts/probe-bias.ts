// A probe beside the reproduction (docs/reproduction.md, "A bias model that sees the marked ball
// win"): Bias-Aware Training on the observational questions plus a descriptive "Which ball
// finishes first?" about every training video, whose answer is the observed winner, so that the
// bias model also sees the marked ball win. Then CDPO from the same SFT model with it.
//
//   node --import tsx scripts/probe-bias.ts SEED BETAS   (e.g. 1 0.01,0.02,0.05)
//
// Reads a finished `npm run reproduce` folder (runs/reproduce: its data, rl_train.json and
// seed-N/sft) and writes runs/probe/seed-N/{bias-desc,cdpo-desc-<beta>}; prints each model's
// greedy test accuracy per type and shortcut rate.
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';

import { loadModel, SYNTH_TEXT, trainGrpo, type SynthRow } from '../src/index.js';
import { writeJsonAtomic } from '../src/files.js';
import { evaluateBatched } from '../src/train/evalbatch.js';

const R = 'runs/reproduce', data = path.join(R, 'data'), out = 'runs/probe';
const seed = Number(process.argv[2] ?? 1);
const betas = (process.argv[3] ?? '0.05').split(',').map(Number);
const recipe = JSON.parse(readFileSync(path.join(R, 'recipe.json'), 'utf8')) as Record<string, number>;
const rl = JSON.parse(readFileSync(path.join(R, 'rl_train.json'), 'utf8')) as SynthRow[];
const obs = rl.filter((r) => r.question_type === 'observational');
const desc = rl.map((r) => ({ ...r, problem: SYNTH_TEXT.winner(), solution: `<answer>${r.shortcut_answer}</answer>`, question_type: 'descriptive' as const }));
const file = path.join(out, 'bias_desc.json');
writeJsonAtomic(file, obs.flatMap((r, i) => [r, desc[i]!]).concat(desc.slice(obs.length)));

const sft = path.join(R, `seed-${seed}`, 'sft');
const common = {
  progress: false as const, seed, saveDtype: 'f32' as const, videoRoot: data, saveEvery: 50, keepLast: 1, model: sft, maxSteps: recipe.rlSteps!,
  numGenerations: recipe.numGenerations!, promptsPerStep: recipe.promptsPerStep!, maxCompletionLength: recipe.maxCompletionLength!,
};
async function report(name: string, dir: string): Promise<void> {
  const m = await loadModel(dir);
  try {
    const t = await evaluateBatched(m, { data: path.join(data, 'test.json'), maxNewTokens: recipe.maxCompletionLength! });
    const pct = (x: number | null | undefined) => (x === null || x === undefined ? '-' : (100 * x).toFixed(1));
    console.log(`[seed ${seed}] ${name.padEnd(16)} observational ${pct(t.byQuestionType.observational?.accuracy)}  inferential ${pct(t.byQuestionType.inferential?.accuracy)}  shortcut ${pct(t.shortcut.rate)}`);
  } finally {
    m.dispose();
  }
}
const biasDir = path.join(out, `seed-${seed}`, 'bias-desc');
if (!existsSync(path.join(biasDir, 'config.json'))) await trainGrpo({ ...common, data: [file], out: biasDir, lr: recipe.biasLr!, betaRef: 0, betaBias: 0 });
await report('bias-desc', biasDir);
for (const beta of betas) {
  const dir = path.join(out, `seed-${seed}`, `cdpo-desc-${beta}`);
  if (!existsSync(path.join(dir, 'config.json'))) await trainGrpo({ ...common, data: [path.join(R, 'rl_train.json')], out: dir, lr: recipe.rlLr!, biasModel: biasDir, betaBias: beta });
  await report(`cdpo-desc ${beta}`, dir);
}
