// Options every training command shares (the training loop's), parsed once.
import type { LoopOptions } from '../index.js';
import { int, num, UsageError } from './args.js';

export const LOOP_FLAGS = {
  model: { type: 'string' }, data: { type: 'string', multiple: true }, out: { type: 'string' }, 'video-root': { type: 'string' },
  lr: { type: 'string' }, schedule: { type: 'string' }, 'warmup-steps': { type: 'string' }, 'min-lr-ratio': { type: 'string' },
  'grad-accum': { type: 'string' }, 'batch-size': { type: 'string' }, 'max-steps': { type: 'string' }, epochs: { type: 'string' },
  'max-grad-norm': { type: 'string' }, 'weight-decay': { type: 'string' }, 'save-every': { type: 'string' }, 'keep-last': { type: 'string' },
  'save-dtype': { type: 'string' }, resume: { type: 'boolean' }, 'resume-from': { type: 'string' }, seed: { type: 'string' }, 'lora-rank': { type: 'string' },
  'lora-alpha': { type: 'string' }, 'freeze-vision': { type: 'boolean' }, recompute: { type: 'string' }, 'on-bad-row': { type: 'string' },
  quiet: { type: 'boolean' },
} as const;

export const LOOP_HELP = `Data and model:
  --model DIR          the checkpoint folder to start from (required)
  --data FILE          question file (JSON array or JSON lines, Video-R1 format); repeatable (required)
  --out DIR            the run folder: metrics.jsonl, checkpoint-<step>/, the final model (required)
  --video-root DIR     where relative video paths point (default: each JSON file's folder)
  --on-bad-row P       skip (default: reported) or fail
Schedule:
  --epochs N           passes over the data (default 1)      --max-steps N   optimizer steps (overrides epochs)
  --batch-size N       rows per micro-batch (default 1)       --grad-accum N  micro-batches per step (default 1)
  --lr X               peak learning rate (default 1e-5)      --schedule S    constant (default), linear or cosine
  --warmup-steps N     --min-lr-ratio X                       --max-grad-norm X  (default 1; 0: no clipping)
  --weight-decay X     AdamW's (default 0.01; none on biases and norms)
Parameters:
  --lora-rank R        LoRA adapters of rank R instead of full fine-tuning (--lora-alpha, default 2R)
  --freeze-vision      the vision tower does not train     --recompute layer   less memory, one more forward
Checkpoints:
  --save-every K       a checkpoint every K steps (default: at the end; always on Ctrl-C / SIGTERM)
  --keep-last N        checkpoints kept (default 2)           --resume        continue from the latest checkpoint
  --resume-from DIR    continue from that checkpoint (or that run folder's latest), writing to --out
  --save-dtype D       the final model's dtype: bf16 (default), f16, f32
  --seed S             data order and sampling (default 0)   --quiet         no progress line`;

type V = { [K in keyof typeof LOOP_FLAGS]?: (typeof LOOP_FLAGS)[K]['type'] extends 'boolean' ? boolean : (typeof LOOP_FLAGS)[K] extends { multiple: true } ? string[] : string };

/** The loop and data options of a training command, with --model, --data and --out required. */
export function loopOptions(cmd: string, v: V) {
  if (!v.model) throw new UsageError('--model DIR is required', cmd);
  if (!v.data || v.data.length === 0) throw new UsageError('--data FILE is required', cmd);
  if (!v.out) throw new UsageError('--out DIR is required', cmd);
  const o: Partial<LoopOptions> & Record<string, unknown> = { out: v.out, handleSignals: true };
  const set = (k: string, x: unknown) => { if (x !== undefined) o[k] = x; };
  set('lr', num('lr', v.lr)); set('schedule', v.schedule); set('warmupSteps', int('warmup-steps', v['warmup-steps']));
  set('minLrRatio', num('min-lr-ratio', v['min-lr-ratio'])); set('gradAccum', int('grad-accum', v['grad-accum']));
  set('maxGradNorm', num('max-grad-norm', v['max-grad-norm'])); set('saveEvery', int('save-every', v['save-every']));
  set('keepLast', int('keep-last', v['keep-last'])); set('saveDtype', v['save-dtype']); set('resume', v.resume);
  if (v['resume-from'] !== undefined) {
    if (v.resume) throw new UsageError('give --resume or --resume-from DIR, not both', cmd);
    o.resume = v['resume-from'];
  }
  if (v['weight-decay'] !== undefined) o.adamw = { weightDecay: num('weight-decay', v['weight-decay'])! };
  if (v.quiet) o.progress = false;
  const d: Record<string, unknown> = { model: v.model, data: v.data };
  const setd = (k: string, x: unknown) => { if (x !== undefined) d[k] = x; };
  setd('videoRoot', v['video-root']); setd('onBadRow', v['on-bad-row']); setd('batchSize', int('batch-size', v['batch-size']));
  setd('maxSteps', int('max-steps', v['max-steps'])); setd('epochs', num('epochs', v.epochs)); setd('seed', int('seed', v.seed));
  setd('loraRank', int('lora-rank', v['lora-rank'])); setd('loraAlpha', num('lora-alpha', v['lora-alpha']));
  if (v['freeze-vision']) d.freezeVision = true;
  setd('recompute', v.recompute);
  return { ...o, ...d };
}

/** Prints where the run ended; the exit code (130 for Ctrl-C, 143 for SIGTERM). */
export function finish(r: { step: number; stopped?: string; resumedFrom?: number; skippedSteps: number; lastMetrics?: { loss: number } }, out: string): number {
  const how = r.stopped ? `stopped by ${r.stopped} after step ${r.step} (checkpoint written; --resume continues)` : `done: ${r.step} steps`;
  console.log(`${how}${r.resumedFrom !== undefined ? `, resumed from step ${r.resumedFrom}` : ''}; last loss ${r.lastMetrics?.loss.toFixed(4) ?? '-'}; ` +
    `${r.skippedSteps} step(s) skipped for non-finite gradients; run folder ${out}`);
  return r.stopped === 'SIGINT' ? 130 : r.stopped === 'SIGTERM' ? 143 : 0;
}
