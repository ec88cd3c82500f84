// Qwen2.5-VL network on the CPU: vision-tower patches/s for a small tower, and decoder prefill /
// decode tokens/s for a Qwen2.5-0.5B-sized decoder (hidden 896, 24 layers, 14 heads, 2 KV heads,
// intermediate 4864, vocab 151936, tied LM head) with random bf16 weights. Decode is reported as
// GB/s of weights read per token and its fraction of the measured DRAM bandwidth (the memory
// bound); the 'scalar' rows are the same code at the scalar SIMD level, the naive baseline.
import { backend, memoryStats, resetPeakMemory, setSimdLevel } from '../src/backend.js';
import { QwenProcessor } from '../src/inputs/processor.js';
import { QwenModel, type QwenConfig } from '../src/index.js';
import { Tensor } from '../src/tensor.js';
import { compare, record, time, type Ctx } from './util.js';

const DEC: QwenConfig = {
  hiddenSize: 896, numLayers: 24, numHeads: 14, numKvHeads: 2, intermediateSize: 4864, vocabSize: 151936,
  rmsNormEps: 1e-6, ropeTheta: 1000000, mropeSection: [8, 12, 12], tieWordEmbeddings: true, // head dim 64: half of the 3B's [16, 24, 24]
  imageTokenId: 151655, videoTokenId: 151656, visionStartTokenId: 151652,
};

function decoderWeights(cfg: QwenConfig, layers: number): { w: Map<string, Tensor>; bytes: number } {
  const w = new Map<string, Tensor>();
  let seed = 1, bytes = 0;
  const add = (name: string, shape: number[], std: number, mean = 0) => {
    const t = Tensor.randn(shape, { seed: seed++, std, mean, dtype: 'bf16' });
    w.set(name, t);
    if (name !== 'model.embed_tokens.weight') bytes += t.numel * 2;
  };
  const C = cfg.hiddenSize, F = cfg.intermediateSize, D = C / cfg.numHeads, KV = cfg.numKvHeads * D;
  add('model.embed_tokens.weight', [cfg.vocabSize, C], 0.02);
  for (let l = 0; l < layers; l++) {
    const p = `model.layers.${l}.`;
    add(p + 'input_layernorm.weight', [C], 0.05, 1); add(p + 'post_attention_layernorm.weight', [C], 0.05, 1);
    add(p + 'self_attn.q_proj.weight', [C, C], 0.02); add(p + 'self_attn.q_proj.bias', [C], 0.02);
    add(p + 'self_attn.k_proj.weight', [KV, C], 0.02); add(p + 'self_attn.k_proj.bias', [KV], 0.02);
    add(p + 'self_attn.v_proj.weight', [KV, C], 0.02); add(p + 'self_attn.v_proj.bias', [KV], 0.02);
    add(p + 'self_attn.o_proj.weight', [C, C], 0.02);
    add(p + 'mlp.gate_proj.weight', [F, C], 0.02); add(p + 'mlp.up_proj.weight', [F, C], 0.02); add(p + 'mlp.down_proj.weight', [C, F], 0.02);
  }
  add('model.norm.weight', [C], 0.05, 1);
  // The tied LM head reads the whole embedding table once per decoded token.
  bytes += cfg.vocabSize * C * 2;
  return { w, bytes };
}

async function decoder(ctx: Ctx): Promise<void> {
  const { w, bytes } = decoderWeights(DEC, DEC.numLayers);
  const model = new QwenModel(DEC, w);
  const params = bytes / 2;
  const P = ctx.quick ? 64 : 256;
  const ids = Tensor.from(Int32Array.from({ length: P }, (_, i) => (i * 7919) % 150000), [1, P]);
  const kase = '0.5B bf16';
  {
    const ms = await time(`decoder prefill ${P}`, async () => {
      const cache = model.createCache(1, P);
      await model.forward({ inputIds: ids, cache, logits: 'last' });
      cache.dispose();
    }, { ...ctx, timeMs: Math.min(ctx.timeMs, 4000) }, { minIters: 2 });
    record(ctx, { suite: 'model', case: `${kase} prefill ${P}`, impl: 'videothinker', ms, flops: 2 * params * P, note: `${(P / (ms / 1000)).toFixed(0)} tokens/s` });
  }
  const cache = model.createCache(1, P + 1);
  await model.forward({ inputIds: ids, cache, logits: 'none' });
  const one = Tensor.from(Int32Array.from([42]), [1, 1]);
  const step = async () => {
    cache.past = P;
    const o = await model.forward({ inputIds: one, cache, logits: 'last' });
    o.logits?.dispose(); o.hidden.dispose();
  };
  resetPeakMemory();
  const live0 = memoryStats().liveBytes;
  const ms = await time('decoder decode', step, ctx, { minIters: 5 });
  const extra = memoryStats().peakBytes - live0;
  record(ctx, { suite: 'model', case: `${kase} decode @${P}`, impl: 'videothinker', ms, bytes, extraBytes: extra,
    note: `${(1000 / ms).toFixed(1)} tokens/s; % peak = fraction of the bandwidth bound (${(bytes / 1e6).toFixed(0)} MB weights/token)` });
  if (backend().bestKernels === 'avx512') {
    const p2 = setSimdLevel('avx2');
    const msA = await time('decoder decode avx2', step, { ...ctx, timeMs: Math.min(ctx.timeMs, 1500) }, { minIters: 3 });
    setSimdLevel(p2);
    record(ctx, { suite: 'model', case: `${kase} decode @${P}`, impl: 'avx2', ms: msA, bytes, note: 'same code, AVX2 level (CPUs without AVX-512)' });
  }
  const prev = setSimdLevel('scalar');
  const msS = await time('decoder decode scalar', step, { ...ctx, timeMs: Math.min(ctx.timeMs, 1500) }, { minIters: 2 });
  setSimdLevel(prev);
  record(ctx, { suite: 'model', case: `${kase} decode @${P}`, impl: 'scalar', ms: msS, bytes, note: 'same code, scalar SIMD level' });
  compare(ctx, 'model', `${kase} decode @${P}`, 'scalar', null);
  cache.dispose(); ids.dispose(); one.dispose();
  model.dispose();
  for (const t of w.values()) t.dispose();
}

async function vision(ctx: Ctx): Promise<void> {
  const V = { depth: 8, hiddenSize: 256, numHeads: 4, intermediateSize: 640, outHiddenSize: 896, patchSize: 14, temporalPatchSize: 2,
    spatialMergeSize: 2, windowSize: 112, fullattBlockIndexes: [3, 7], tokensPerSecond: 2, inChannels: 3 };
  const cfg: QwenConfig = { ...DEC, numLayers: 0, vocabSize: 16, vision: V };
  const w = new Map<string, Tensor>();
  let seed = 100;
  const add = (name: string, shape: number[], std: number, mean = 0) => w.set(name, Tensor.randn(shape, { seed: seed++, std, mean, dtype: 'bf16' }));
  const C = V.hiddenSize, F = V.intermediateSize, K = 3 * 2 * 14 * 14;
  add('model.embed_tokens.weight', [16, DEC.hiddenSize], 0.02); add('model.norm.weight', [DEC.hiddenSize], 0.02, 1);
  add('visual.patch_embed.proj.weight', [C, 3, 2, 14, 14], 0.02);
  let flopsPerPatch = 2 * K * C;
  for (let l = 0; l < V.depth; l++) {
    const p = `visual.blocks.${l}.`;
    add(p + 'norm1.weight', [C], 0.05, 1); add(p + 'norm2.weight', [C], 0.05, 1);
    add(p + 'attn.qkv.weight', [3 * C, C], 0.05); add(p + 'attn.qkv.bias', [3 * C], 0.05);
    add(p + 'attn.proj.weight', [C, C], 0.05); add(p + 'attn.proj.bias', [C], 0.05);
    add(p + 'mlp.gate_proj.weight', [F, C], 0.05); add(p + 'mlp.gate_proj.bias', [F], 0.05);
    add(p + 'mlp.up_proj.weight', [F, C], 0.05); add(p + 'mlp.up_proj.bias', [F], 0.05);
    add(p + 'mlp.down_proj.weight', [C, F], 0.05); add(p + 'mlp.down_proj.bias', [C], 0.05);
    flopsPerPatch += 2 * (4 * C * C + 3 * C * F);
  }
  add('visual.merger.ln_q.weight', [C], 0.05, 1);
  add('visual.merger.mlp.0.weight', [4 * C, 4 * C], 0.02); add('visual.merger.mlp.0.bias', [4 * C], 0.02);
  add('visual.merger.mlp.2.weight', [V.outHiddenSize, 4 * C], 0.02); add('visual.merger.mlp.2.bias', [V.outHiddenSize], 0.02);
  const model = new QwenModel(cfg, w);
  const grid: [number, number, number] = ctx.quick ? [2, 16, 16] : [4, 28, 28];
  const N = grid[0] * grid[1] * grid[2];
  flopsPerPatch += (2 * 4 * C * 4 * C + 2 * 4 * C * V.outHiddenSize) / 4;
  const px = Tensor.randn([N, K], { seed: 7 });
  const ms = await time(`vision ${N} patches`, () => model.visionForward(px, [grid]), { ...ctx, timeMs: Math.min(ctx.timeMs, 3000) }, { minIters: 2 });
  record(ctx, { suite: 'model', case: `vision d${V.depth} C${C} ${N} patches`, impl: 'videothinker', ms, flops: flopsPerPatch * N,
    note: `${(N / (ms / 1000)).toFixed(0)} patches/s; GFLOP/s counts the linear layers only` });
  px.dispose(); model.dispose();
  for (const t of w.values()) t.dispose();
}

/**
 * The naive resize: a 2-D (not separable) antialiased bicubic evaluated per output pixel, with
 * the same kernel and support; what the separable passes of resizeBicubic save.
 */
function naiveResize(src: Uint8Array, H: number, W: number, oh: number, ow: number): Uint8Array {
  const cubic = (x: number) => { x = Math.abs(x); const a = -0.5; return x < 1 ? ((a + 2) * x - (a + 3)) * x * x + 1 : x < 2 ? (((x - 5) * x + 8) * x - 4) * a : 0; };
  const out = new Uint8Array(oh * ow * 3);
  const sy = H / oh, sx = W / ow, fy = Math.max(sy, 1), fx = Math.max(sx, 1);
  for (let y = 0; y < oh; y++) for (let x = 0; x < ow; x++) {
    const cy = (y + 0.5) * sy, cx = (x + 0.5) * sx;
    const y0 = Math.max(0, Math.trunc(cy - 2 * fy + 0.5)), y1 = Math.min(H, Math.trunc(cy + 2 * fy + 0.5));
    const x0 = Math.max(0, Math.trunc(cx - 2 * fx + 0.5)), x1 = Math.min(W, Math.trunc(cx + 2 * fx + 0.5));
    let r = 0, g = 0, b = 0, tw = 0;
    for (let yy = y0; yy < y1; yy++) for (let xx = x0; xx < x1; xx++) {
      const w = cubic((yy - cy + 0.5) / fy) * cubic((xx - cx + 0.5) / fx), p = (yy * W + xx) * 3;
      r += w * src[p]!; g += w * src[p + 1]!; b += w * src[p + 2]!; tw += w;
    }
    const o = (y * ow + x) * 3, u8 = (v: number) => Math.min(255, Math.max(0, Math.floor(v / tw + 0.5)));
    out[o] = u8(r); out[o + 1] = u8(g); out[o + 2] = u8(b);
  }
  return out;
}

/** The processor: 16 frames of 640 x 360 to VideoThinker's 196*28*28-pixel budget (280 x 504), plain JS. */
async function processor(ctx: Ctx): Promise<void> {
  const T = 16, H = 360, W = 640;
  let s = 12345;
  const frames = Array.from({ length: T }, () => ({ data: Uint8Array.from({ length: H * W * 3 }, () => ((s = (s * 1103515245 + 12345) >>> 0) >>> 24)), height: H, width: W }));
  const p = new QwenProcessor();
  const opts = { fps: 2, maxPixels: 196 * 28 * 28 };
  const [oh, ow] = p.videoSize(H, W, T, opts);
  const bytes = T * H * W * 3 + T * oh * ow * 3 * 4;  // u8 frames in, f32 patches out
  const kase = `processor ${T} frames ${W}x${H} -> ${ow}x${oh}`;
  const ms = await time(kase, () => p.videoSync(frames, opts).pixelValues.dispose(), { ...ctx, timeMs: Math.min(ctx.timeMs, 3000) }, { minIters: 2 });
  record(ctx, { suite: 'model', case: kase, impl: 'videothinker', ms, bytes, note: `${(T / (ms / 1000)).toFixed(0)} frames/s; resize + normalise + patchify in JS` });
  const one = frames[0]!;
  const msN = await time(`${kase} naive`, () => naiveResize(one.data, H, W, oh, ow), { ...ctx, timeMs: Math.min(ctx.timeMs, 2000) }, { minIters: 2 });
  record(ctx, { suite: 'model', case: kase, impl: 'naive', ms: msN * T, bytes, note: '2-D bicubic per output pixel (resize only), timed on one frame x 16' });
  compare(ctx, 'model', kase, 'naive', null);
}

export async function run(ctx: Ctx): Promise<void> {
  await processor(ctx);
  await vision(ctx);
  await decoder(ctx);
}
