// Sampling from a QwenModel: temperature / top-k / top-p with a seeded generator, `n` samples
// that share one prefill (the prompt's KV cache is computed once and copied to n rows: the
// rollouts of GRPO), per-token log-probs, a streaming async iterator, and AbortSignal. Every
// forward step is a native job, so the event loop stays free while tokens are produced.
import { constants as bufferConstants } from 'node:buffer';

import { checkInteger, checkNumber, checkOptions, checkTemperature, typeError } from '../errors.js';
import { Tensor } from '../tensor.js';
import { preparePrompt, type ChatRequest, type PreparedPrompt } from '../inputs/prompt.js';
import type { QwenProcessor } from '../inputs/processor.js';
import type { QwenTokenizer } from '../inputs/tokenizer.js';
import type { KVCache } from '../model/cache.js';
import type { GridThw } from '../model/positions.js';
import type { QwenNetwork } from '../model/qwen.js';

/** A network with what a question needs: the checkpoint's tokenizer and processor (QwenModel). */
export type ChatNetwork = QwenNetwork & { tokenizer?: QwenTokenizer; processor?: QwenProcessor };

/**
 * Either the low-level inputs (inputIds and the processor's pixel tensors) or a question: `prompt`
 * or `messages` with `video` / `images` (ChatRequest), which needs the checkpoint's tokenizer.
 */
export interface GenerateOptions extends Omit<ChatRequest, 'signal'> {
  /** The prompt's token ids (one sequence). */
  inputIds?: Int32Array | readonly number[];
  pixelValues?: Tensor;
  imageGridThw?: readonly GridThw[];
  pixelValuesVideos?: Tensor;
  videoGridThw?: readonly GridThw[];
  secondPerGridTs?: readonly number[];
  /** Tokens to generate at most per sample (default 64). */
  maxNewTokens?: number;
  /** Softmax temperature; 0 is greedy (default 1). */
  temperature?: number;
  /** Keep the smallest set of tokens whose probability reaches topP (default 1: all). */
  topP?: number;
  /** Keep the k most likely tokens (default 0: all). */
  topK?: number;
  /** Seed of the sampler: the same seed gives the same samples (default: random). */
  seed?: number;
  /** Samples of the prompt, sharing one prefill (default 1). */
  n?: number;
  /** Token ids that end a sample (included in its tokens); default: the tokenizer's end-of-turn ids, when it has one. */
  stopTokens?: readonly number[];
  signal?: AbortSignal;
}

export interface GeneratedSample {
  tokens: number[];
  /**
   * log p(token) under softmax(logits / temperature) (temperature 1 when greedy), before top-k /
   * top-p truncation: the sampling policy's log-probs, as GRPO-style trainers use them.
   */
  logprobs: number[];
  finishReason: 'stop' | 'length';
  /** The decoded text (special tokens left out), when the model has a tokenizer. */
  text?: string;
  /**
   * Sampled video frames the files did not deliver (a truncated file: each was filled with the
   * last decoded frame), summed over the request's videos; present when it had video files.
   * Past videoOptions.maxMissingFraction (default 0.25) the request fails instead.
   */
  missingFrames?: number;
}

/** One streamed token. */
export interface GenerateEvent {
  /** Which of the n samples. */
  sample: number;
  token: number;
  logprob: number;
  /** Set on a sample's last token. */
  finishReason?: 'stop' | 'length';
  /** The text this token adds to its sample (when the model has a tokenizer; '' while a character is incomplete). */
  text?: string;
}

/** A small seeded generator (xoshiro128**): uniform floats in [0, 1). */
export function samplerRng(seed: number): () => number {
  let a = (seed >>> 0) ^ 0x9e3779b9, b = 0x243f6a88, c = 0xb7e15162, d = (seed * 2654435761) >>> 0;
  for (let i = 0; i < 8; i++) next();
  function next(): number {
    const r = Math.imul(((Math.imul(b, 5) << 7) | (Math.imul(b, 5) >>> 25)), 9) >>> 0;
    const t = b << 9;
    c ^= a; d ^= b; b ^= c; a ^= d; c ^= t;
    d = (d << 11) | (d >>> 21);
    return r / 4294967296;
  }
  return next;
}

interface Sampling { temperature: number; topP: number; topK: number }

/**
 * Picks a token from one row of logits and returns it with its log-prob (see GeneratedSample).
 * Exported for tests.
 */
export function sampleToken(logits: Float32Array, s: Sampling, rand: () => number): { token: number; logprob: number } {
  const V = logits.length;
  const invT = s.temperature > 0 ? 1 / s.temperature : 1;
  let mx = -Infinity, arg = 0;
  for (let i = 0; i < V; i++) if (logits[i]! > mx) { mx = logits[i]!; arg = i; }
  let z = 0;
  for (let i = 0; i < V; i++) z += Math.exp((logits[i]! - mx) * invT);
  const logZ = Math.log(z);
  const lp = (i: number) => (logits[i]! - mx) * invT - logZ;
  if (s.temperature === 0) return { token: arg, logprob: lp(arg) };
  // Threshold of the kept set: the k-th largest logit and the nucleus boundary (exact: found by
  // sorting a copy of the logits, descending).
  let cut = -Infinity;
  if ((s.topK > 0 && s.topK < V) || s.topP < 1) {
    const sorted = Float32Array.from(logits).sort().reverse();
    if (s.topK > 0 && s.topK < V) cut = sorted[s.topK - 1]!;
    if (s.topP < 1) {
      let acc = 0;
      for (let i = 0; i < V; i++) {
        acc += Math.exp((sorted[i]! - mx) * invT - logZ);
        if (acc >= s.topP) { cut = Math.max(cut, sorted[i]!); break; }
      }
    }
  }
  let kept = 0;
  for (let i = 0; i < V; i++) if (logits[i]! >= cut) kept += Math.exp((logits[i]! - mx) * invT);
  let u = rand() * kept;
  let last = arg;
  for (let i = 0; i < V; i++) {
    if (logits[i]! < cut) continue;
    u -= Math.exp((logits[i]! - mx) * invT);
    last = i;
    if (u < 0) break;
  }
  return { token: last, logprob: lp(last) };
}

/** The sampling options, checked (before any prompt work, so a bad one fails at once). */
function sampling(model: ChatNetwork, o: GenerateOptions) {
  const maxNewTokens = checkInteger('maxNewTokens', o.maxNewTokens ?? 64, 1, MAX_CACHE_TOKENS);
  // 0 is greedy; a positive temperature below 1e-6 made (logits - max) / T overflow to NaN.
  const temperature = checkTemperature('temperature', o.temperature ?? 1, { greedy: true });
  const topP = checkNumber('topP', o.topP ?? 1, 0, 1, { exclusiveMin: true });
  const topK = checkInteger('topK', o.topK ?? 0, 0);
  const n = checkInteger('n', o.n ?? 1, 1);
  const seed = o.seed === undefined ? Math.floor(Math.random() * 2 ** 32) : checkInteger('seed', o.seed, 0, 2 ** 53);
  if (o.stopTokens !== undefined && !Array.isArray(o.stopTokens)) throw typeError('stopTokens', 'an array of token ids', o.stopTokens);
  const stop = new Set<number>(o.stopTokens ?? model.tokenizer?.eosTokenIds ?? []);
  if (o.signal !== undefined && !(o.signal instanceof AbortSignal)) throw typeError('signal', 'an AbortSignal', o.signal);
  return { maxNewTokens, sampling: { temperature, topP, topK }, n, seed, stop };
}

/** The longest KV cache a model makes (createCache's maxLen). */
const MAX_CACHE_TOKENS = 2 ** 24;

/**
 * The prompt's token ids, each checked before any conversion: Int32Array.from would wrap
 * 2^32 + 5 to 5 and truncate 1.7 to 1 (and NaN to 0) without a word.
 */
function promptIds(o: GenerateOptions, vocab: number): Int32Array {
  const src = o.inputIds;
  if (!(src instanceof Int32Array) && !Array.isArray(src)) throw typeError('inputIds', 'an Int32Array or an array of token ids', src);
  if (src.length === 0) throw new RangeError('Expected at least one prompt token for inputIds but received none');
  for (let i = 0; i < src.length; i++) {
    const x = src[i] as unknown;
    if (typeof x !== 'number') throw typeError(`inputIds[${i}]`, 'a token id (a number)', x);
    if (!Number.isInteger(x) || x < 0 || x >= vocab) throw new RangeError(`Expected token ids in [0, ${vocab}) for inputIds but received ${x} at index ${i}`);
  }
  return src instanceof Int32Array ? Int32Array.from(src) : Int32Array.from(src as number[]);
}

/**
 * Streams the tokens of `n` samples of one prompt as they are produced (all samples advance one
 * token per step). The prompt is run once; its cache is copied to the n rows.
 */
export function generateStream(model: ChatNetwork, opts: GenerateOptions): AsyncGenerator<GenerateEvent, void, undefined> {
  return streamRequest(model, opts, {});
}

/** What a request learnt beyond its tokens (for generate's result). */
interface RequestInfo { missingFrames?: number }

async function* streamRequest(model: ChatNetwork, opts: GenerateOptions, info: RequestInfo): AsyncGenerator<GenerateEvent, void, undefined> {
  checkOptions('options', opts);
  const signal = opts.signal;
  const s = sampling(model, opts);
  // Mapped weight files changed in place since loading: an error now, not a SIGBUS mid-answer.
  (model as { checkpoint?: { verify?(): void } }).checkpoint?.verify?.();
  let prepared: PreparedPrompt | null = null;
  if (opts.prompt !== undefined || opts.messages !== undefined) {
    if (opts.inputIds !== undefined) throw typeError('inputIds', 'no inputIds with prompt / messages (they are tokenized from them)', opts.inputIds);
    const { tokenizer, processor } = model;
    if (!tokenizer) {
      throw new TypeError('Expected a model with a tokenizer for prompt / messages (loadModel reads tokenizer.json from the checkpoint folder; ' +
        'this one has none): pass inputIds and pixel tensors instead');
    }
    prepared = await preparePrompt(model.config, tokenizer, processor, { ...opts, ...(signal ? { signal } : {}) });
    opts = { ...opts, ...prepared };
    if (prepared.missingFrames) info.missingFrames = prepared.missingFrames.reduce((a, b) => a + b, 0);
  }
  try {
    const ids = promptIds(opts, model.config.vocabSize);
    if (ids.length + s.maxNewTokens > MAX_CACHE_TOKENS) {
      throw new RangeError(`Expected maxNewTokens <= ${MAX_CACHE_TOKENS - ids.length} (a KV cache holds at most ${MAX_CACHE_TOKENS} tokens, the prompt has ${ids.length}) but received ${s.maxNewTokens}`);
    }
    checkCacheSize(model, s.n, ids.length + s.maxNewTokens, s.maxNewTokens);
    yield* stream(model, { ...s, ids }, opts, signal);
  } finally {
    prepared?.dispose();
  }
}

async function* stream(model: ChatNetwork, o: ReturnType<typeof sampling> & { ids: Int32Array }, opts: GenerateOptions,
  signal: AbortSignal | undefined): AsyncGenerator<GenerateEvent, void, undefined> {
  const V = model.config.vocabSize;
  const decoders = model.tokenizer ? Array.from({ length: o.n }, () => model.tokenizer!.streamDecoder()) : null;
  const rands = Array.from({ length: o.n }, (_, i) => samplerRng(o.seed + i * 0x9e3779b1));
  const maxLen = o.ids.length + o.maxNewTokens;
  let cache: KVCache | null = model.createCache(1, maxLen);
  let rows: KVCache | null = null;
  try {
    signal?.throwIfAborted();
    const prompt = Tensor.from(o.ids, [1, o.ids.length]);
    const pre = await model.forward({
      inputIds: prompt, pixelValues: opts.pixelValues, imageGridThw: opts.imageGridThw, pixelValuesVideos: opts.pixelValuesVideos,
      videoGridThw: opts.videoGridThw, secondPerGridTs: opts.secondPerGridTs, cache, logits: 'last',
    }, signal);
    prompt.dispose(); pre.hidden.dispose();
    // One sample decodes in the prompt's own cache; n share copies of it.
    if (o.n === 1) rows = cache;
    else { rows = cache.expand(0, o.n); cache.dispose(); }
    cache = null;
    let logits: Float32Array = Float32Array.from(pre.logits!.data as Float32Array);
    pre.logits!.dispose();
    const done = new Array<boolean>(o.n).fill(false);
    const next = new Int32Array(o.n);
    for (let step = 0; step < o.maxNewTokens; step++) {
      for (let i = 0; i < o.n; i++) {
        if (done[i]) continue;
        const row = step === 0 ? logits : logits.subarray(i * V, (i + 1) * V);
        const { token, logprob } = sampleToken(row, o.sampling, rands[i]!);
        next[i] = token;
        const stop = o.stop.has(token), length = step === o.maxNewTokens - 1;
        if (stop || length) done[i] = true;
        const e: GenerateEvent = { sample: i, token, logprob };
        if (stop || length) e.finishReason = stop ? 'stop' : 'length';
        if (decoders) e.text = decoders[i]!.push(token, stop || length);
        yield e;
      }
      if (done.every(Boolean)) break;
      signal?.throwIfAborted();
      const inp = Tensor.from(next, [o.n, 1]);
      const out = await model.forward({ inputIds: inp, cache: rows, logits: 'last' }, signal);
      inp.dispose(); out.hidden.dispose();
      logits = Float32Array.from(out.logits!.data as Float32Array);
      out.logits!.dispose();
    }
  } finally {
    cache?.dispose();
    rows?.dispose();
  }
}

/**
 * Copying the prompt's cache to n rows (KVCache.expand) goes through typed-array views, which
 * Node limits to 2^32 bytes: a larger n-row cache is refused before any work (one sample decodes
 * in the prompt's own cache, whatever its size).
 */
function checkCacheSize(model: ChatNetwork, n: number, maxLen: number, maxNewTokens: number): void {
  if (n === 1) return;
  const c = model.config;
  const bytes = c.numLayers * n * maxLen * c.numKvHeads * (c.hiddenSize / c.numHeads) * 4;
  if (bytes > bufferConstants.MAX_LENGTH) {
    throw new RangeError(`Expected n and maxNewTokens whose KV cache fits in ${bufferConstants.MAX_LENGTH} bytes but received n = ${n}, maxNewTokens = ${maxNewTokens} (${bytes} bytes): lower them, or generate the samples one at a time`);
  }
}

/** Generates `n` samples of one prompt; resolves with each sample's tokens and log-probs. */
export async function generate(model: ChatNetwork, opts: GenerateOptions): Promise<GeneratedSample[]> {
  const n = opts?.n ?? 1;
  const out: GeneratedSample[] = Array.from({ length: typeof n === 'number' && n > 0 ? n : 1 }, () => ({ tokens: [], logprobs: [], finishReason: 'length' as const }));
  const info: RequestInfo = {};
  for await (const e of streamRequest(model, opts, info)) {
    const s = out[e.sample]!;
    s.tokens.push(e.token); s.logprobs.push(e.logprob);
    if (e.finishReason) s.finishReason = e.finishReason;
  }
  if (model.tokenizer) for (const s of out) s.text = model.tokenizer.decode(s.tokens);
  if (info.missingFrames !== undefined) for (const s of out) s.missingFrames = info.missingFrames;
  return out;
}
