// Sampling from a QwenModel: temperature / top-k / top-p (native sampling through the rollout
// engine, src/infer/rollout.ts), `n` samples that share one prefill, per-token log-probs, a
// streaming async iterator, and AbortSignal. Every forward step is a native job, so the event loop
// stays free while tokens are produced.
import { constants as bufferConstants } from 'node:buffer';

import { checkInteger, checkNumber, checkOptions, checkTemperature, typeError } from '../errors.js';
import type { Tensor } from '../tensor.js';
import { preparePrompt, type ChatRequest, type PreparedPrompt } from '../inputs/prompt.js';
import type { QwenProcessor } from '../inputs/processor.js';
import type { QwenTokenizer } from '../inputs/tokenizer.js';
import type { GridThw } from '../model/positions.js';
import type { QwenNetwork } from '../model/qwen.js';
import { rolloutSteps, type RolloutPrompt } from './rollout.js';

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
  const decoders = model.tokenizer ? Array.from({ length: o.n }, () => model.tokenizer!.streamDecoder()) : null;
  const prompt: RolloutPrompt = { inputIds: o.ids };
  if (opts.pixelValues) { prompt.pixelValues = opts.pixelValues; prompt.imageGridThw = opts.imageGridThw ?? []; }
  if (opts.pixelValuesVideos) { prompt.pixelValuesVideos = opts.pixelValuesVideos; prompt.videoGridThw = opts.videoGridThw ?? []; }
  if (opts.secondPerGridTs) prompt.secondPerGridTs = opts.secondPerGridTs;
  signal?.throwIfAborted();
  for await (const step of rolloutSteps(model, [prompt], { ...o.sampling, n: o.n, maxNewTokens: o.maxNewTokens, seed: o.seed, stop: o.stop, ...(signal ? { signal } : {}) })) {
    for (const t of step) {
      const e: GenerateEvent = { sample: t.sample, token: t.token, logprob: t.logprob };
      if (t.finishReason) e.finishReason = t.finishReason;
      if (decoders) e.text = decoders[t.sample]!.push(t.token, t.finishReason !== undefined);
      yield e;
    }
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
