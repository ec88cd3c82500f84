// The CDPO pull-push loss and the GRPO family (../shared/docs/cdpo.md): group-normalised
// advantages, the loss with its gradient w.r.t. the policy log-probs, and the form fused with the
// LM head (linearCdpo). Native code: native/kernels/cdpo*.
import { checkBoolean, checkInteger, checkNumber, checkOneOf, checkOptions, checkTemperature, typeError } from '../errors.js';
import { precisionOption } from '../backend.js';
import { native, type StorageHandle, type TensorDesc } from '../native.js';
import { expectTensor, indexTensor, Tensor } from '../tensor.js';

declare module '../native.js' {
  interface Binding {
    cdpoLoss(logp: TensorDesc, old: TensorDesc | null, ref: TensorDesc | null, bias: TensorDesc | null, adv: TensorDesc,
      offsets: TensorDesc, opts: NativeCdpoOptions, async: boolean, out: TensorDesc | null): NativeCdpoResult | Promise<NativeCdpoResult>;
    groupAdvantages(rewards: TensorDesc, groupSize: number, scale: number, eps: number, async: boolean): StorageHandle | Promise<StorageHandle>;
    linearCdpo(hidden: TensorDesc, weight: TensorDesc, targets: TensorDesc, temperature: number, old: TensorDesc | null, ref: TensorDesc | null,
      bias: TensorDesc | null, adv: TensorDesc, offsets: TensorDesc, opts: NativeCdpoOptions, async: boolean,
      dWeight: TensorDesc | null, accumulate: boolean, precision: 'f32' | 'bf16'): NativeLinearCdpoResult | Promise<NativeLinearCdpoResult>;
  }
}

/** @internal What the native fused loss returns. */
export interface NativeLinearCdpoResult extends Omit<NativeCdpoResult, 'dlogp'> {
  dhidden: StorageHandle;
  /** Absent when the caller gave dWeight. */
  dweight?: StorageHandle;
  logp: StorageHandle;
}

/** @internal What the native functions take as options. */
export interface NativeCdpoOptions {
  betaRef: number;
  betaBias: number;
  klClamp: number;
  epsLow: number;
  epsHigh: number;
  delta: number | null;
  lossType: number;
  seqLevel: boolean;
  maxCompletionLength?: number;
  activeTokens?: number;
  /** linearCdpo, tests only: bytes of the logits tiles kept from the forward, tokens per block, vocabulary rows per tile. */
  cacheBytes?: number;
  tokenBlock?: number;
  vocabChunk?: number;
}

/** @internal What the native loss returns. */
export interface NativeCdpoResult {
  loss: number;
  /** Absent when the caller gave out. */
  dlogp?: StorageHandle;
  klRef: number | null;
  klBias: number | null;
  clipLow: number;
  clipHigh: number;
  ratioMean: number;
  tokens: number;
}

/** A 1-D f32 vector: a Tensor, or a Float32Array (copied in). */
export type Vector = Tensor | Float32Array;
/** Completion boundaries: an Int32Array or a 1-D i32 CPU Tensor. */
export type Offsets = Int32Array | Tensor;

export type AdvantageScale = 'group' | 'batch' | 'none';
export type CdpoLossType = 'grpo' | 'bnpo' | 'dr_grpo' | 'dapo';
export type ImportanceSampling = 'token' | 'sequence';

const SCALES = ['group', 'batch', 'none'] as const;
const LOSS_TYPES = ['grpo', 'bnpo', 'dr_grpo', 'dapo'] as const;
const IS_LEVELS = ['token', 'sequence'] as const;

export interface GroupAdvantagesOptions {
  /**
   * 'group' (default): (r - group mean) / (group std + eps); 'batch': the std is taken over the
   * whole batch (the mean is still the group's); 'none': r - group mean. Stds use Bessel's correction.
   */
  scale?: AdvantageScale;
  /** Added to the std (default 1e-4). */
  eps?: number;
}

/** The options of the loss (everything but the tensors). Defaults reproduce the paper's run. */
export interface CdpoOptions {
  /** Pull toward the reference model: + betaRef * k3(ref) per token (default 0; needs refLogprobs when > 0). */
  betaRef?: number;
  /**
   * Push away from the bias model: - betaBias * k3(bias) per token. Default 0.01 when biasLogprobs
   * is given (the paper's beta = -0.01), 0 when it is not; a value > 0 needs biasLogprobs.
   */
  betaBias?: number;
  /** The k3 log-ratios are clamped to [-klClamp, klClamp], with zero gradient outside (default 11). */
  klClamp?: number;
  /** Lower clip: the ratio is clamped to [1 - epsLow, 1 + epsHigh] (default 0.2). */
  epsLow?: number;
  /** Upper clip (default 0.28, "clip-higher"). */
  epsHigh?: number;
  /** Two-sided clipping: the ratio of the unclipped term is capped at delta (default: no cap). */
  delta?: number;
  /**
   * Aggregation: 'grpo' (mean over completions of each completion's token mean; the paper's),
   * 'bnpo' (token mean over the batch), 'dr_grpo' (token sum / (B * maxCompletionLength)),
   * 'dapo' (token sum / activeTokens).
   */
  lossType?: CdpoLossType;
  /** 'token' (default): one ratio per token; 'sequence' (GSPO): exp of the completion's mean log-ratio. */
  importanceSampling?: ImportanceSampling;
  /** dr_grpo's normaliser (default: the longest completion of this batch); at least the longest completion. */
  maxCompletionLength?: number;
  /**
   * dapo's normaliser: the active tokens of the global batch when this call is one micro-batch of
   * several (default: this call's tokens); at least this call's tokens.
   */
  activeTokens?: number;
}

/** Per-token inputs of the loss besides the policy log-probs. */
export interface CdpoInputs extends CdpoOptions {
  /** [N] log-probs at sampling time; omitted: on-policy (ratio 1, gradient as if old were logprobs detached). */
  oldLogprobs?: Vector;
  /** [N] reference model's log-probs of the sampled tokens. */
  refLogprobs?: Vector;
  /** [N] bias model's log-probs of the sampled tokens. */
  biasLogprobs?: Vector;
  /** [B] advantage of each completion (groupAdvantages()). */
  advantages: Vector;
  /** [B + 1] completion i is tokens [seqOffsets[i], seqOffsets[i + 1]); starts at 0, ends at N, non-decreasing. */
  seqOffsets: Offsets;
}

export interface CdpoLossArgs extends CdpoInputs {
  /** [N] log-probs of the sampled tokens under the policy, all completions packed. */
  logprobs: Vector;
  /** Write the gradient into this contiguous f32 [N] tensor (on the device of logprobs) instead of a new one; returned as dLogprobs. */
  out?: Tensor;
}

export interface CdpoMetrics {
  /** Mean k3 estimate of KL(policy || reference) over the tokens; null without refLogprobs. */
  klRef: number | null;
  /** Mean k3 estimate of KL(policy || bias model); null without biasLogprobs. */
  klBias: number | null;
  /** Fraction of tokens whose ratio is below 1 - epsLow with a negative advantage. */
  clipLow: number;
  /** Fraction of tokens whose ratio is above 1 + epsHigh with a positive advantage. */
  clipHigh: number;
  /** Mean importance ratio over the tokens. */
  ratioMean: number;
  /** Tokens counted (N). */
  tokens: number;
}

export interface CdpoLossResult {
  loss: number;
  /** [N] dLoss/dLogprobs (f32, on the device of logprobs). */
  dLogprobs: Tensor;
  metrics: CdpoMetrics;
}

// ---- argument handling ----

/** Tensors made here from typed arrays, disposed once the native call is done. */
class Owned {
  readonly list: Tensor[] = [];
  vector(name: string, v: unknown): Tensor {
    if (v instanceof Float32Array) {
      const t = Tensor.from(v);
      this.list.push(t);
      return t;
    }
    if (!(v instanceof Tensor)) throw typeError(name, 'a Tensor or a Float32Array', v);
    const t = expectTensor(name, v, { dtypes: ['f32'], ndim: 1, layout: '[n]' });
    if (t.isContiguous) return t;
    const c = t.contiguous();
    this.list.push(c);
    return c;
  }
  optVector(name: string, v: unknown): Tensor | null {
    return v === undefined ? null : this.vector(name, v);
  }
  offsets(name: string, v: unknown): Tensor {
    const { tensor, owned } = indexTensor(name, v);
    if (owned) this.list.push(tensor);
    return tensor;
  }
  dispose(): void {
    for (const t of this.list) t.dispose();
  }
}

/** @internal Checks the tensors and options that follow the log-probs (N tokens on `device`). */
function prepareCdpoInputs(a: CdpoInputs, N: number, device: string, owned: Owned, logpName: string) {
  const old = owned.optVector('oldLogprobs', a.oldLogprobs);
  const ref = owned.optVector('refLogprobs', a.refLogprobs);
  const bias = owned.optVector('biasLogprobs', a.biasLogprobs);
  const adv = owned.vector('advantages', a.advantages);
  const off = owned.offsets('seqOffsets', a.seqOffsets);
  for (const [name, t] of [['oldLogprobs', old], ['refLogprobs', ref], ['biasLogprobs', bias]] as const) {
    if (t && t.numel !== N) throw new RangeError(`Expected ${N} elements (one per token, as ${logpName}) for ${name} but received shape [${t.shape.join(', ')}]`);
  }
  for (const [name, t] of [['oldLogprobs', old], ['refLogprobs', ref], ['biasLogprobs', bias], ['advantages', adv]] as const) {
    if (t && t.device !== device) throw new TypeError(`Expected ${name} on ${device} (the device of ${logpName}) but received one on ${t.device}`);
  }
  const B = off.numel - 1;
  if (B < 1) throw new RangeError(`Expected at least one completion (seqOffsets of length >= 2) for seqOffsets but received length ${off.numel}`);
  if (adv.numel !== B) throw new RangeError(`Expected ${B} elements (one per completion, seqOffsets.length - 1) for advantages but received shape [${adv.shape.join(', ')}]`);
  const o = off.data as Int32Array;
  if (o[0] !== 0) throw new RangeError(`Expected seqOffsets[0] = 0 but received ${o[0]}`);
  let longest = 0;
  for (let i = 0; i < B; i++) {
    if (o[i + 1]! < o[i]!) throw new RangeError(`Expected non-decreasing seqOffsets but seqOffsets[${i + 1}] = ${o[i + 1]} < seqOffsets[${i}] = ${o[i]}`);
    longest = Math.max(longest, o[i + 1]! - o[i]!);
  }
  if (o[B] !== N) throw new RangeError(`Expected seqOffsets[${B}] = ${N} (the token count of ${logpName}) but received ${o[B]}`);

  const betaRef = a.betaRef === undefined ? 0 : checkNumber('betaRef', a.betaRef, 0, Number.MAX_VALUE);
  const betaBias = a.betaBias === undefined ? (bias ? 0.01 : 0) : checkNumber('betaBias', a.betaBias, 0, Number.MAX_VALUE);
  const klClamp = a.klClamp === undefined ? 11 : checkNumber('klClamp', a.klClamp, 0, Infinity, { exclusiveMin: true });
  const epsLow = a.epsLow === undefined ? 0.2 : checkNumber('epsLow', a.epsLow, 0, 1);
  const epsHigh = a.epsHigh === undefined ? 0.28 : checkNumber('epsHigh', a.epsHigh, 0, Number.MAX_VALUE);
  const delta = a.delta === undefined ? null : checkNumber('delta', a.delta, 0, Number.MAX_VALUE, { exclusiveMin: true });
  const lossType = checkOneOf('lossType', a.lossType ?? 'grpo', LOSS_TYPES);
  const is = checkOneOf('importanceSampling', a.importanceSampling ?? 'token', IS_LEVELS);
  if (betaRef > 0 && !ref) throw new TypeError(`Expected refLogprobs (a Tensor [${N}]) when betaRef > 0 but received undefined (betaRef = ${betaRef})`);
  if (betaBias > 0 && !bias) throw new TypeError(`Expected biasLogprobs (a Tensor [${N}]) when betaBias > 0 but received undefined (betaBias = ${betaBias})`);
  const opts: NativeCdpoOptions = { betaRef, betaBias, klClamp, epsLow, epsHigh, delta, lossType: LOSS_TYPES.indexOf(lossType), seqLevel: is === 'sequence' };
  if (a.maxCompletionLength !== undefined) {
    opts.maxCompletionLength = checkInteger('maxCompletionLength', a.maxCompletionLength, Math.max(1, longest));
  }
  if (a.activeTokens !== undefined) opts.activeTokens = checkInteger('activeTokens', a.activeTokens, Math.max(1, N));
  return { old, ref, bias, adv, off, opts, B };
}

function prepareLoss(args: CdpoLossArgs) {
  const a = checkOptions('args', args);
  const owned = new Owned();
  try {
    if (a.logprobs === undefined) throw typeError('logprobs', 'a Tensor or a Float32Array', a.logprobs);
    const logp = owned.vector('logprobs', a.logprobs);
    const N = logp.numel;
    const p = prepareCdpoInputs(a, N, logp.device, owned, 'logprobs');
    let out: Tensor | undefined;
    if (a.out !== undefined) {
      out = expectTensor('out', a.out, { dtypes: ['f32'], ndim: 1, layout: '[N]' });
      if (out.numel !== N) throw new RangeError(`Expected out of shape [${N}] but received [${out.shape.join(', ')}]`);
      if (!out.isContiguous) throw new TypeError('Expected a contiguous tensor for out but received a strided view');
      if (out.device !== logp.device) throw new TypeError(`Expected out on ${logp.device} (the device of logprobs) but received one on ${out.device}`);
    }
    const call = (async: boolean) => native.cdpoLoss(logp._desc('logprobs'), p.old?._desc('oldLogprobs') ?? null, p.ref?._desc('refLogprobs') ?? null,
      p.bias?._desc('biasLogprobs') ?? null, p.adv._desc('advantages'), p.off._desc('seqOffsets'), p.opts, async, out?._desc('out') ?? null);
    return { call, owned, N, out };
  } catch (e) {
    owned.dispose();
    throw e;
  }
}

/** @internal */
function metricsOf(r: Omit<NativeCdpoResult, 'dlogp'>): CdpoMetrics {
  return { klRef: r.klRef, klBias: r.klBias, clipLow: r.clipLow, clipHigh: r.clipHigh, ratioMean: r.ratioMean, tokens: r.tokens };
}

function finishLoss(r: NativeCdpoResult, N: number, out: Tensor | undefined): CdpoLossResult {
  return { loss: r.loss, dLogprobs: out ?? Tensor._wrap(r.dlogp!, 'f32', [N]), metrics: metricsOf(r) };
}

/**
 * The CDPO pull-push loss (or a GRPO-family loss) of packed completions, and its gradient with
 * respect to the policy log-probs, on a native thread. Per token:
 * `-min(c1 * A, clamp(rho, 1 - epsLow, 1 + epsHigh) * A) + betaRef * k3(ref) - betaBias * k3(bias)`,
 * with `rho` the importance ratio (per token or per completion), `c1 = min(rho, delta)`, and
 * `k3 = exp(d) - d - 1` of the clamped log-ratio `d = log q - logprobs`; aggregated per lossType.
 * Gradients are those autograd gives for this formula (clamp bounds included; ties of the min
 * split the gradient). Everything is computed in double; the gradient is returned in f32.
 */
export async function cdpoLoss(args: CdpoLossArgs): Promise<CdpoLossResult> {
  const { call, owned, N, out } = prepareLoss(args);
  try {
    return finishLoss(await (call(true) as Promise<NativeCdpoResult>), N, out);
  } finally {
    owned.dispose();
  }
}

/** The synchronous form of cdpoLoss(). */
export function cdpoLossSync(args: CdpoLossArgs): CdpoLossResult {
  const { call, owned, N, out } = prepareLoss(args);
  try {
    return finishLoss(call(false) as NativeCdpoResult, N, out);
  } finally {
    owned.dispose();
  }
}

function prepareAdvantages(rewards: unknown, groupSize: unknown, opts: GroupAdvantagesOptions | undefined) {
  const o = checkOptions('options', opts);
  let r: Tensor, owned = false;
  if (rewards instanceof Float32Array || rewards instanceof Float64Array || Array.isArray(rewards)) {
    const a = Float32Array.from(rewards as ArrayLike<number>);
    r = Tensor.from(a);
    owned = true;
  } else {
    if (!(rewards instanceof Tensor)) throw typeError('rewards', 'a Tensor, a Float32Array, a Float64Array or an array of numbers', rewards);
    r = expectTensor('rewards', rewards, { dtypes: ['f32'], ndim: 1, layout: '[B]' });
    if (r.device !== 'cpu') throw new TypeError(`Expected a CPU tensor for rewards but received one on ${r.device}`);
    if (!r.isContiguous) { r = r.contiguous(); owned = true; }
  }
  try {
    const B = r.numel;
    const G = checkInteger('groupSize', groupSize, 1);
    if (B < 1) throw new RangeError('Expected at least one reward for rewards but received 0');
    if (B % G !== 0) throw new RangeError(`Expected a multiple of groupSize (${G}) rewards for rewards but received ${B}`);
    const data = r.data as Float32Array;
    for (let i = 0; i < B; i++) if (!Number.isFinite(data[i]!)) throw new RangeError(`Expected finite rewards but rewards[${i}] is ${data[i]}`);
    const scale = checkOneOf('scale', o.scale ?? 'group', SCALES);
    const eps = o.eps === undefined ? 1e-4 : checkNumber('eps', o.eps, 0, Number.MAX_VALUE);
    return { r, owned, B, G, scale: SCALES.indexOf(scale), eps };
  } catch (e) {
    if (owned) r.dispose();
    throw e;
  }
}

/**
 * Group-normalised advantages of rewards [B] in consecutive groups of groupSize (the G answers
 * sampled for one prompt): (r - group mean) / (std + eps) with Bessel's correction. A group whose
 * rewards are all equal gets exactly 0 (not NaN). Returns an f32 Tensor [B].
 */
export async function groupAdvantages(rewards: Vector | Float64Array | readonly number[], groupSize: number, opts?: GroupAdvantagesOptions): Promise<Tensor> {
  const p = prepareAdvantages(rewards, groupSize, opts);
  try {
    const h = await (native.groupAdvantages(p.r._desc('rewards'), p.G, p.scale, p.eps, true) as Promise<StorageHandle>);
    return Tensor._wrap(h, 'f32', [p.B]);
  } finally {
    if (p.owned) p.r.dispose();
  }
}

/** The synchronous form of groupAdvantages(). */
export function groupAdvantagesSync(rewards: Vector | Float64Array | readonly number[], groupSize: number, opts?: GroupAdvantagesOptions): Tensor {
  const p = prepareAdvantages(rewards, groupSize, opts);
  try {
    return Tensor._wrap(native.groupAdvantages(p.r._desc('rewards'), p.G, p.scale, p.eps, false) as StorageHandle, 'f32', [p.B]);
  } finally {
    if (p.owned) p.r.dispose();
  }
}

// ---- fused with the LM head ----

export interface LinearCdpoArgs extends CdpoInputs {
  /** [N, H] f32: the final hidden states at the positions that predict the sampled tokens. */
  hidden: Tensor;
  /** [V, H] f32: the LM head (logits = hidden @ weight^T / temperature). */
  weight: Tensor;
  /** [N] sampled token ids in [0, V): an Int32Array or an i32 Tensor. */
  targets: Offsets;
  /** Sampling temperature the log-probs are taken at (default 1). */
  temperature?: number;
  /**
   * Accumulate the weight gradient into this contiguous f32 [V, H] tensor on the device of hidden (dWeight += dL/dW)
   * instead of allocating one (gradient accumulation over micro-batches; no 4 V H bytes of fresh
   * memory per call). It is returned as the result's dWeight.
   */
  dWeight?: Tensor;
  /**
   * With dWeight: add into it (true, the default) or overwrite it (false). Overwriting is also the
   * faster path: with N <= H the logits tiles are kept in dWeight's own rows until the backward
   * writes them, so no tile is computed twice (3 GEMM volumes instead of 3.6 at N 256, V 151936).
   */
  accumulate?: boolean;
  /**
   * The head's GEMMs: 'f32' or 'bf16' (operands rounded to bf16, f32 sums; up to twice as fast on
   * CPUs with AVX512_BF16; CPU only). Default: the process's matmulPrecision() on the CPU.
   */
  precision?: 'f32' | 'bf16';
}

export interface LinearCdpoResult {
  loss: number;
  /** [N, H] dLoss/dHidden. */
  dHidden: Tensor;
  /** [V, H] dLoss/dWeight (the given dWeight, accumulated into or overwritten, when one was given). */
  dWeight: Tensor;
  /** [N] the policy log-probs of the sampled tokens (log_softmax(hidden @ weight^T / temperature)[targets]). */
  logprobs: Tensor;
  metrics: CdpoMetrics;
}

function prepareLinear(args: LinearCdpoArgs) {
  const a = checkOptions('args', args);
  const owned = new Owned();
  try {
    const hidden = expectTensor('hidden', a.hidden, { dtypes: ['f32'], ndim: 2, layout: '[N, H]' });
    const weight = expectTensor('weight', a.weight, { dtypes: ['f32'], ndim: 2, layout: '[V, H]' });
    const [N, H] = hidden.shape as [number, number];
    const [V, Hw] = weight.shape as [number, number];
    if (H !== Hw) throw new RangeError(`Expected weight of shape [V, ${H}] (H of hidden) but received [${weight.shape.join(', ')}]`);
    if (V < 1) throw new RangeError(`Expected a vocabulary of at least 1 for weight but received shape [${weight.shape.join(', ')}]`);
    if (weight.device !== hidden.device) throw new TypeError(`Expected weight on ${hidden.device} (the device of hidden) but received one on ${weight.device}`);
    const h = hidden.isContiguous ? hidden : owned.list[owned.list.push(hidden.contiguous()) - 1]!;
    const w = weight.isContiguous ? weight : owned.list[owned.list.push(weight.contiguous()) - 1]!;
    const { tensor: targets, owned: tOwned } = indexTensor('targets', a.targets, N);
    if (tOwned) owned.list.push(targets);
    const td = targets.data as Int32Array;
    for (let i = 0; i < N; i++) {
      if (!(td[i]! >= 0 && td[i]! < V)) throw new RangeError(`Expected token ids in [0, ${V}) for targets but targets[${i}] = ${td[i]}`);
    }
    const temperature = a.temperature === undefined ? 1 : checkTemperature('temperature', a.temperature);
    let dWeight: Tensor | undefined;
    if (a.dWeight !== undefined) {
      dWeight = expectTensor('dWeight', a.dWeight, { dtypes: ['f32'], ndim: 2, layout: '[V, H]' });
      if (dWeight.shape[0] !== V || dWeight.shape[1] !== H) throw new RangeError(`Expected dWeight of shape [${V}, ${H}] but received [${dWeight.shape.join(', ')}]`);
      if (!dWeight.isContiguous) throw new TypeError('Expected a contiguous tensor for dWeight but received a strided view');
      if (dWeight.device !== hidden.device) throw new TypeError(`Expected dWeight on ${hidden.device} (the device of hidden) but received one on ${dWeight.device}`);
    }
    const accumulate = a.accumulate === undefined ? true : checkBoolean('accumulate', a.accumulate);
    const precision = precisionOption(a.precision, hidden.device, 'hidden');
    const p = prepareCdpoInputs(a, N, hidden.device, owned, 'hidden');
    // tests only: small tiles and caches cover the tiling logic
    const knobs = a as { _cacheBytes?: unknown; _tokenBlock?: unknown; _vocabChunk?: unknown };
    if (knobs._cacheBytes !== undefined) p.opts.cacheBytes = checkInteger('_cacheBytes', knobs._cacheBytes, 0);
    if (knobs._tokenBlock !== undefined) p.opts.tokenBlock = checkInteger('_tokenBlock', knobs._tokenBlock, 1);
    if (knobs._vocabChunk !== undefined) p.opts.vocabChunk = checkInteger('_vocabChunk', knobs._vocabChunk, 1);
    const call = (async: boolean) => native.linearCdpo(h._desc('hidden'), w._desc('weight'), targets._desc('targets'), temperature,
      p.old?._desc('oldLogprobs') ?? null, p.ref?._desc('refLogprobs') ?? null, p.bias?._desc('biasLogprobs') ?? null,
      p.adv._desc('advantages'), p.off._desc('seqOffsets'), p.opts, async, dWeight?._desc('dWeight') ?? null, accumulate, precision);
    return { call, owned, N, H, V, dWeight };
  } catch (e) {
    owned.dispose();
    throw e;
  }
}

function finishLinear(r: NativeLinearCdpoResult, N: number, H: number, V: number, dWeight: Tensor | undefined): LinearCdpoResult {
  return {
    loss: r.loss, dHidden: Tensor._wrap(r.dhidden, 'f32', [N, H]), dWeight: dWeight ?? Tensor._wrap(r.dweight!, 'f32', [V, H]),
    logprobs: Tensor._wrap(r.logp, 'f32', [N]), metrics: metricsOf(r),
  };
}

/**
 * The CDPO loss (cdpoLoss's options) of log-probs that come from an LM head, fused with it: the
 * log-probs, the loss, its gradient and the LM-head backward (dHidden, dWeight) in one call,
 * without materialising [N, V] logits (tiles of 256 tokens x 4096 vocabulary rows; the tiles that
 * fit in 60 MiB are kept from the forward for the backward, the others recomputed; when dWeight is
 * written rather than accumulated and N <= H, every tile is kept in dWeight's own rows). Equals
 * linearLogprobs + cdpoLoss + linearLogprobsBackward to rounding.
 */
export async function linearCdpo(args: LinearCdpoArgs): Promise<LinearCdpoResult> {
  const { call, owned, N, H, V, dWeight } = prepareLinear(args);
  try {
    return finishLinear(await (call(true) as Promise<NativeLinearCdpoResult>), N, H, V, dWeight);
  } finally {
    owned.dispose();
  }
}

/** The synchronous form of linearCdpo(). */
export function linearCdpoSync(args: LinearCdpoArgs): LinearCdpoResult {
  const { call, owned, N, H, V, dWeight } = prepareLinear(args);
  try {
    return finishLinear(call(false) as NativeLinearCdpoResult, N, H, V, dWeight);
  } finally {
    owned.dispose();
  }
}
