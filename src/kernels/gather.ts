// Log-prob gathering: log softmax(logits / T)[target] for every token, from logits or fused with
// the LM head (hidden @ weight^T) so that no [N, V] tensor is ever made, and their backwards.
import { checkBoolean, checkInteger, checkNumber, checkOptions, checkTemperature } from '../errors.js';
import { precisionOption } from '../backend.js';
import { native, type StorageHandle, type TensorDesc } from '../native.js';
import { expectTensor, indexTensor, Tensor } from '../tensor.js';
import { checkNoOverlap } from './overlap.js';

type Handles = { logprobs: StorageHandle; lse: StorageHandle; entropy?: StorageHandle };
type BwdHandles = { dHidden: StorageHandle; dWeight?: StorageHandle; dBias?: StorageHandle };
type WithGradHandles = Handles & BwdHandles;

declare module '../native.js' {
  interface Binding {
    gatherLogprobs(logits: TensorDesc, targets: TensorDesc, temperature: number, entropy: boolean, async: boolean): Handles | Promise<Handles>;
    gatherLogprobsBackward(logits: TensorDesc, targets: TensorDesc, lse: TensorDesc, dLogprobs: TensorDesc, temperature: number,
      out: TensorDesc | null, async: boolean): StorageHandle | undefined | Promise<StorageHandle | undefined>;
    linearLogprobs(hidden: TensorDesc, weight: TensorDesc, targets: TensorDesc, bias: TensorDesc | null, temperature: number,
      entropy: boolean, async: boolean, tileTokens?: number, tileVocab?: number, precision?: Precision): Handles | Promise<Handles>;
    linearLogprobsBackward(hidden: TensorDesc, weight: TensorDesc, targets: TensorDesc, bias: TensorDesc | null, temperature: number,
      lse: TensorDesc, dLogprobs: TensorDesc, dWeight: TensorDesc | null | false, async: boolean, tileTokens: number | undefined, tileVocab: number | undefined, accumulate: boolean, precision?: Precision): BwdHandles | Promise<BwdHandles>;
    linearLogprobsWithGrad(hidden: TensorDesc, weight: TensorDesc, targets: TensorDesc, bias: null, temperature: number, dLogprobs: TensorDesc,
      dWeight: TensorDesc | null | false, async: boolean, accumulate: boolean, knobs: { tokenBlock?: number; vocabChunk?: number; cacheBytes?: number }, precision?: Precision): WithGradHandles | Promise<WithGradHandles>;
  }
}

/**
 * The LM head's GEMM products: 'f32', or 'bf16': hidden, weight (and, in the backward,
 * the logits' gradient) rounded to bf16, products summed in f32, as PyTorch's bf16 autocast does;
 * a bf16 weight is then read as it is. Up to twice as fast on CPUs with AVX512_BF16
 * (`backend().gemm.bf16`), at the operands' bf16 precision (8 significant bits). CPU only.
 * Unset, the process's matmulPrecision() (setMatmulPrecision; 'f32' unless changed) on the CPU.
 */
export type Precision = 'f32' | 'bf16';

/** Targets: an Int32Array or an i32 Tensor of token ids in [0, V). */
export type Targets = Int32Array | Tensor;

export interface GatherOptions {
  /** Logits are divided by it before the softmax (default 1; > 0). */
  temperature?: number;
  /** Also return the entropy of each token's distribution (default false). */
  entropy?: boolean;
}

export interface LogprobsResult {
  /** log softmax(z)[target], f32 [N]. */
  logprobs: Tensor;
  /** log sum exp z, f32 [N] (what the backward needs). */
  lse: Tensor;
  /** -sum p log p, f32 [N], when asked for. */
  entropy?: Tensor;
}

function temperatureOf(o: { temperature?: number }): number {
  return o.temperature === undefined ? 1 : checkTemperature('temperature', o.temperature);
}

function vec(name: string, v: unknown, n: number, device: string): Tensor {
  const t = expectTensor(name, v, { dtypes: ['f32'], ndim: 1, layout: '[N]' });
  if (t.shape[0] !== n) throw new RangeError(`Expected ${n} elements for ${name} but received shape [${t.shape.join(', ')}]`);
  if (t.device !== device) throw new TypeError(`Expected ${name} on ${device} but received a tensor on ${t.device}`);
  return t;
}

function contiguous2d(name: string, v: unknown, dtypes: readonly ('f32' | 'bf16' | 'f16')[], layout: string): Tensor {
  const t = expectTensor(name, v, { dtypes, ndim: 2, layout });
  if (!t.isContiguous) throw new TypeError(`Expected a contiguous tensor for ${name} but received a strided view; call .contiguous() first`);
  return t;
}

function wrapResult(h: Handles, n: number): LogprobsResult {
  const r: LogprobsResult = { logprobs: Tensor._wrap(h.logprobs, 'f32', [n]), lse: Tensor._wrap(h.lse, 'f32', [n]) };
  if (h.entropy) r.entropy = Tensor._wrap(h.entropy, 'f32', [n]);
  return r;
}

// Owned (converted) targets are disposed once the call is over, also when it throws.
async function settle<T>(targets: { tensor: Tensor; owned: boolean }, f: () => T | Promise<T>): Promise<T> {
  try { return await f(); } finally { if (targets.owned) targets.tensor.dispose(); }
}
function settleSync<T>(targets: { tensor: Tensor; owned: boolean }, f: () => T): T {
  try { return f(); } finally { if (targets.owned) targets.tensor.dispose(); }
}

// ---- from logits ----

function prepGather(logits: unknown, targets: unknown, opts: GatherOptions | undefined) {
  const o = checkOptions('options', opts);
  const x = contiguous2d('logits', logits, ['f32'], '[N, V]');
  const temperature = temperatureOf(o);
  const entropy = o.entropy === undefined ? false : checkBoolean('entropy', o.entropy);
  const tg = indexTensor('targets', targets, x.shape[0]);
  return { x, tg, temperature, entropy, n: x.shape[0]! };
}

/**
 * log softmax(logits / T)[targets] per row without writing an [N, V] result: one read of the
 * logits, on a native thread. logits: f32 [N, V]; targets: [N] ids in [0, V).
 */
export async function gatherLogprobs(logits: Tensor, targets: Targets, opts?: GatherOptions): Promise<LogprobsResult> {
  const p = prepGather(logits, targets, opts);
  const h = await settle(p.tg, () => native.gatherLogprobs(p.x._desc('logits'), p.tg.tensor._desc('targets'), p.temperature, p.entropy, true));
  return wrapResult(h, p.n);
}

/** The synchronous form of gatherLogprobs(). */
export function gatherLogprobsSync(logits: Tensor, targets: Targets, opts?: GatherOptions): LogprobsResult {
  const p = prepGather(logits, targets, opts);
  return wrapResult(settleSync(p.tg, () => native.gatherLogprobs(p.x._desc('logits'), p.tg.tensor._desc('targets'), p.temperature, p.entropy, false) as Handles), p.n);
}

export interface GatherBackwardOptions {
  temperature?: number;
  /** Write dLogits into this contiguous f32 [N, V] tensor (may be `logits` itself, in place). */
  out?: Tensor;
}

function prepGatherBwd(logits: unknown, targets: unknown, lse: unknown, dLogprobs: unknown, opts: GatherBackwardOptions | undefined) {
  const o = checkOptions('options', opts);
  const x = contiguous2d('logits', logits, ['f32'], '[N, V]');
  const n = x.shape[0]!;
  const l = vec('lse', lse, n, x.device);
  const d = vec('dLogprobs', dLogprobs, n, x.device);
  const temperature = temperatureOf(o);
  let out: Tensor | undefined;
  if (o.out !== undefined) {
    out = contiguous2d('out', o.out, ['f32'], '[N, V]');
    if (out.shape[0] !== x.shape[0] || out.shape[1] !== x.shape[1]) throw new RangeError(`Expected out of shape [${x.shape.join(', ')}] but received [${out.shape.join(', ')}]`);
    // in place (out = logits) is supported row by row; a shifted view would overwrite rows not yet read
    checkNoOverlap('out', out, 'logits', x, { inPlace: true });
    checkNoOverlap('out', out, 'lse', l);
    checkNoOverlap('out', out, 'dLogprobs', d);
  }
  const tg = indexTensor('targets', targets, n);
  return { x, l, d, temperature, out, tg };
}

/**
 * dLogits = dLogprobs * (onehot(target) - softmax(logits / T)) / T, f32 [N, V]; into `out`
 * when given (the logits' own buffer saves the memory of a second [N, V] tensor).
 */
export async function gatherLogprobsBackward(logits: Tensor, targets: Targets, lse: Tensor, dLogprobs: Tensor, opts?: GatherBackwardOptions): Promise<Tensor> {
  const p = prepGatherBwd(logits, targets, lse, dLogprobs, opts);
  const h = await settle(p.tg, () => native.gatherLogprobsBackward(p.x._desc('logits'), p.tg.tensor._desc('targets'), p.l._desc('lse'), p.d._desc('dLogprobs'), p.temperature, p.out?._desc('out') ?? null, true));
  return p.out ?? Tensor._wrap(h!, 'f32', p.x.shape);
}

/** The synchronous form of gatherLogprobsBackward(). */
export function gatherLogprobsBackwardSync(logits: Tensor, targets: Targets, lse: Tensor, dLogprobs: Tensor, opts?: GatherBackwardOptions): Tensor {
  const p = prepGatherBwd(logits, targets, lse, dLogprobs, opts);
  const h = settleSync(p.tg, () => native.gatherLogprobsBackward(p.x._desc('logits'), p.tg.tensor._desc('targets'), p.l._desc('lse'), p.d._desc('dLogprobs'), p.temperature, p.out?._desc('out') ?? null, false) as StorageHandle | undefined);
  return p.out ?? Tensor._wrap(h!, 'f32', p.x.shape);
}

// ---- fused with the LM head ----

/** Tile sizes of the fused LM head (tuning): tokens per pass over the weight (default 512) and weight rows per logits tile (default 4096). */
export interface LinearTile {
  tokens?: number;
  vocab?: number;
}

export interface LinearLogprobsOptions extends GatherOptions {
  /** f32 [V] added to the logits before the temperature. */
  bias?: Tensor;
  tile?: LinearTile;
  /** The GEMMs' products: 'f32' or 'bf16' (see Precision; default matmulPrecision()). */
  precision?: Precision;
}

function tileOf(t: LinearTile | undefined): [number | undefined, number | undefined] {
  if (t === undefined) return [undefined, undefined];
  const o = checkOptions('tile', t);
  return [o.tokens === undefined ? undefined : checkInteger('tile.tokens', o.tokens, 1, 2 ** 31),
    o.vocab === undefined ? undefined : checkInteger('tile.vocab', o.vocab, 16, 2 ** 31)];
}

function prepLinear(hidden: unknown, weight: unknown, targets: unknown, o: LinearLogprobsOptions) {
  const h = contiguous2d('hidden', hidden, ['f32'], '[N, H]');
  const w = contiguous2d('weight', weight, ['f32', 'bf16', 'f16'], '[V, H]');
  if (w.shape[1] !== h.shape[1]) throw new RangeError(`Expected weight of shape [V, ${h.shape[1]}] (H of hidden) but received [${w.shape.join(', ')}]`);
  if (w.device !== h.device) throw new TypeError(`Expected weight on ${h.device} but received a tensor on ${w.device}`);
  const precision = precisionOption(o.precision, h.device, 'hidden');
  const bias = o.bias === undefined ? undefined : vec('bias', o.bias, w.shape[0]!, h.device);
  const temperature = temperatureOf(o);
  const tile = tileOf(o.tile);
  const tg = indexTensor('targets', targets, h.shape[0]);
  return { h, w, bias, temperature, tile, precision, tg, n: h.shape[0]!, H: h.shape[1]!, V: w.shape[0]! };
}

function prepLinearFwd(hidden: unknown, weight: unknown, targets: unknown, opts: LinearLogprobsOptions | undefined) {
  const o = checkOptions('options', opts);
  const entropy = o.entropy === undefined ? false : checkBoolean('entropy', o.entropy);
  return { ...prepLinear(hidden, weight, targets, o), entropy };
}

/**
 * The LM head fused with gatherLogprobs: logits = (hidden @ weight^T + bias) / T are made a
 * tile at a time (256 tokens x 256 vocabulary rows) and reduced with an online log-sum-exp while
 * in cache; no [N, V] tensor exists. hidden f32 [N, H]; weight [V, H] f32, bf16 or f16 (f32 math).
 */
export async function linearLogprobs(hidden: Tensor, weight: Tensor, targets: Targets, opts?: LinearLogprobsOptions): Promise<LogprobsResult> {
  const p = prepLinearFwd(hidden, weight, targets, opts);
  const h = await settle(p.tg, () => native.linearLogprobs(p.h._desc('hidden'), p.w._desc('weight'), p.tg.tensor._desc('targets'), p.bias?._desc('bias') ?? null, p.temperature, p.entropy, true, ...p.tile, p.precision));
  return wrapResult(h, p.n);
}

/** The synchronous form of linearLogprobs(). */
export function linearLogprobsSync(hidden: Tensor, weight: Tensor, targets: Targets, opts?: LinearLogprobsOptions): LogprobsResult {
  const p = prepLinearFwd(hidden, weight, targets, opts);
  return wrapResult(settleSync(p.tg, () => native.linearLogprobs(p.h._desc('hidden'), p.w._desc('weight'), p.tg.tensor._desc('targets'), p.bias?._desc('bias') ?? null, p.temperature, p.entropy, false, ...p.tile, p.precision) as Handles), p.n);
}

export interface LinearBackwardOptions {
  temperature?: number;
  bias?: Tensor;
  tile?: LinearTile;
  /** Add the weight gradient into this f32 [V, H] tensor (gradient accumulation) instead of returning a new one. */
  dWeight?: Tensor;
  /** With dWeight: add into it (true, the default) or overwrite it (false: a reused buffer, no zeroing needed). */
  accumulate?: boolean;
  /** false: no weight gradient at all (a frozen LM head: LoRA, frozen layers); dWeight is then absent. */
  weightGrad?: boolean;
  /** The GEMMs' products: 'f32' or 'bf16' (see Precision; default matmulPrecision()); the forward's. */
  precision?: Precision;
}

export interface LinearBackwardResult {
  dHidden: Tensor;
  /** f32 [V, H]: the given accumulator, or a new tensor; absent with weightGrad: false. */
  dWeight?: Tensor;
  /** f32 [V] when a bias was given. */
  dBias?: Tensor;
}

function prepLinearBwd(hidden: unknown, weight: unknown, targets: unknown, lse: unknown, dLogprobs: unknown, opts: LinearBackwardOptions | undefined) {
  const o = checkOptions('options', opts);
  const p = prepLinear(hidden, weight, targets, o);
  try {
    const d = vec('dLogprobs', dLogprobs, p.n, p.h.device);
    const l = lse === null ? d : vec('lse', lse, p.n, p.h.device);  // null: made by the call (linearLogprobsWithGrad)
    let dW: Tensor | undefined;
    if (o.dWeight !== undefined) {
      dW = contiguous2d('dWeight', o.dWeight, ['f32'], '[V, H]');
      if (dW.shape[0] !== p.V || dW.shape[1] !== p.H) throw new RangeError(`Expected dWeight of shape [${p.V}, ${p.H}] but received [${dW.shape.join(', ')}]`);
    }
    const accumulate = o.accumulate === undefined ? true : checkBoolean('options.accumulate', o.accumulate);
    const weightGrad = o.weightGrad === undefined ? true : checkBoolean('options.weightGrad', o.weightGrad);
    if (!weightGrad && dW) throw new TypeError('Expected no dWeight with weightGrad: false');
    if (dW) {
      // The kernels write dWeight while they read these.
      checkNoOverlap('dWeight', dW, 'weight', p.w);
      checkNoOverlap('dWeight', dW, 'hidden', p.h);
    }
    return { ...p, l, d, dW, accumulate, weightGrad };
  } catch (e) {
    if (p.tg.owned) p.tg.tensor.dispose();
    throw e;
  }
}

function wrapBwd(r: BwdHandles, p: ReturnType<typeof prepLinearBwd>): LinearBackwardResult {
  const out: LinearBackwardResult = { dHidden: Tensor._wrap(r.dHidden, 'f32', [p.n, p.H]) };
  if (p.dW) out.dWeight = p.dW;
  else if (r.dWeight) out.dWeight = Tensor._wrap(r.dWeight, 'f32', [p.V, p.H]);
  if (r.dBias) out.dBias = Tensor._wrap(r.dBias, 'f32', [p.V]);
  return out;
}

/**
 * Backward of linearLogprobs: recomputes each logits tile from hidden and weight (nothing [N, V]
 * is stored) and returns dHidden [N, H] and dWeight [V, H] (f32; added into opts.dWeight when given, or written over it with accumulate: false).
 */
export async function linearLogprobsBackward(hidden: Tensor, weight: Tensor, targets: Targets, lse: Tensor, dLogprobs: Tensor, opts?: LinearBackwardOptions): Promise<LinearBackwardResult> {
  const p = prepLinearBwd(hidden, weight, targets, lse, dLogprobs, opts);
  const r = await settle(p.tg, () => native.linearLogprobsBackward(p.h._desc('hidden'), p.w._desc('weight'), p.tg.tensor._desc('targets'), p.bias?._desc('bias') ?? null, p.temperature, p.l._desc('lse'), p.d._desc('dLogprobs'), (p.weightGrad ? p.dW?._desc('dWeight') ?? null : false), true, ...p.tile, p.accumulate, p.precision));
  return wrapBwd(r, p);
}

/** The synchronous form of linearLogprobsBackward(). */
export function linearLogprobsBackwardSync(hidden: Tensor, weight: Tensor, targets: Targets, lse: Tensor, dLogprobs: Tensor, opts?: LinearBackwardOptions): LinearBackwardResult {
  const p = prepLinearBwd(hidden, weight, targets, lse, dLogprobs, opts);
  return wrapBwd(settleSync(p.tg, () => native.linearLogprobsBackward(p.h._desc('hidden'), p.w._desc('weight'), p.tg.tensor._desc('targets'), p.bias?._desc('bias') ?? null, p.temperature, p.l._desc('lse'), p.d._desc('dLogprobs'), (p.weightGrad ? p.dW?._desc('dWeight') ?? null : false), false, ...p.tile, p.accumulate, p.precision) as BwdHandles), p);
}

// ---- forward and backward in one call ----

export interface LinearWithGradResult extends LogprobsResult, LinearBackwardResult {}

function prepWithGrad(hidden: unknown, weight: unknown, targets: unknown, dLogprobs: unknown, opts: LinearBackwardOptions | undefined) {
  const o = checkOptions('options', opts);
  const p = prepLinearBwd(hidden, weight, targets, null, dLogprobs, o);
  const knobs = (o as { _tokenBlock?: unknown; _vocabChunk?: unknown; _cacheBytes?: unknown });
  const k: { tokenBlock?: number; vocabChunk?: number; cacheBytes?: number } = {};
  try {
    if (knobs._tokenBlock !== undefined) k.tokenBlock = checkInteger('_tokenBlock', knobs._tokenBlock, 1);
    if (knobs._vocabChunk !== undefined) k.vocabChunk = checkInteger('_vocabChunk', knobs._vocabChunk, 1);
    if (knobs._cacheBytes !== undefined) k.cacheBytes = checkInteger('_cacheBytes', knobs._cacheBytes, 0);
  } catch (e) {
    if (p.tg.owned) p.tg.tensor.dispose();
    throw e;
  }
  // One pass on the CPU with an f32 weight and no bias; otherwise the two calls.
  const fused = p.h.device === 'cpu' && p.w.dtype === 'f32' && !p.bias;
  return { ...p, knobs: k, fused };
}

function wrapWithGrad(r: WithGradHandles, p: ReturnType<typeof prepWithGrad>): LinearWithGradResult {
  return { ...wrapResult(r, p.n), ...wrapBwd(r, p) };
}

function withGradArgs(p: ReturnType<typeof prepWithGrad>, async: boolean) {
  return [p.h._desc('hidden'), p.w._desc('weight'), p.tg.tensor._desc('targets'), null, p.temperature, p.d._desc('dLogprobs'),
    (p.weightGrad ? p.dW?._desc('dWeight') ?? null : false), async, p.accumulate, p.knobs, p.precision] as const;
}

function bwdOptions(p: ReturnType<typeof prepWithGrad>): LinearBackwardOptions {
  const o: LinearBackwardOptions = { temperature: p.temperature, accumulate: p.accumulate, weightGrad: p.weightGrad, precision: p.precision };
  if (p.bias) o.bias = p.bias;
  if (p.dW) o.dWeight = p.dW;
  if (p.tile[0] !== undefined || p.tile[1] !== undefined) o.tile = { ...(p.tile[0] !== undefined ? { tokens: p.tile[0] } : {}), ...(p.tile[1] !== undefined ? { vocab: p.tile[1] } : {}) };
  return o;
}

/**
 * The LM head's forward and backward in one call, for a loss whose gradient in the log-probs is
 * known before the forward (cross-entropy, as in SFT: dLogprobs = -1/N per scored token): returns
 * linearLogprobs()'s logprobs and lse with linearLogprobsBackward()'s dHidden and dWeight, with
 * the same options. On the CPU with an f32 weight and no bias it is one pass: the backward starts
 * from the forward's logits tiles, kept (when dWeight is written, not added to, and N <= H) in the
 * rows of dWeight that the backward then overwrites, so no logits tile is computed twice (3 GEMM
 * volumes against the two calls' 4) and nothing [N, V] exists. Elsewhere it makes the two calls.
 */
export async function linearLogprobsWithGrad(hidden: Tensor, weight: Tensor, targets: Targets, dLogprobs: Tensor, opts?: LinearBackwardOptions): Promise<LinearWithGradResult> {
  const p = prepWithGrad(hidden, weight, targets, dLogprobs, opts);
  if (!p.fused) {
    if (p.tg.owned) p.tg.tensor.dispose();
    const f = await linearLogprobs(p.h, p.w, targets, { temperature: p.temperature, precision: p.precision, ...(p.bias ? { bias: p.bias } : {}) });
    try {
      return { ...f, ...(await linearLogprobsBackward(p.h, p.w, targets, f.lse, p.d, bwdOptions(p))) };
    } catch (e) {
      f.logprobs.dispose(); f.lse.dispose();
      throw e;
    }
  }
  const r = await settle(p.tg, () => native.linearLogprobsWithGrad(...withGradArgs(p, true)));
  return wrapWithGrad(r, p);
}

/** The synchronous form of linearLogprobsWithGrad(). */
export function linearLogprobsWithGradSync(hidden: Tensor, weight: Tensor, targets: Targets, dLogprobs: Tensor, opts?: LinearBackwardOptions): LinearWithGradResult {
  const p = prepWithGrad(hidden, weight, targets, dLogprobs, opts);
  if (!p.fused) {
    if (p.tg.owned) p.tg.tensor.dispose();
    const f = linearLogprobsSync(p.h, p.w, targets, { temperature: p.temperature, precision: p.precision, ...(p.bias ? { bias: p.bias } : {}) });
    try {
      return { ...f, ...linearLogprobsBackwardSync(p.h, p.w, targets, f.lse, p.d, bwdOptions(p)) };
    } catch (e) {
      f.logprobs.dispose(); f.lse.dispose();
      throw e;
    }
  }
  return wrapWithGrad(settleSync(p.tg, () => native.linearLogprobsWithGrad(...withGradArgs(p, false)) as WithGradHandles), p);
}
