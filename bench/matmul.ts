// matmul f32: BLAS, builtin, naive triple loop and the bf16-product GEMM (precision 'bf16') into a
// given `out` (the GEMM alone), then at 1024^3
// (and 256^3 without --quick) the two ways users call it, against onnxruntime-node's MatMul in the
// same process: results disposed after each call, and results left to the garbage collector (a
// fresh [n, n] tensor per call either way), both timed as the mean over back-to-back calls so
// that collections count.
import { backend, matmul, matmulSync, Tensor } from '../src/index.js';
import { compare, ORT_OPTIONS, ortRows, patternRows, peerByPattern, peerModel, record, time, type Ctx } from './util.js';

export async function run(ctx: Ctx): Promise<void> {
  const sizes = ctx.quick ? [256, 1024] : [256, 512, 1024, 2048];
  const auto = backend().gemm.auto, bf16 = backend().gemm.bf16;
  for (const n of sizes) {
    const kase = `${n}x${n}x${n}`;
    const flops = 2 * n ** 3;
    const a = Tensor.randn([n, n], { seed: 1 }), b = Tensor.randn([n, n], { seed: 2 });
    const out = Tensor.empty([n, n]);
    for (const impl of ['blas', 'builtin'] as const) {
      const ms = await time(`matmul ${impl} ${kase}`, () => matmulSync(a, b, { impl, out }), ctx);
      record(ctx, { suite: 'matmul', case: kase, impl, ms, flops, note: `into out=${impl === auto ? `; what 'auto' runs here` : ''}` });
    }
    // precision 'bf16': operands rounded to bf16, f32 sums (% peak stays against the f32 FMA peak).
    const bfNote = `precision 'bf16': ${bf16.native ? 'VDPBF16PS kernels' : 'no AVX512_BF16 here: the f32 GEMM on rounded operands'}`;
    const msb = await time(`matmul bf16 ${kase}`, () => matmulSync(a, b, { precision: 'bf16', out }), ctx);
    record(ctx, { suite: 'matmul', case: kase, impl: 'bf16 products', ms: msb, flops, note: `into out=; ${bfNote}` });
    if (n <= 512) {
      const ms = await time(`matmul naive ${kase}`, () => matmulSync(a, b, { impl: 'naive', out }), { ...ctx, timeMs: Math.min(ctx.timeMs, 500) }, { minIters: 2 });
      record(ctx, { suite: 'matmul', case: kase, impl: 'naive', ms, flops, note: 'triple loop, 1 thread' });
    }
    if (n === 1024 || (!ctx.quick && n === 256)) {
      await patternRows(ctx, { suite: 'matmul', kase, impl: `auto (${auto})`, call: () => matmul(a, b), resultBytes: n * n * 4, flops, note: 'await matmul(a, b)' });
      await patternRows(ctx, { suite: 'matmul', kase, impl: 'bf16 products', call: () => matmul(a, b, { precision: 'bf16' }), resultBytes: n * n * 4, flops, note: `await matmul(a, b, { precision: 'bf16' }); ${bfNote}` });
      if (ctx.ort) {
        const session = await ctx.ort.InferenceSession.create(peerModel('matmul.onnx'), ORT_OPTIONS);
        const feeds = { a: new ctx.ort.Tensor('float32', a.toArray(), [n, n]), b: new ctx.ort.Tensor('float32', b.toArray(), [n, n]) };
        await ortRows(ctx, { suite: 'matmul', kase, session, feeds, resultBytes: n * n * 4, flops });
        await session.release?.();
      }
    }
    compare(ctx, 'matmul', kase, n <= 512 ? 'naive' : null, null, peerByPattern);
    a.dispose(); b.dispose(); out.dispose();
  }
}
