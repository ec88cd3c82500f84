// Log-prob gathering: from logits at 1024 x 151936 (GB/s against DRAM bandwidth), and the fused
// LM head at N 256, H 896, V 151936 (a Qwen2.5-0.5B head), forward and forward+backward, against
// the unfused sequence of our own kernels (matmul into [N, V] logits, then gather) as the naive
// version, and onnxruntime-node (LogSoftmax + GatherElements; MatMul + LogSoftmax + GatherElements).
// The forward calls (from logits, and the fused head with f32 weights) are timed both ways users
// call them: results disposed and results left to the GC; onnxruntime likewise.
import { memoryStats, resetPeakMemory } from '../src/backend.js';
import { backend } from '../src/backend.js';
import { gatherLogprobs, gatherLogprobsSync, gatherLogprobsBackwardSync, linearLogprobs, linearLogprobsSync, linearLogprobsBackwardSync, linearLogprobsWithGradSync } from '../src/kernels/gather.js';
import { matmulSync } from '../src/kernels/matmul.js';
import { Tensor } from '../src/tensor.js';
import { compare, ORT_OPTIONS, ortRows, patternRows, peerByPattern, peerModel, record, time, type Ctx } from './util.js';

/** Peak native memory above what was live before fn, minus the bytes fn's results keep. */
function extraOf(fn: () => Tensor[]): number {
  resetPeakMemory();
  const base = memoryStats().liveBytes;
  const outs = fn();
  const kept = outs.reduce((s, t) => s + t.numel * 4, 0);
  const extra = memoryStats().peakBytes - base - kept;
  for (const t of outs) t.dispose();
  return extra;
}

export async function run(ctx: Ctx): Promise<void> {
  const V = 151936;
  // ---- from logits ----
  {
    const N = ctx.quick ? 256 : 1024;
    const kase = `gather ${N}x${V}`;
    const bytes = N * V * 4;
    const x = Tensor.randn([N, V], { seed: 1 });
    const tg = new Int32Array(N).map((_, i) => (i * 7919) % V);
    await patternRows(ctx, { suite: 'logprobs', kase, impl: 'videothinker', call: () => gatherLogprobs(x, tg), resultBytes: 2 * N * 4, bytes,
      note: 'one read of the logits' });
    const r = gatherLogprobsSync(x, tg);
    const dl = Tensor.from(new Float32Array(N).fill(1));
    const msb = await time(`${kase} backward`, () => gatherLogprobsBackwardSync(x, tg, r.lse, dl, { out: x }), ctx);
    record(ctx, { suite: 'logprobs', case: `${kase} backward`, impl: 'videothinker', ms: msb, bytes: 2 * bytes, note: 'in place: read + write' });
    // Naive: a JS float64 log-softmax + gather (what one writes without a kernel), on 16 rows.
    const rows = 16, xa = (x.toArray() as Float32Array).subarray(0, rows * V);
    const msn = await time(`${kase} naive`, () => {
      const out = new Float64Array(rows);
      for (let i = 0; i < rows; i++) {
        let m = -Infinity; for (let v = 0; v < V; v++) m = Math.max(m, xa[i * V + v]!);
        let s = 0; for (let v = 0; v < V; v++) s += Math.exp(xa[i * V + v]! - m);
        out[i] = xa[i * V + tg[i]!]! - m - Math.log(s);
      }
      return out;
    }, { ...ctx, timeMs: Math.min(ctx.timeMs, 500) }, { minIters: 2 });
    record(ctx, { suite: 'logprobs', case: kase, impl: 'naive', ms: msn * N / rows, bytes, note: 'JS float64 loop, 1 thread (16 rows, scaled)' });
    if (ctx.ort) {
      const s = await ctx.ort.InferenceSession.create(peerModel('gather.onnx'), ORT_OPTIONS);
      const y = new BigInt64Array(N); tg.forEach((t, i) => { y[i] = BigInt(t); });
      const feeds = { x: new ctx.ort.Tensor('float32', x.toArray(), [N, V]), y: new ctx.ort.Tensor('int64', y, [N, 1]) };
      await ortRows(ctx, { suite: 'logprobs', kase, session: s, feeds, resultBytes: N * 4, bytes, note: 'LogSoftmax + GatherElements' });
      await s.release?.();
    }
    compare(ctx, 'logprobs', kase, 'naive', null, peerByPattern);
    x.dispose(); dl.dispose(); r.logprobs.dispose(); r.lse.dispose();
  }
  // ---- fused LM head ----
  {
    const N = 256, H = 896;
    const h = Tensor.randn([N, H], { seed: 2 });
    const w = Tensor.randn([V, H], { seed: 3 });
    const wbf = w.to('bf16');
    const tg = new Int32Array(N).map((_, i) => (i * 31) % V);
    const dl = Tensor.from(new Float32Array(N).fill(1));
    const dW = Tensor.zeros([V, H]);
    const fwd = `lmhead ${N}x${H}x${V} fwd`, both = `lmhead ${N}x${H}x${V} fwd+bwd`;
    const gemm = `${backend().gemm.auto} GEMM`;
    for (const [impl, wt] of [['videothinker', w], ['videothinker bf16 w', wbf]] as const) {
      const extra = extraOf(() => { const r = linearLogprobsSync(h, wt, tg); return [r.logprobs, r.lse]; });
      if (wt === w) {
        await patternRows(ctx, { suite: 'logprobs', kase: fwd, impl, call: () => linearLogprobs(h, wt, tg), resultBytes: 2 * N * 4, flops: 2 * N * H * V,
          extraBytes: extra, note: `await linearLogprobs(); no [N, V] tensor; ${gemm}` });
      } else {
        const ms = await time(`${fwd} ${impl}`, () => { const r = linearLogprobsSync(h, wt, tg); r.logprobs.dispose(); r.lse.dispose(); }, ctx);
        record(ctx, { suite: 'logprobs', case: fwd, impl, ms, flops: 2 * N * H * V, extraBytes: extra, note: `no [N, V] tensor; ${gemm}; median` });
      }
      // Forward + backward as a trainer calls it (SFT: dL/dlogp known before the forward), the
      // head's gradient written over a reused buffer: one pass with an f32 weight (3 GEMM volumes,
      // the tiles kept in dWeight's rows), the two calls with bf16 (4 volumes).
      const msb = await time(`${both} ${impl}`, () => {
        const r = linearLogprobsWithGradSync(h, wt, tg, dl, { dWeight: dW, accumulate: false });
        r.logprobs.dispose(); r.lse.dispose(); r.dHidden.dispose();
      }, ctx, { minIters: 3 });
      const extrab = extraOf(() => { const r = linearLogprobsWithGradSync(h, wt, tg, dl, { dWeight: dW, accumulate: false }); return [r.logprobs, r.lse, r.dHidden]; });
      const onePass = wt.dtype === 'f32';
      record(ctx, { suite: 'logprobs', case: both, impl, ms: msb, flops: (onePass ? 6 : 8) * N * H * V, extraBytes: extrab,
        note: onePass ? 'linearLogprobsWithGrad: one pass, logits tiles kept in dWeight (6 NHV)' : 'two calls: the backward recomputes the logits (8 NHV)' });
      if (onePass) {
        const ms2 = await time(`${both} two calls`, () => {
          const r = linearLogprobsSync(h, wt, tg);
          const b = linearLogprobsBackwardSync(h, wt, tg, r.lse, dl, { dWeight: dW, accumulate: false });
          r.logprobs.dispose(); r.lse.dispose(); b.dHidden.dispose();
        }, ctx, { minIters: 3 });
        record(ctx, { suite: 'logprobs', case: both, impl: 'two calls', ms: ms2, flops: 8 * N * H * V, extraBytes: extrab, note: 'linearLogprobs + linearLogprobsBackward: recomputes the logits (8 NHV)' });
      }
    }
    // precision 'bf16': the head's GEMMs with bf16 products (operands rounded to bf16, f32 sums);
    // a bf16 weight is read as it is. '% peak' stays against the f32 FMA peak.
    const bf = backend().gemm.bf16.native ? 'VDPBF16PS kernels' : 'no AVX512_BF16 here: the f32 GEMM on rounded operands';
    for (const [impl, wt] of [['bf16 products', w], ['bf16 products, bf16 w', wbf]] as const) {
      const extra = extraOf(() => { const r = linearLogprobsSync(h, wt, tg, { precision: 'bf16' }); return [r.logprobs, r.lse]; });
      await patternRows(ctx, { suite: 'logprobs', kase: fwd, impl, call: () => linearLogprobs(h, wt, tg, { precision: 'bf16' }), resultBytes: 2 * N * 4,
        flops: 2 * N * H * V, extraBytes: extra, note: `await linearLogprobs(..., { precision: 'bf16' }); ${bf}` });
    }
    {
      const ms = await time(`${both} bf16 products`, () => {
        const r = linearLogprobsWithGradSync(h, w, tg, dl, { dWeight: dW, accumulate: false, precision: 'bf16' });
        r.logprobs.dispose(); r.lse.dispose(); r.dHidden.dispose();
      }, ctx, { minIters: 3 });
      record(ctx, { suite: 'logprobs', case: both, impl: 'bf16 products', ms, flops: 6 * N * H * V, note: `linearLogprobsWithGrad(..., { precision: 'bf16' }): one pass (6 NHV); ${bf}` });
    }
    // Naive: the unfused sequence of our own kernels, holding the [N, V] logits.
    const logits = Tensor.empty([N, V]);
    const unfusedFwd = () => { matmulSync(h, w, { transB: true, out: logits }); return gatherLogprobsSync(logits, tg); };
    const msn = await time(`${fwd} unfused`, () => { const r = unfusedFwd(); r.logprobs.dispose(); r.lse.dispose(); }, ctx);
    record(ctx, { suite: 'logprobs', case: fwd, impl: 'unfused', ms: msn, flops: 2 * N * H * V, extraBytes: N * V * 4, note: `matmul (${gemm}) + gather: holds the logits` });
    const dH = Tensor.empty([N, H]);
    const msnb = await time(`${both} unfused`, () => {
      const r = unfusedFwd();
      gatherLogprobsBackwardSync(logits, tg, r.lse, dl, { out: logits });
      matmulSync(logits, w, { out: dH });
      matmulSync(logits, h, { transA: true, out: dW });
      r.logprobs.dispose(); r.lse.dispose();
    }, ctx, { minIters: 3 });
    record(ctx, { suite: 'logprobs', case: both, impl: 'unfused', ms: msnb, flops: 6 * N * H * V, extraBytes: N * V * 4, note: 'keeps the logits: 6 NHV flops' });
    if (ctx.ort) {
      const s = await ctx.ort.InferenceSession.create(peerModel('lmhead.onnx'), ORT_OPTIONS);
      const y = new BigInt64Array(N); tg.forEach((t, i) => { y[i] = BigInt(t); });
      using wT = w.transpose().contiguous();  // the graph takes w as [H, V]
      const feeds = { h: new ctx.ort.Tensor('float32', h.toArray(), [N, H]), w: new ctx.ort.Tensor('float32', wT.toArray(), [H, V]), y: new ctx.ort.Tensor('int64', y, [N, 1]) };
      await ortRows(ctx, { suite: 'logprobs', kase: fwd, session: s, feeds, resultBytes: N * 4, flops: 2 * N * H * V, note: 'MatMul + LogSoftmax + GatherElements' });
      await s.release?.();
    }
    compare(ctx, 'logprobs', fwd, 'unfused', null, peerByPattern);
    compare(ctx, 'logprobs', both, 'unfused', null);
    for (const t of [h, w, wbf, dl, dW, logits, dH]) t.dispose();
  }
}
