// The training loop every trainer shares: micro-batches accumulated into one optimizer step,
// gradient clipping, AdamW with a schedule, one JSON line of metrics per step, a progress line,
// checkpoints (every K steps, at the end, and on SIGINT / SIGTERM / abort) that resume exactly.
//
// Exact resume rests on one rule: nothing a step does depends on hidden state. The data order and
// every random draw are functions of (seed, step, micro-batch, row), so a checkpoint needs only the
// weights (f32), the optimizer's moments and step count, and the step number. A run killed at any
// point (kill -9 included) resumes from its last checkpoint and retraces the same steps.
import { appendFileSync, existsSync, mkdirSync, readFileSync, readdirSync, renameSync, rmSync } from 'node:fs';
import path from 'node:path';

import { memoryStats, resetPeakMemory } from '../backend.js';
import { checkBoolean, checkInteger, checkNumber, checkOneOf, checkOptions, typeError } from '../errors.js';
import { writeJsonAtomic, writeTextAtomic } from '../files.js';
import type { QwenModel } from '../infer/model.js';
import { readSafetensors } from '../model/safetensors.js';
import { saveCheckpoint, writeFolderAtomic } from '../model/save.js';
import { AdamW, clipGradNorm, type AdamWOptions } from './optimizer.js';
import { schedule, type ScheduleKind } from './schedule.js';

export interface LoopOptions {
  /** The run folder: metrics.jsonl, checkpoint-<step>/, and the final model. */
  out: string;
  /** Optimizer steps of the whole run. */
  steps: number;
  /** Micro-batches per optimizer step (gradient accumulation; default 1). */
  gradAccum?: number;
  /** Peak learning rate (default 1e-5). */
  lr?: number;
  schedule?: ScheduleKind;
  warmupSteps?: number;
  minLrRatio?: number;
  /** Clip the total gradient norm to this (default 1; 0 turns clipping off). */
  maxGradNorm?: number;
  adamw?: Omit<AdamWOptions, 'lr'>;
  /** Checkpoint every K steps (default 0: only at the end and when stopped). */
  saveEvery?: number;
  /** Checkpoints kept (default 2; older ones are deleted). */
  keepLast?: number;
  /**
   * Continue from a checkpoint (default false: start anew). true: the latest in `out`, when there
   * is one. A path: that checkpoint folder (a `checkpoint-<step>` with its trainer_state.json), or
   * the latest checkpoint of that run folder; it must exist. The run goes on in `out` either way.
   */
  resume?: boolean | string;
  /** dtype of the final model's weights (default 'bf16'; checkpoints are always f32). */
  saveDtype?: 'bf16' | 'f16' | 'f32';
  /** Progress line on stderr: 'auto' (a redrawn line on a TTY, plain lines otherwise), true, false. Default 'auto'. */
  progress?: boolean | 'auto';
  /** Called after every step with its metrics. */
  onStep?: (m: StepMetrics) => void;
  /** Stops after the current step with a checkpoint, then rejects with the signal's reason. */
  signal?: AbortSignal;
  /** SIGINT / SIGTERM: finish the step, checkpoint, and return { stopped } (the CLI sets this). */
  handleSignals?: boolean;
}

/** What a trainer does in one micro-batch: forward and backward, adding into model.grads. */
export interface TrainTask {
  /**
   * Runs micro-batch `micro` of optimizer step `step`. The gradient must be scaled for the step
   * (e.g. divided by the micro-batch count); the loop zeroes the gradients before micro 0.
   */
  microStep(step: number, micro: number, microBatches: number): Promise<{ loss: number; tokens: number; metrics?: Record<string, number> }>;
  /** Extra fields for the metrics line of a step (called after the optimizer step). */
  stepMetrics?(step: number): Record<string, number>;
  /** Writes the task's own state (e.g. an RL rollout buffer) into a checkpoint folder being built. */
  saveState?(dir: string): void;
  /** Restores it when a run resumes from that checkpoint. */
  loadState?(dir: string): void;
}

export interface StepMetrics {
  step: number;
  loss: number;
  gradNorm: number;
  lr: number;
  tokens: number;
  tokensPerSecond: number;
  seconds: number;
  peakMemoryMiB: number;
  skippedSteps: number;
  /** The optimizer step's own time (the rest of `seconds` is forward, backward and, in RL, rollouts and scoring). */
  optimizerSeconds: number;
  [k: string]: number;
}

export interface LoopResult {
  /** Steps done in all (including before a resume). */
  step: number;
  /** The signal that stopped the run early, if any. */
  stopped?: 'SIGINT' | 'SIGTERM';
  resumedFrom?: number;
  skippedSteps: number;
  lastMetrics?: StepMetrics;
}

const CKPT = /^checkpoint-(\d+)$/;

/** The latest complete checkpoint folder of a run (complete: its trainer_state.json exists). */
export function latestCheckpoint(out: string): { dir: string; step: number } | undefined {
  if (!existsSync(out)) return undefined;
  let best: { dir: string; step: number } | undefined;
  for (const f of readdirSync(out)) {
    const m = CKPT.exec(f);
    if (!m) continue;
    const dir = path.join(out, f);
    if (!existsSync(path.join(dir, 'trainer_state.json'))) continue;
    const step = Number(m[1]);
    if (!best || step > best.step) best = { dir, step };
  }
  return best;
}


/** A checkpoint folder given by path, or the latest one in a run folder; a RangeError if neither. */
function checkpointAt(p: string): { dir: string; step: number } {
  const state = path.join(p, 'trainer_state.json');
  if (p !== '' && existsSync(state)) {
    let step: unknown;
    try { step = (JSON.parse(readFileSync(state, 'utf8')) as { step?: unknown }).step; } catch { step = undefined; }
    if (!Number.isInteger(step) || (step as number) < 0) throw new RangeError(`Expected a step in ${state} but it has none (a damaged checkpoint)`);
    return { dir: p, step: step as number };
  }
  const ck = p === '' ? undefined : latestCheckpoint(p);
  if (!ck) throw new RangeError(`Expected resume to be a checkpoint folder (with trainer_state.json) or a run folder holding one, but received '${p}'`);
  return ck;
}

/** Loads the trainable parameters saved in a checkpoint (f32, by name) into the model. */
function loadParameters(model: QwenModel, dir: string): void {
  const lora = model.trainOptions.lora !== undefined;
  const file = lora ? path.join(dir, 'adapter', 'adapter_model.safetensors') : path.join(dir, 'model', 'model.safetensors');
  const st = readSafetensors(file);
  const params = model.parameters();
  try {
    for (const [name, t] of params) {
      const src = st.tensors.get(lora ? `base_model.model.${name}` : name);
      if (!src) throw new RangeError(`Expected ${name} in ${file} (a checkpoint of another model?) but it is missing`);
      if (src.dtype !== 'f32' || src.numel !== t.numel) throw new RangeError(`Expected ${name} as f32 of ${t.numel} elements in ${file}`);
      (t.data as Float32Array).set(src.data as Float32Array);
    }
  } finally {
    st.dispose();
  }
}

function fmtTime(s: number): string {
  if (!Number.isFinite(s)) return '?';
  const m = Math.floor(s / 60), h = Math.floor(m / 60);
  return h ? `${h}h${String(m % 60).padStart(2, '0')}m` : m ? `${m}m${String(Math.floor(s % 60)).padStart(2, '0')}s` : `${s.toFixed(0)}s`;
}

/**
 * Trains `model` with `task` for `opts.steps` optimizer steps. The final model (or adapter, for a
 * LoRA run) is written into `out` itself, so that the run folder loads like a checkpoint folder.
 */
export async function trainLoop(model: QwenModel, task: TrainTask, opts: LoopOptions): Promise<LoopResult> {
  const o = checkOptions('options', opts);
  if (typeof o.out !== 'string' || o.out === '') throw typeError('out', 'a run folder path', o.out);
  const steps = checkInteger('steps', o.steps, 1);
  const accum = checkInteger('gradAccum', o.gradAccum ?? 1, 1, 1 << 20);
  const baseLr = checkNumber('lr', o.lr ?? 1e-5, 0, 10);
  const kind = checkOneOf('schedule', o.schedule ?? 'constant', ['cosine', 'linear', 'constant']);
  const sched = schedule(kind, { warmupSteps: o.warmupSteps ?? 0, totalSteps: steps, minLrRatio: o.minLrRatio ?? 0 });
  const maxNorm = checkNumber('maxGradNorm', o.maxGradNorm ?? 1, 0, Infinity);
  const saveEvery = checkInteger('saveEvery', o.saveEvery ?? 0, 0);
  const keepLast = checkInteger('keepLast', o.keepLast ?? 2, 1);
  const resume = o.resume === undefined ? false : typeof o.resume === 'string' ? o.resume : checkBoolean('resume', o.resume);
  const from = typeof resume === 'string' ? checkpointAt(resume) : undefined;  // checked before anything is written
  const saveDtype = checkOneOf('saveDtype', o.saveDtype ?? 'bf16', ['bf16', 'f16', 'f32']);
  if (o.signal !== undefined && !(o.signal instanceof AbortSignal)) throw typeError('signal', 'an AbortSignal', o.signal);
  if (!model.training) throw new TypeError('Expected a model loaded with { train } (loadModel(dir, { train: true }))');
  const progress = o.progress ?? 'auto';
  const tty = progress === 'auto' ? Boolean(process.stderr.isTTY) : progress === true;
  const quiet = progress === false;

  mkdirSync(o.out, { recursive: true });
  const metricsFile = path.join(o.out, 'metrics.jsonl');
  const opt = new AdamW(model, { lr: baseLr, ...(o.adamw ?? {}) });
  let start = 0;
  let resumedFrom: number | undefined;
  if (resume !== false) {
    const ck = from ?? latestCheckpoint(o.out);
    if (ck) {
      loadParameters(model, ck.dir);
      await opt.load(ck.dir);
      task.loadState?.(ck.dir);
      start = ck.step;
      resumedFrom = ck.step;
      if (!quiet) process.stderr.write(`resuming from ${ck.dir} (step ${ck.step})\n`);
    } else if (!quiet) {
      process.stderr.write(`no checkpoint in ${o.out}: starting from the beginning\n`);
    }
  }
  // The metrics of steps after the checkpoint (a run killed later) are dropped: they are redone.
  if (existsSync(metricsFile)) {
    const keep = readFileSync(metricsFile, 'utf8').split('\n').filter((l) => {
      if (!l.trim()) return false;
      try { return (JSON.parse(l) as { step: number }).step <= start; } catch { return false; }
    });
    writeTextAtomic(metricsFile, keep.map((l) => l + '\n').join(''));
  }

  const checkpoint = (step: number) => {
    const dir = path.join(o.out, `checkpoint-${step}`);
    const lora = model.trainOptions.lora !== undefined;
    writeFolderAtomic(dir, (tmp) => {
      if (lora) model.saveAdapter(path.join(tmp, 'adapter'), model.checkpoint?.dir ?? '');
      else saveCheckpoint(model, path.join(tmp, 'model'), { dtype: 'f32' }, model.checkpoint?.dir);
      opt.saveSync(tmp);
      task.saveState?.(tmp);
      writeJsonAtomic(path.join(tmp, 'trainer_state.json'), { step, steps, skippedSteps: opt.skippedSteps, time: new Date().toISOString() });
    });
    // Older checkpoints go once the new one is in place.
    const all = readdirSync(o.out).map((f) => CKPT.exec(f)).filter((m): m is RegExpExecArray => m !== null).map((m) => Number(m[1])).sort((a, b) => a - b);
    for (const s of all.slice(0, Math.max(0, all.length - keepLast))) rmSync(path.join(o.out, `checkpoint-${s}`), { recursive: true, force: true });
  };

  let stopped: 'SIGINT' | 'SIGTERM' | undefined;
  const onSig = (sig: 'SIGINT' | 'SIGTERM') => () => { stopped = sig; };
  const sigint = onSig('SIGINT'), sigterm = onSig('SIGTERM');
  if (o.handleSignals) { process.on('SIGINT', sigint); process.on('SIGTERM', sigterm); }
  const t0 = performance.now();
  let last: StepMetrics | undefined;
  let lastSaved = start;
  try {
    for (let step = start; step < steps; step++) {
      const ts = performance.now();
      resetPeakMemory();
      const live = memoryStats().liveBytes;
      // The fused LM-head kernels of micro 0 overwrite the head's gradient (accumulate: false),
      // but model.backward() only adds into the rest of the store: it has no overwrite mode, so
      // the store (one parallel memset) is zeroed first.
      model.zeroGrad();
      let loss = 0, tokens = 0;
      const extra: Record<string, number> = {};
      for (let k = 0; k < accum; k++) {
        const r = await task.microStep(step, k, accum);
        loss += r.loss / accum;
        tokens += r.tokens;
        for (const [key, v] of Object.entries(r.metrics ?? {})) extra[key] = (extra[key] ?? 0) + v / accum;
      }
      const gradNorm = maxNorm > 0 ? await clipGradNorm(model, maxNorm) : NaN;
      const lr = baseLr * sched(step);
      const tOpt = performance.now();
      const res = await opt.step({ lr });
      const optimizerSeconds = (performance.now() - tOpt) / 1000;
      const seconds = (performance.now() - ts) / 1000;
      const m: StepMetrics = {
        step: step + 1, loss, gradNorm: maxNorm > 0 ? gradNorm : res.gradNorm, lr, tokens, tokensPerSecond: tokens / seconds, seconds,
        peakMemoryMiB: (memoryStats().peakBytes - live) / 2 ** 20, skippedSteps: opt.skippedSteps, optimizerSeconds,
        ...extra, ...(task.stepMetrics?.(step) ?? {}),
      };
      appendFileSync(metricsFile, JSON.stringify(m) + '\n');
      last = m;
      o.onStep?.(m);
      if (!quiet) {
        const done = step + 1 - start, left = steps - step - 1;
        const eta = ((performance.now() - t0) / 1000 / done) * left;
        const line = `step ${step + 1}/${steps}  loss ${loss.toFixed(4)}  grad ${m.gradNorm.toFixed(3)}  lr ${lr.toExponential(2)}  ${m.tokensPerSecond.toFixed(0)} tok/s${rlPart(m)}  ETA ${fmtTime(eta)}${res.skipped ? '  (step skipped: non-finite gradient)' : ''}`;
        if (tty) {
          // a bar on a terminal, redrawn in place; plain lines otherwise (logs, pipes)
          const w = 20, fill = Math.round((w * (step + 1)) / steps);
          process.stderr.write(`\r\x1b[K[${'#'.repeat(fill)}${'.'.repeat(w - fill)}] ${line}`);
        } else {
          process.stderr.write(`${line}\n`);
        }
      }
      const aborted = o.signal?.aborted ?? false;
      if ((saveEvery && (step + 1) % saveEvery === 0) || stopped || aborted) {
        checkpoint(step + 1);
        lastSaved = step + 1;
      }
      if (aborted) throw o.signal!.reason ?? new Error('Aborted');
      if (stopped) return { step: step + 1, stopped, skippedSteps: opt.skippedSteps, ...(resumedFrom !== undefined ? { resumedFrom } : {}), ...(last ? { lastMetrics: last } : {}) };
    }
    if (tty && !quiet) process.stderr.write('\n');
    if (lastSaved < steps) checkpoint(steps);
    // The final model (or adapter) in the run folder itself: file by file, each atomic.
    const lora = model.trainOptions.lora !== undefined;
    const fin = path.join(o.out, `.final-${process.pid}`);
    rmSync(fin, { recursive: true, force: true });
    if (lora) model.saveAdapter(fin, model.checkpoint?.dir ? path.resolve(model.checkpoint.dir) : '');
    else saveCheckpoint(model, fin, { dtype: saveDtype }, model.checkpoint?.dir);
    for (const f of readdirSync(fin)) renameSync(path.join(fin, f), path.join(o.out, f));
    rmSync(fin, { recursive: true, force: true });
    writeJsonAtomic(path.join(o.out, 'trainer_state.json'), { step: steps, steps, done: true, skippedSteps: opt.skippedSteps });
    return { step: steps, skippedSteps: opt.skippedSteps, ...(resumedFrom !== undefined ? { resumedFrom } : {}), ...(last ? { lastMetrics: last } : {}) };
  } finally {
    if (o.handleSignals) { process.off('SIGINT', sigint); process.off('SIGTERM', sigterm); }
    opt.dispose();
  }
}

/** The RL trainers' reward and accuracy per question type, for the progress line ('' for SFT). */
function rlPart(m: StepMetrics): string {
  const r = m as unknown as Record<string, unknown>;
  let out = typeof r.reward === 'number' ? `  reward ${r.reward.toFixed(3)}` : '';
  for (const [k, v] of Object.entries(r)) {
    if (k.startsWith('accuracy/') && typeof v === 'number') out += `  ${k.slice(9)} ${(100 * v).toFixed(0)}%`;
  }
  return out;
}
