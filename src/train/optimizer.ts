// AdamW over a model's parameter store, and gradient clipping. The native model keeps every
// trainable parameter in one flat f32 master buffer and the gradients in a second of the same
// layout; the moments join in that layout, so one step is one native pass over four buffers
// (native/kernels/optim). The semantics are torch.optim.AdamW's and
// torch.nn.utils.clip_grad_norm_'s.
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import path from 'node:path';

import { checkNumber, checkOptions, typeError } from '../errors.js';
import { writeJsonAtomic } from '../files.js';
import { readSafetensors, writeSafetensors } from '../model/safetensors.js';
import type { QwenNetwork } from '../model/qwen.js';
import { native, type TensorDesc } from '../native.js';
import { Tensor } from '../tensor.js';

declare module '../native.js' {
  interface Binding {
    optimAdamW(p: TensorDesc, m: TensorDesc, v: TensorDesc, g: TensorDesc, segments: Float64Array,
      s: { lr: number; beta1: number; beta2: number; eps: number; gradScale: number; bc1: number; bc2: number }, async: boolean): undefined | Promise<undefined>;
    optimSumsq(g: TensorDesc, segments: Float64Array, async: boolean): number | Promise<number>;
    optimScale(g: TensorDesc, segments: Float64Array, scale: number, async: boolean): undefined | Promise<undefined>;
  }
}

/** Which parameters get no weight decay by default: biases and norm scales (transformers' Trainer does the same). */
export const DEFAULT_NO_DECAY = /(\.bias$)|(norm[^.]*\.weight$)|(ln_q\.weight$)/;

export interface AdamWOptions {
  /** Learning rate (default 1e-3, torch's). */
  lr?: number;
  betas?: readonly [number, number];
  eps?: number;
  /** Decoupled weight decay (default 0.01, torch's). */
  weightDecay?: number;
  /** Parameters that get no weight decay: a RegExp on the name or a predicate (default DEFAULT_NO_DECAY). */
  noDecay?: RegExp | ((name: string) => boolean);
}

export interface StepResult {
  /** The step was not applied: the gradient norm was NaN or infinite. */
  skipped: boolean;
  /** The L2 norm of all gradients as the step saw them. */
  gradNorm: number;
}

function flatOf(model: QwenNetwork): { master: Tensor; grads: Tensor } {
  const f = model.flat;
  if (!model.training || !f.master || !f.grads) throw new TypeError('Expected a model loaded with { train } and some trainable parameters (loadModel(dir, { train: true }))');
  return { master: f.master, grads: f.grads };
}

/** (offset, numel, weight decay) of every trainable parameter, by name order. */
function segmentsOf(model: QwenNetwork, wd: (name: string) => number): Float64Array {
  const ps = [...model.parameters()];
  const s = new Float64Array(ps.length * 3);
  ps.forEach(([name, t], i) => { s[3 * i] = t.offset; s[3 * i + 1] = t.numel; s[3 * i + 2] = wd(name); });
  return s;
}

/**
 * Rescales every gradient so that their total L2 norm is at most maxNorm, as
 * torch.nn.utils.clip_grad_norm_ does (factor maxNorm / (norm + 1e-6) when below 1; a NaN or
 * infinite norm makes the gradients NaN, which the next AdamW step then skips). Returns the norm
 * before clipping.
 */
export async function clipGradNorm(model: QwenNetwork, maxNorm: number): Promise<number> {
  checkNumber('maxNorm', maxNorm, 0, Infinity, { exclusiveMin: true });
  const { grads } = flatOf(model);
  const segs = segmentsOf(model, () => 0);
  const norm = Math.sqrt(await native.optimSumsq(grads._desc('grads'), segs, true));
  const coef = maxNorm / (norm + 1e-6);
  if (!(coef >= 1)) await native.optimScale(grads._desc('grads'), segs, coef, true);
  return norm;
}

/** AdamW (decoupled weight decay, bias correction) in the model's parameter-store layout. */
export class AdamW {
  readonly model: QwenNetwork;
  lr: number;
  readonly beta1: number;
  readonly beta2: number;
  readonly eps: number;
  readonly weightDecay: number;
  /** Optimizer steps applied (the bias-correction count). */
  stepCount = 0;
  /** Steps not applied because the gradient norm was not finite. */
  skippedSteps = 0;
  readonly expAvg: Tensor;
  readonly expAvgSq: Tensor;
  readonly #segments: Float64Array;
  readonly #noDecay: (name: string) => boolean;

  constructor(model: QwenNetwork, opts: AdamWOptions = {}) {
    const o = checkOptions('options', opts);
    const { master } = flatOf(model);
    this.model = model;
    this.lr = checkNumber('lr', o.lr ?? 1e-3, 0, Infinity);
    const betas = o.betas ?? [0.9, 0.999];
    if (!Array.isArray(betas) || betas.length !== 2) throw typeError('betas', 'a pair [beta1, beta2]', betas);
    this.beta1 = checkNumber('betas[0]', betas[0], 0, 1);
    this.beta2 = checkNumber('betas[1]', betas[1], 0, 1);
    if (this.beta1 === 1 || this.beta2 === 1) throw new RangeError('Expected betas below 1');
    this.eps = checkNumber('eps', o.eps ?? 1e-8, 0, Infinity);
    this.weightDecay = checkNumber('weightDecay', o.weightDecay ?? 0.01, 0, Infinity);
    const nd = o.noDecay ?? DEFAULT_NO_DECAY;
    if (!(nd instanceof RegExp) && typeof nd !== 'function') throw typeError('noDecay', 'a RegExp or a function of the parameter name', nd);
    this.#noDecay = nd instanceof RegExp ? (n) => nd.test(n) : nd;
    this.#segments = segmentsOf(model, (n) => (this.#noDecay(n) ? 0 : this.weightDecay));
    this.expAvg = Tensor.zeros([master.numel]);
    this.expAvgSq = Tensor.zeros([master.numel]);
  }

  /** Whether `name` gets weight decay. */
  decays(name: string): boolean { return !this.#noDecay(name) && this.weightDecay > 0; }

  #scalars(lr: number) {
    const t = this.stepCount + 1;
    return { lr, beta1: this.beta1, beta2: this.beta2, eps: this.eps, gradScale: 1, bc1: 1 - this.beta1 ** t, bc2: 1 - this.beta2 ** t };
  }

  /**
   * One step with the current gradients (the learning rate `lr` when given, else this.lr). A step
   * whose gradient norm is NaN or infinite is not applied: it is counted in skippedSteps and
   * reported.
   */
  async step(opts: { lr?: number } = {}): Promise<StepResult> {
    const lr = checkNumber('lr', checkOptions('options', opts).lr ?? this.lr, 0, Infinity);
    const { master, grads } = flatOf(this.model);
    const norm = Math.sqrt(await native.optimSumsq(grads._desc('grads'), this.#segments, true));
    if (!Number.isFinite(norm)) { this.skippedSteps++; return { skipped: true, gradNorm: norm }; }
    await native.optimAdamW(master._desc('params'), this.expAvg._desc('exp_avg'), this.expAvgSq._desc('exp_avg_sq'), grads._desc('grads'), this.#segments, this.#scalars(lr), true);
    this.stepCount++;
    return { skipped: false, gradNorm: norm };
  }

  /** Moments by parameter name (views), as saved. */
  #named(): Map<string, Tensor> {
    const out = new Map<string, Tensor>();
    for (const [name, p] of this.model.parameters()) {
      out.set(`${name}.exp_avg`, this.expAvg._viewBytes('f32', p.shape, p.offset * 4));
      out.set(`${name}.exp_avg_sq`, this.expAvgSq._viewBytes('f32', p.shape, p.offset * 4));
    }
    return out;
  }

  /** Writes dir/optimizer.safetensors (the moments by parameter name) and dir/optimizer.json. */
  async save(dir: string): Promise<void> { this.saveSync(dir); }

  /** The synchronous form of save(). */
  saveSync(dir: string): void {
    if (typeof dir !== 'string' || dir === '') throw typeError('dir', 'a folder path', dir);
    mkdirSync(dir, { recursive: true });
    const named = this.#named();
    try {
      writeSafetensors(path.join(dir, 'optimizer.safetensors'), named, { format: 'pt' });
    } finally { for (const t of named.values()) t.dispose(); }
    const meta = { type: 'adamw', stepCount: this.stepCount, skippedSteps: this.skippedSteps, lr: this.lr, betas: [this.beta1, this.beta2], eps: this.eps, weightDecay: this.weightDecay };
    writeJsonAtomic(path.join(dir, 'optimizer.json'), meta);
  }

  /** Restores what save() wrote (same parameter names and shapes). */
  async load(dir: string): Promise<void> {
    const jf = path.join(dir, 'optimizer.json'), sf = path.join(dir, 'optimizer.safetensors');
    if (!existsSync(jf) || !existsSync(sf)) throw new RangeError(`Expected ${jf} and ${sf} (written by AdamW.save) but they are missing`);
    const meta = JSON.parse(readFileSync(jf, 'utf8')) as { stepCount?: unknown; skippedSteps?: unknown };
    if (!Number.isInteger(meta.stepCount) || !Number.isInteger(meta.skippedSteps)) throw new RangeError(`Invalid ${jf}: stepCount and skippedSteps must be integers`);
    const file = readSafetensors(sf);
    const named = this.#named();
    try {
      for (const [name, dst] of named) {
        const src = file.tensors.get(name);
        if (!src) throw new RangeError(`Expected ${name} in ${sf} (an optimizer state of another model?) but it is missing`);
        if (src.dtype !== 'f32' || src.shape.join() !== dst.shape.join()) throw new RangeError(`Expected ${name} of shape [${dst.shape.join(', ')}] f32 in ${sf} but received [${src.shape.join(', ')}] ${src.dtype}`);
        (dst.data as Float32Array).set(src.data as Float32Array);
      }
    } finally {
      for (const t of named.values()) t.dispose();
      file.dispose();
    }
    this.stepCount = meta.stepCount as number;
    this.skippedSteps = meta.skippedSteps as number;
  }

  dispose(): void { this.expAvg.dispose(); this.expAvgSq.dispose(); }
}
