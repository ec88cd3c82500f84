// `npm run soak`: thousands of mixed async calls, disposals, abandoned tensors and aborts against
// one process, printing RSS, the JS heap and the native live bytes (memoryStats()) as it goes. A
// service that embeds the package runs like this for weeks: memory must come back to where it was.
//
//   npm run soak                                   4000 operations, 8 in flight
//   npm run soak -- --ops 20000 --concurrency 16 --seed 3
//
// Operations (seeded, interleaved): matmul; attention and its backward; gather log-probs and their
// backward; the fused LM head forward and backward; cdpoLoss, linearCdpo, groupAdvantages; model
// forward (with and without a KV cache); generate with n samples, aborted at a random moment half
// of the time; loading the checkpoint folder (mapped or read) and disposing it; tensor churn
// (views, slices, copies, .data); index tensors overwritten while their call runs; results left
// undisposed for the garbage collector (its FinalizationRegistry backstop).
//
// At each report every operation in flight has finished and the GC has run: the native live
// bytes must be back at the baseline (nothing leaked), and RSS, after a warm-up of the allocator's
// caches, may not grow by more than max(64 MiB, 15%). Exit code 1 when either fails.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';

import {
  attention, attentionBackward, cdpoLoss, gatherLogprobs, gatherLogprobsBackward, generate, groupAdvantages, linearCdpo, linearLogprobs,
  linearLogprobsBackward, loadModel, matmul, memoryStats, parameterShapes, QwenModel, qwenConfigFromHF, Tensor, writeSafetensors,
} from '../src/index.js';

const args = process.argv.slice(2);
function opt(name: string, d: number): number {
  const i = args.indexOf(`--${name}`);
  if (i < 0) return d;
  const v = Number(args[i + 1]);
  if (!Number.isSafeInteger(v) || v < 1) { console.error(`--${name} takes a positive integer`); process.exit(2); }
  return v;
}
const OPS = opt('ops', 4000), CONC = opt('concurrency', 8), SEED = opt('seed', 1), REPORTS = opt('reports', 10);

let s = SEED >>> 0;
const rand = () => { s = (s + 0x6d2b79f5) >>> 0; let t = s; t = Math.imul(t ^ (t >>> 15), t | 1); t ^= t + Math.imul(t ^ (t >>> 7), t | 61); return ((t ^ (t >>> 14)) >>> 0) / 4294967296; };
const int = (lo: number, hi: number) => lo + Math.floor(rand() * (hi - lo + 1));
const randn = (shape: number[]) => Tensor.randn(shape, { seed: int(0, 1e9) });

// A tiny Qwen2.5-VL, in memory and as a checkpoint folder.
const HF = {
  hidden_size: 32, num_hidden_layers: 2, num_attention_heads: 4, num_key_value_heads: 2, intermediate_size: 64, vocab_size: 300,
  rms_norm_eps: 1e-6, rope_theta: 1e6, rope_scaling: { type: 'mrope', mrope_section: [1, 2, 1] }, image_token_id: 290, video_token_id: 291,
  vision_start_token_id: 292, vision_config: { depth: 2, hidden_size: 32, num_heads: 2, intermediate_size: 48, out_hidden_size: 32, patch_size: 14,
    temporal_patch_size: 2, spatial_merge_size: 2, window_size: 112, fullatt_block_indexes: [1], tokens_per_second: 2, in_channels: 3 },
};
const config = qwenConfigFromHF(HF);
const weights = new Map<string, Tensor>();
for (const [k, sh] of parameterShapes(config).shapes) weights.set(k, Tensor.randn(sh, { seed: weights.size + 1, std: 0.1 }));
const model = new QwenModel(config, weights);
const dir = mkdtempSync(path.join(tmpdir(), 'vt-soak-'));
writeSafetensors(path.join(dir, 'model.safetensors'), weights);
writeFileSync(path.join(dir, 'config.json'), JSON.stringify(HF));
const PATCH = 3 * 2 * 14 * 14;

const counts: Record<string, number> = {};
const errors: string[] = [];

async function operation(i: number): Promise<void> {
  const k = int(0, 12);
  const name = ['matmul', 'attention', 'gather', 'linear', 'cdpo', 'linearCdpo', 'forward', 'generate', 'abort', 'load', 'churn', 'race', 'abandon'][k]!;
  counts[name] = (counts[name] ?? 0) + 1;
  switch (k) {
    case 0: {
      using a = randn([int(1, 96), int(1, 96)]);
      using b = randn([a.shape[1]!, int(1, 96)]);
      (await matmul(a, b)).dispose();
      break;
    }
    case 1: {
      const T = int(1, 150), H = 2, D = 16;
      using q = randn([T, H, D]);
      using kk = randn([T, H, D]);
      using v = randn([T, H, D]);
      const r = await attention(q, kk, v, { causal: rand() < 0.5 });
      using dO = randn([T, H, D]);
      const g = await attentionBackward(q, kk, v, r.out, r.lse, dO, { causal: false });
      for (const t of [r.out, r.lse, g.dq, g.dk, g.dv]) t.dispose();
      break;
    }
    case 2: {
      const N = int(1, 64), V = int(1, 3000);
      using x = randn([N, V]);
      const tg = Int32Array.from({ length: N }, () => int(0, V - 1));
      const r = await gatherLogprobs(x, tg, { entropy: rand() < 0.5 });
      const d = await gatherLogprobsBackward(x, tg, r.lse, r.logprobs, rand() < 0.5 ? { out: x } : {});
      if (d !== x) d.dispose();
      r.logprobs.dispose(); r.lse.dispose(); r.entropy?.dispose();
      break;
    }
    case 3: {
      const N = int(1, 32), H = 16, V = int(1, 2000);
      using h = randn([N, H]);
      using w = randn([V, H]);
      const tg = Int32Array.from({ length: N }, () => int(0, V - 1));
      const r = await linearLogprobs(h, w, tg);
      const b = await linearLogprobsBackward(h, w, tg, r.lse, r.logprobs);
      for (const t of [r.logprobs, r.lse, b.dHidden, b.dWeight]) t.dispose();
      break;
    }
    case 4: {
      const B = int(1, 8), off = [0];
      for (let j = 0; j < B; j++) off.push(off[off.length - 1]! + int(0, 40));
      const N = off[B]!;
      const adv = await groupAdvantages(Float32Array.from({ length: B }, () => int(0, 3)), 1);
      const r = await cdpoLoss({ logprobs: Float32Array.from({ length: N }, () => -rand() * 3), advantages: adv, seqOffsets: Int32Array.from(off),
        oldLogprobs: Float32Array.from({ length: N }, () => -rand() * 3), importanceSampling: rand() < 0.5 ? 'token' : 'sequence' });
      r.dLogprobs.dispose(); adv.dispose();
      break;
    }
    case 5: {
      const N = int(1, 24), H = 16, V = int(2, 500);
      using h = randn([N, H]);
      using w = randn([V, H]);
      const r = await linearCdpo({ hidden: h, weight: w, targets: Int32Array.from({ length: N }, () => int(0, V - 1)),
        advantages: Float32Array.from([1, -1]), seqOffsets: new Int32Array([0, N >> 1, N]) });
      r.dHidden.dispose(); r.dWeight.dispose(); r.logprobs.dispose();
      break;
    }
    case 6: {
      const grid: [number, number, number] = [2, 4, 4];
      using px = randn([32, PATCH]);
      const ids = [5, 292, ...new Array<number>(8).fill(291), 7];
      const cache = rand() < 0.5 ? model.createCache(1, ids.length + 4) : undefined;
      const out = await model.forward({ inputIds: ids, pixelValuesVideos: px, videoGridThw: [grid], secondPerGridTs: [0.5], ...(cache ? { cache } : {}) });
      out.dispose();
      if (cache) { const step = await model.forward({ inputIds: [9], cache }); step.dispose(); cache.dispose(); }
      break;
    }
    case 7: case 8: {
      const ac = new AbortController();
      if (k === 8) setTimeout(() => ac.abort(), int(0, 3));
      try {
        await generate(model, { inputIds: Array.from({ length: int(1, 20) }, () => int(0, 289)), maxNewTokens: int(1, 24), n: int(1, 3),
          temperature: rand() < 0.3 ? 0 : 1, seed: i, signal: ac.signal });
      } catch (e) {
        if (!ac.signal.aborted) throw e;
      }
      break;
    }
    case 9: {
      if (i % 5) break;  // the slowest operation: one in five of its turns
      const m = await loadModel(dir, { mmap: rand() < 0.5 });
      (await generate(m, { inputIds: [1, 2, 3], maxNewTokens: 2, temperature: 0 })).length;
      m.dispose(); m.checkpoint.dispose();
      break;
    }
    case 10: {
      const t = randn([int(1, 40), int(1, 40), 3]);
      const v = t.transpose(0, 1).slice(0, 0, Math.max(1, t.shape[1]! >> 1));
      v.toArray();
      const c = v.contiguous(), h = c.to('bf16'), back = h.to('f32');
      (back.data as Float32Array)[0] = 1;
      for (const x of [t, v, c, h, back]) x.dispose();
      break;
    }
    case 11: {
      const N = int(8, 200), V = 300;
      using x = randn([N, V]);
      using tg = Tensor.from(Int32Array.from({ length: N }, () => int(0, V - 1)));
      const p = gatherLogprobs(x, tg);
      (tg.data as Int32Array).fill(1 << 30);  // the call validated and copied the targets
      const r = await p;
      r.logprobs.dispose(); r.lse.dispose();
      break;
    }
    default: {
      // left to the garbage collector: the FinalizationRegistry frees them
      randn([int(1, 200), int(1, 200)]);
      const r = await attention(randn([4, 2, 8]), randn([4, 2, 8]), randn([4, 2, 8]));
      void r;
    }
  }
}

const mib = (b: number) => (b / 2 ** 20).toFixed(1).padStart(7);
async function settle(): Promise<void> {
  // two GC passes with turns of the event loop between them, so that FinalizationRegistry
  // callbacks (which run after a collection, as tasks) release what they hold
  for (let j = 0; j < 3; j++) {
    (globalThis as { gc?: () => void }).gc?.();
    await new Promise((r) => setTimeout(r, 10));
  }
}

async function main(): Promise<number> {
  if (!(globalThis as { gc?: () => void }).gc) console.log('(run with --expose-gc, as `npm run soak` does, for exact live-byte reports)');
  await settle();
  const base = memoryStats().liveBytes;
  console.log(`soak: ${OPS} operations, ${CONC} in flight, seed ${SEED}; native live bytes at start ${mib(base)} MiB`);
  console.log(' ops done |  RSS MiB | heap MiB | native live MiB | allocations');
  const every = Math.max(1, Math.floor(OPS / REPORTS));
  const rows: { done: number; rss: number; live: number }[] = [];
  let next = 0, done = 0;
  const t0 = Date.now();
  while (done < OPS) {
    const stop = Math.min(OPS, done + every);
    const inFlight = new Set<Promise<void>>();
    while (next < stop) {
      const i = next++;
      const p = operation(i).catch((e: Error) => { errors.push(`op ${i}: ${e.name}: ${e.message}`); }).finally(() => { inFlight.delete(p); done++; });
      inFlight.add(p);
      if (inFlight.size >= CONC) await Promise.race(inFlight);
    }
    await Promise.all(inFlight);
    await settle();
    const m = memoryStats(), rss = process.memoryUsage().rss;
    rows.push({ done, rss, live: m.liveBytes });
    console.log(`${String(done).padStart(9)} | ${mib(rss)}  | ${mib(process.memoryUsage().heapUsed)}  | ${mib(m.liveBytes)}         | ${m.allocations}`);
  }
  model.dispose();
  for (const t of weights.values()) t.dispose();
  rmSync(dir, { recursive: true, force: true });
  console.log(`${OPS} operations in ${((Date.now() - t0) / 1000).toFixed(1)} s: ${Object.entries(counts).map(([k, v]) => `${k} ${v}`).join(', ')}`);
  let bad = 0;
  if (errors.length) { bad++; console.log(`FAIL: ${errors.length} operations threw:\n  ${errors.slice(0, 10).join('\n  ')}`); }
  // Native memory: every report at the start's level (the weights and the model are all that live).
  const leak = rows.filter((r) => r.live > base);
  if (leak.length) { bad++; console.log(`FAIL: native live bytes above the start (${base}): ${leak.map((r) => `${r.live} after ${r.done}`).join(', ')}`); }
  // RSS: from the report after warm-up (the allocators' caches fill during the first tenth), flat.
  const warm = rows[Math.min(1, rows.length - 1)]!;
  const peak = Math.max(...rows.slice(1).map((r) => r.rss));
  const allowed = Math.max(64 * 2 ** 20, 0.15 * warm.rss);
  if (peak - warm.rss > allowed) { bad++; console.log(`FAIL: RSS grew by ${mib(peak - warm.rss)} MiB after warm-up (allowed ${mib(allowed)} MiB)`); }
  console.log(bad ? 'soak: NOT flat' : `soak: flat (native live bytes back at ${mib(base)} MiB every time; RSS within ${mib(peak - warm.rss)} MiB of ${mib(warm.rss)} MiB after warm-up)`);
  return bad ? 1 : 0;
}

process.exitCode = await main();
