// Rollouts: n samples of each of several prompts, decoded together. Each prompt's prefill (vision
// tower and prompt) runs once; its KV cache is copied into the rows of its n samples inside one
// batch cache (prompts of different lengths left-padded there), so every row of every prompt
// advances in one forward per token. Rows that finish keep their place until half the batch is
// done, then the cache is compacted to the live rows. Sampling (temperature, top-k, top-p) runs
// natively; row (p, i) draws token t from stream (seed, p, i) at counter t, so a sample never
// depends on which other rows shared its batch.
import { gatherLogprobs } from '../kernels/gather.js';
import { native, type TensorDesc } from '../native.js';
import { KVCache } from '../model/cache.js';
import type { GridThw } from '../model/positions.js';
import type { QwenNetwork } from '../model/qwen.js';
import { Tensor } from '../tensor.js';

declare module '../native.js' {
  interface Binding {
    sampleRows(logits: TensorDesc, hi: Uint32Array, lo: Uint32Array, counters: Float64Array, o: { temperature: number; topP: number; topK: number; banned?: Int32Array },
      async: boolean): { tokens: Int32Array; logprobs: Float32Array } | Promise<{ tokens: Int32Array; logprobs: Float32Array }>;
  }
}

export interface RolloutPrompt {
  inputIds: Int32Array;
  pixelValues?: Tensor;
  imageGridThw?: readonly GridThw[];
  pixelValuesVideos?: Tensor;
  videoGridThw?: readonly GridThw[];
  secondPerGridTs?: readonly number[];
  /** The prompt's stream key (default: its index); rows of equal keys and seeds draw the same numbers. */
  key?: number;
}

export interface SamplingOptions {
  temperature: number;
  topP: number;
  topK: number;
}

export interface RolloutOptions extends SamplingOptions {
  n: number;
  maxNewTokens: number;
  seed: number;
  stop: ReadonlySet<number>;
  signal?: AbortSignal;
  /**
   * Also return the entropy of each sampled position's distribution, softmax(logits / T) before
   * truncation (T = 1 when greedy), as the log-probs: one native pass over the logits the sampler
   * already has per step, no further pass through the LM head (default false).
   */
  entropy?: boolean;
}

export interface Rollout {
  tokens: number[];
  /**
   * log p(token) under softmax(logits / T) before truncation (T = 1 when greedy). The image and
   * video placeholder tokens are never sampled (they still count in the softmax).
   */
  logprobs: number[];
  /** With `entropy: true`: -sum p log p of softmax(logits / T) at each position (T = 1 when greedy). */
  entropies?: number[];
  finishReason: 'stop' | 'length';
}

/** One decode step's new tokens: (prompt, sample, token, logprob, entropy?, finish?). */
export interface RolloutToken { prompt: number; sample: number; token: number; logprob: number; entropy?: number; finishReason?: 'stop' | 'length' }

/** A 64-bit stream seed as two 32-bit halves, mixed from (seed, key, sample). */
function stream(seed: number, key: number, sample: number): [number, number] {
  const mix = (h: number, v: number) => {
    h = Math.imul(h ^ (v >>> 0), 0x85ebca6b) >>> 0;
    h ^= h >>> 13;
    h = Math.imul(h, 0xc2b2ae35) >>> 0;
    return (h ^ (h >>> 16)) >>> 0;
  };
  const lo = Math.floor(seed) >>> 0, hi = Math.floor(seed / 2 ** 32) >>> 0;
  const a = mix(mix(mix(0x9e3779b9, lo), hi), key), b = mix(mix(a ^ 0x7f4a7c15, sample), key + 1);
  return [mix(a, sample), b];
}

/** Samples one token for each row of logits [R, V]. */
export async function sampleRows(logits: Tensor, streams: [number, number][], counters: number[], s: SamplingOptions & { banned?: readonly number[] }): Promise<{ tokens: Int32Array; logprobs: Float32Array }> {
  const hi = Uint32Array.from(streams, (x) => x[0]), lo = Uint32Array.from(streams, (x) => x[1]);
  const o = { temperature: s.temperature, topP: s.topP, topK: s.topK, ...(s.banned ? { banned: Int32Array.from(s.banned) } : {}) };
  return native.sampleRows(logits._desc('logits'), hi, lo, Float64Array.from(counters), o, true);
}

/** Rows `rows` of cache `src` (their first `src.past` positions) in a new cache. */
function gatherRows(src: KVCache, rows: readonly number[]): KVCache {
  const c = new KVCache(rows.length, src.maxLen, src.layers, src.kvHeads, src.headDim);
  const per = src.maxLen * src.kvHeads * src.headDim, used = src.past * src.kvHeads * src.headDim;
  for (const [s, d] of [[src.k, c.k], [src.v, c.v]] as const) {
    const sd = s.data as Float32Array, dd = d.data as Float32Array;
    for (let l = 0; l < src.layers; l++) {
      rows.forEach((r, j) => dd.set(sd.subarray((l * src.batch + r) * per, (l * src.batch + r) * per + used), (l * rows.length + j) * per));
    }
  }
  const km = src.keyMask.data as Uint8Array, kd = c.keyMask.data as Uint8Array;
  rows.forEach((r, j) => kd.set(km.subarray(r * src.maxLen, (r + 1) * src.maxLen), j * src.maxLen));
  c.past = src.past;
  c.ropeDeltas = rows.map((r) => src.ropeDeltas[r]!);
  return c;
}

/**
 * Decodes `opts.n` samples of every prompt, yielding each step's new tokens (a row's last token
 * carries its finishReason). Prompts are prefilled one by one (each has its own vision inputs),
 * then decoded together.
 */
export async function* rolloutSteps(model: QwenNetwork, prompts: readonly RolloutPrompt[], opts: RolloutOptions): AsyncGenerator<RolloutToken[], void, undefined> {
  const { n, maxNewTokens, signal } = opts;
  const V = model.config.vocabSize;
  const P = Math.max(...prompts.map((p) => p.inputIds.length));
  const maxLen = P + maxNewTokens;
  const R = prompts.length * n;
  let cache: KVCache | null = null;
  const first = Tensor.empty([R, V]);
  try {
    cache = model.createCache(R, maxLen);
    // One sample of one prompt decodes in the prompt's own cache: nothing is copied (a cache too
    // large for a typed-array view, over 4 GiB, still works).
    const single = R === 1;
    for (let p = 0; p < prompts.length; p++) {
      signal?.throwIfAborted();
      const pr = prompts[p]!;
      const len = pr.inputIds.length;
      const own = single ? cache : model.createCache(1, len);
      try {
        const ids = Tensor.from(pr.inputIds, [1, len]);
        const out = await model.forward({
          inputIds: ids, cache: own, logits: 'last',
          ...(pr.pixelValues ? { pixelValues: pr.pixelValues, imageGridThw: pr.imageGridThw! } : {}),
          ...(pr.pixelValuesVideos ? { pixelValuesVideos: pr.pixelValuesVideos, videoGridThw: pr.videoGridThw!, ...(pr.secondPerGridTs ? { secondPerGridTs: pr.secondPerGridTs } : {}) } : {}),
        }, signal);
        ids.dispose();
        out.hidden.dispose();
        const lg = out.logits!.data as Float32Array;
        if (single) {
          (first.data as Float32Array).set(lg);
          out.logits!.dispose();
          continue;
        }
        const km = cache.keyMask.data as Uint8Array;
        // Left-pad the prompt inside the batch cache: its keys end at position P like every row's.
        const per = maxLen * cache.kvHeads * cache.headDim, rowUsed = len * cache.kvHeads * cache.headDim;
        const off = (P - len) * cache.kvHeads * cache.headDim;
        for (const [s, d] of [[own.k, cache.k], [own.v, cache.v]] as const) {
          const sd = s.data as Float32Array, dd = d.data as Float32Array;
          for (let l = 0; l < cache.layers; l++) {
            const from = sd.subarray(l * rowUsed, (l + 1) * rowUsed);
            for (let i = 0; i < n; i++) dd.set(from, (l * R + p * n + i) * per + off);
          }
        }
        for (let i = 0; i < n; i++) {
          const r = p * n + i;
          km.fill(0, r * maxLen, r * maxLen + P - len);
          km.fill(1, r * maxLen + P - len, r * maxLen + P);
          // Positions continue from the prompt's own: past (P) + t + delta.
          cache.ropeDeltas[r] = own.ropeDeltas[0]! + len - P;
          (first.data as Float32Array).set(lg, r * V);
        }
        out.logits!.dispose();
      } finally { if (!single) own.dispose(); }
    }
    cache.past = P;
    // A completion never holds an image / video placeholder: its embedding would be taken for a
    // vision row (and a tiny model can sample one).
    const banned = [model.config.imageTokenId, model.config.videoTokenId].filter((t) => t >= 0 && t < V);
    const streams = Array.from({ length: R }, (_, r) => stream(opts.seed, prompts[Math.floor(r / n)]!.key ?? Math.floor(r / n), r % n));
    // `rows[j]` is the global row in cache row j; `live` which rows still decode.
    let rows = Array.from({ length: R }, (_, r) => r);
    const done = new Array<boolean>(R).fill(false);
    const last = new Int32Array(R);
    let logits: Tensor = first;
    for (let t = 0; t < maxNewTokens; t++) {
      const { tokens, logprobs } = await sampleRows(logits, rows.map((r) => streams[r]!), rows.map(() => t), { ...opts, banned });
      let entropy: Float32Array | undefined;
      if (opts.entropy) {
        const g = await gatherLogprobs(logits, tokens, { entropy: true, temperature: opts.temperature > 0 ? opts.temperature : 1 });
        entropy = g.entropy!.toArray() as Float32Array;
        g.logprobs.dispose(); g.lse.dispose(); g.entropy!.dispose();
      }
      if (logits !== first) logits.dispose();
      const events: RolloutToken[] = [];
      rows.forEach((r, j) => {
        if (done[r]) return;
        const token = tokens[j]!, ev: RolloutToken = { prompt: Math.floor(r / n), sample: r % n, token, logprob: logprobs[j]! };
        if (entropy) ev.entropy = entropy[j]!;
        last[r] = token;
        const stop = opts.stop.has(token), length = t === maxNewTokens - 1;
        if (stop || length) { done[r] = true; ev.finishReason = stop ? 'stop' : 'length'; }
        events.push(ev);
      });
      yield events;
      const live = rows.filter((r) => !done[r]);
      if (live.length === 0) break;
      signal?.throwIfAborted();
      // Half the batch finished: the live rows move to a smaller cache (each compaction copies the
      // cache once; halving bounds the copies by twice the cache).
      if (live.length <= rows.length / 2) {
        const keep = live.map((r) => rows.indexOf(r));
        const c = gatherRows(cache, keep);
        cache.dispose();
        cache = c;
        rows = live;
      }
      const inp = Tensor.from(Int32Array.from(rows, (r) => last[r]!), [rows.length, 1]);
      const out = await model.forward({ inputIds: inp, cache, logits: 'last' }, signal);
      inp.dispose();
      out.hidden.dispose();
      logits = out.logits!.reshape([rows.length, V]);
      out.logits!.dispose();
    }
  } finally {
    cache?.dispose();
    first.dispose();
  }
}

/** All samples of all prompts: result[p][i]. */
export async function rollout(model: QwenNetwork, prompts: readonly RolloutPrompt[], opts: RolloutOptions): Promise<Rollout[][]> {
  const out = prompts.map(() => Array.from({ length: opts.n }, (): Rollout => ({ tokens: [], logprobs: [], ...(opts.entropy ? { entropies: [] } : {}), finishReason: 'length' })));
  for await (const step of rolloutSteps(model, prompts, opts)) {
    for (const e of step) {
      const s = out[e.prompt]![e.sample]!;
      s.tokens.push(e.token);
      s.logprobs.push(e.logprob);
      if (e.entropy !== undefined) s.entropies!.push(e.entropy);
      if (e.finishReason) s.finishReason = e.finishReason;
    }
  }
  return out;
}
