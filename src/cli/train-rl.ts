// videothinker train-grpo / train-bias / train-cdpo: the RL trainers from the command line.
import { trainBias, trainCdpo, trainGrpo, type RlOptions } from '../index.js';
import { COMMON_HELP, int, num, parse, UsageError } from './args.js';
import { finish, LOOP_FLAGS, LOOP_HELP, loopOptions } from './train.js';

const RL_FLAGS = {
  ...LOOP_FLAGS,
  bias: { type: 'string' }, ref: { type: 'string' }, 'beta-bias': { type: 'string' }, 'beta-ref': { type: 'string' }, 'kl-clamp': { type: 'string' },
  'num-generations': { type: 'string' }, 'prompts-per-step': { type: 'string' }, 'steps-per-generation': { type: 'string' },
  'num-iterations': { type: 'string' }, 'loss-type': { type: 'string' }, 'scale-rewards': { type: 'string' }, 'eps-low': { type: 'string' },
  'eps-high': { type: 'string' }, delta: { type: 'string' }, 'importance-sampling': { type: 'string' }, 'mask-truncated': { type: 'boolean' },
  'top-entropy-quantile': { type: 'string' }, 'max-completion-length': { type: 'string' }, temperature: { type: 'string' },
  'top-p': { type: 'string' }, 'top-k': { type: 'string' }, rewards: { type: 'string' }, 'reward-weights': { type: 'string' },
  'dynamic-sampling': { type: 'boolean' }, algorithm: { type: 'string' }, 'question-field': { type: 'string' }, 'question-value': { type: 'string' },
} as const;

const RL_HELP = `RL:
  --num-generations N  completions per prompt (default 8)     --prompts-per-step N   (default 1)
  --steps-per-generation N   --num-iterations N (mu)          --max-completion-length N (default 256)
  --temperature T (default 1)  --top-p P  --top-k K           --rewards accuracy,format (built in; default both)
  --reward-weights 1,1         --loss-type grpo|bnpo|dr_grpo|dapo  --scale-rewards group|batch|none
  --eps-low X (0.2) --eps-high X (0.28) --delta X             --importance-sampling token|sequence
  --mask-truncated             --top-entropy-quantile Q       --dynamic-sampling (DAPO)
  --ref DIR  --beta-ref X      pull toward a reference model (default: the starting policy when beta-ref > 0)
  --algorithm grpo|t-grpo|tw-grpo   Video-R1's temporal reward / TW-GRPO's token weights`;

function rlOptions(cmd: string, v: Record<string, unknown>): RlOptions {
  const o = loopOptions(cmd, v as Parameters<typeof loopOptions>[1]) as unknown as RlOptions & Record<string, unknown>;
  const s = (k: string) => v[k] as string | undefined;
  const set = (k: string, x: unknown) => { if (x !== undefined) o[k] = x; };
  set('biasModel', s('bias')); set('refModel', s('ref')); set('betaBias', num('beta-bias', s('beta-bias'))); set('betaRef', num('beta-ref', s('beta-ref')));
  set('klClamp', num('kl-clamp', s('kl-clamp'))); set('numGenerations', int('num-generations', s('num-generations')));
  set('promptsPerStep', int('prompts-per-step', s('prompts-per-step'))); set('stepsPerGeneration', int('steps-per-generation', s('steps-per-generation')));
  set('numIterations', int('num-iterations', s('num-iterations'))); set('lossType', s('loss-type')); set('scaleRewards', s('scale-rewards'));
  set('epsLow', num('eps-low', s('eps-low'))); set('epsHigh', num('eps-high', s('eps-high'))); set('delta', num('delta', s('delta')));
  set('importanceSampling', s('importance-sampling')); if (v['mask-truncated']) o.maskTruncatedCompletions = true;
  set('topEntropyQuantile', num('top-entropy-quantile', s('top-entropy-quantile'))); set('maxCompletionLength', int('max-completion-length', s('max-completion-length')));
  set('temperature', num('temperature', s('temperature'))); set('topP', num('top-p', s('top-p'))); set('topK', int('top-k', s('top-k')));
  if (s('rewards') !== undefined) {
    const r = s('rewards')!.split(',').map((x) => x.trim());
    for (const x of r) if (x !== 'accuracy' && x !== 'format') throw new UsageError(`Unknown reward '${x}' for --rewards (built in: accuracy, format; user rewards come from code)`, cmd);
    o.rewards = r as ('accuracy' | 'format')[];
  }
  if (s('reward-weights') !== undefined) o.rewardWeights = s('reward-weights')!.split(',').map((x) => num('reward-weights', x.trim())!);
  if (v['dynamic-sampling']) o.dynamicSampling = true;
  set('algorithm', s('algorithm'));
  return o;
}

function command(name: 'train-grpo' | 'train-bias' | 'train-cdpo', summary: string, usage: string, run: (o: RlOptions & Record<string, unknown>) => ReturnType<typeof trainGrpo>) {
  return {
    summary,
    help: `Usage: videothinker ${name} ${usage} [options]\n\n${summary}.\n\n${LOOP_HELP}\n${RL_HELP}\n${COMMON_HELP}`,
    async run(argv: string[]): Promise<number> {
      const a = parse(name, argv, RL_FLAGS, 0);
      if (!a) { console.log(this.help); return 0; }
      const o = rlOptions(name, a.values as Record<string, unknown>) as RlOptions & Record<string, unknown>;
      if (name === 'train-cdpo' && !o.biasModel) throw new UsageError('--bias DIR (the bias model: a train-bias run folder) is required', name);
      if (name === 'train-bias') {
        if (a.values['question-field'] !== undefined) o.questionField = a.values['question-field'];
        if (a.values['question-value'] !== undefined) o.questionValue = a.values['question-value'];
      }
      return finish(await run(o), o.out);
    },
  };
}

export const grpo = command('train-grpo', 'GRPO (the baseline; T-GRPO and TW-GRPO with --algorithm)', '--model DIR --data FILE --out DIR', (o) => trainGrpo(o));
export const bias = command('train-bias', "Bias-Aware Training: GRPO without KL on the observational questions only (rows whose question_type is 'observational'; --question-field / --question-value change that)",
  '--model DIR --data FILE --out DIR', (o) => trainBias(o));
export const cdpo = command('train-cdpo', 'CDPO: GRPO pushed away from the frozen bias model (--beta-bias, default 0.01), which scores the policy\'s completions',
  '--model DIR --bias DIR --data FILE --out DIR', (o) => trainCdpo(o));
