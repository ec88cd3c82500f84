// Fused attention: 16 heads x L 1024 x D 80 in one segment, and 16 windows of 64 tokens (the
// vision encoder's windowed layers), forward and backward: GFLOP/s (4 L^2 D H forward, 10 L^2 D H
// backward), fraction of the FMA peak, against a naive materialising implementation (our matmul
// into [L, L] scores, a softmax, our matmul) and onnxruntime-node (MultiHeadAttention; the windows
// as a batch of plain attention graphs), and peak extra native memory. The forward is timed both
// ways users call it (results disposed, results left to the GC), and so is onnxruntime.
import { memoryStats, resetPeakMemory } from '../src/backend.js';
import { attention, attentionBackward, attentionBackwardSync, attentionSync } from '../src/kernels/attention.js';
import { matmulSync } from '../src/kernels/matmul.js';
import { Tensor } from '../src/tensor.js';
import { compare, ORT_OPTIONS, ortRows, patternRows, peerByPattern, peerModel, record, type Ctx, time } from './util.js';

/** Naive attention of one head: S = q k^T scale (materialised [L, L]), softmax, S v. */
function naiveHead(q: Tensor, k: Tensor, v: Tensor, S: Tensor, out: Tensor, scale: number): void {
  matmulSync(q, k, { transB: true, out: S });
  const s = S.data as Float32Array, L = S.shape[0]!, Lk = S.shape[1]!;
  for (let i = 0; i < L; i++) {
    let m = -Infinity;
    for (let j = 0; j < Lk; j++) m = Math.max(m, s[i * Lk + j]! * scale);
    let l = 0;
    for (let j = 0; j < Lk; j++) { const e = Math.exp(s[i * Lk + j]! * scale - m); s[i * Lk + j] = e; l += e; }
    for (let j = 0; j < Lk; j++) s[i * Lk + j]! /= l;
  }
  matmulSync(S, v, { out });
}

export async function run(ctx: Ctx): Promise<void> {
  const H = 16, D = 80;
  for (const [kase, L, win] of [['16x1024x80', 1024, 1024], ['16 windows of 64 (x16 heads, D 80)', 1024, 64]] as const) {
    const flops = 4 * (L / win) * win * win * D * H;
    const q = Tensor.randn([L, H, D], { seed: 1 }), k = Tensor.randn([L, H, D], { seed: 2 }), v = Tensor.randn([L, H, D], { seed: 3 });
    const cu = new Int32Array(L / win + 1).map((_, i) => i * win);
    const opts = { cuSeqlensQ: cu };
    resetPeakMemory();
    const base = memoryStats().liveBytes;
    const r = attentionSync(q, k, v, opts);
    const extra = memoryStats().peakBytes - base - (r.out.numel + r.lse.numel) * 4;
    await patternRows(ctx, { suite: 'attention', kase: `fwd ${kase}`, impl: 'videothinker', call: () => attention(q, k, v, opts),
      resultBytes: (L * H * D + L * H) * 4, flops, extraBytes: extra, note: 'await attention(); no score matrix' });
    resetPeakMemory();
    const base2 = memoryStats().liveBytes;
    const g = attentionBackwardSync(q, k, v, r.out, r.lse, r.out, opts);
    const extrab = memoryStats().peakBytes - base2 - (g.dq.numel + g.dk.numel + g.dv.numel) * 4;
    g.dq.dispose(); g.dk.dispose(); g.dv.dispose();
    await patternRows(ctx, { suite: 'attention', kase: `bwd ${kase}`, impl: 'videothinker', call: () => attentionBackward(q, k, v, r.out, r.lse, r.out, opts),
      resultBytes: 3 * L * H * D * 4, flops: 2.5 * flops, extraBytes: extrab, note: 'recomputes P from lse; no atomics' });
    // Naive: per head (and window), materialised scores through our matmul and a JS softmax.
    {
      const heads = [...Array(H).keys()].map((h) => [q, k, v].map((t) => t.slice(1, h, h + 1).reshape([L, D]).contiguous()));
      const S = Tensor.empty([win, win]), out = Tensor.empty([win, D]);
      const scale = 1 / Math.sqrt(D);
      const msn = await time(`attention naive ${kase}`, () => {
        for (const [hq, hk, hv] of heads) for (let w0 = 0; w0 < L; w0 += win) {
          naiveHead(hq!.slice(0, w0, w0 + win), hk!.slice(0, w0, w0 + win), hv!.slice(0, w0, w0 + win), S, out, scale);
        }
      }, { ...ctx, timeMs: Math.min(ctx.timeMs, 800) }, { minIters: 2 });
      record(ctx, { suite: 'attention', case: `fwd ${kase}`, impl: 'naive', ms: msn, flops, extraBytes: win * win * 4, note: 'matmul + JS softmax + matmul per head' });
      for (const hs of heads) for (const t of hs) t.dispose();
      S.dispose(); out.dispose();
    }
    if (ctx.ort) {
      const data = [q, k, v].map((t) => t.toArray());
      let s, feeds;
      if (win === L) {
        s = await ctx.ort.InferenceSession.create(peerModel('attn_mha.onnx'), ORT_OPTIONS);
        feeds = Object.fromEntries(['q', 'k', 'v'].map((n, i) => [n, new ctx.ort!.Tensor('float32', data[i], [1, L, H * D])]));
      } else {
        // [windows * heads, 64, D]: the same flops, laid out for the plain graph.
        s = await ctx.ort.InferenceSession.create(peerModel('attn_plain.onnx'), ORT_OPTIONS);
        const n = (L / win) * H;
        feeds = Object.fromEntries(['q', 'k', 'v'].map((nm, i) => [nm, new ctx.ort!.Tensor('float32', data[i], [n, win, D])]));
      }
      await ortRows(ctx, { suite: 'attention', kase: `fwd ${kase}`, session: s, feeds, resultBytes: L * H * D * 4, flops,
        note: win === L ? 'com.microsoft MultiHeadAttention' : 'MatMul + Softmax + MatMul, batched windows' });
      await s.release?.();
    }
    compare(ctx, 'attention', `fwd ${kase}`, 'naive', null, peerByPattern);
    for (const t of [q, k, v, r.out, r.lse]) t.dispose();
  }
}
