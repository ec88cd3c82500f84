// matmul f32: BLAS, builtin blocked AVX2 GEMM, naive triple loop, onnxruntime-node MatMul.
import { matmulSync, Tensor } from '../src/index.js';
import { compare, ORT_OPTIONS, peerModel, record, time, type Ctx } from './util.js';

export async function run(ctx: Ctx): Promise<void> {
  const sizes = ctx.quick ? [256, 1024] : [256, 512, 1024, 2048];
  for (const n of sizes) {
    const kase = `${n}x${n}x${n}`;
    const flops = 2 * n ** 3;
    const a = Tensor.randn([n, n], { seed: 1 }), b = Tensor.randn([n, n], { seed: 2 });
    const out = Tensor.empty([n, n]);
    for (const impl of ['blas', 'builtin'] as const) {
      const ms = await time(`matmul ${impl} ${kase}`, () => matmulSync(a, b, { impl, out }), ctx);
      record(ctx, { suite: 'matmul', case: kase, impl, ms, flops });
    }
    if (n <= 512) {
      const ms = await time(`matmul naive ${kase}`, () => matmulSync(a, b, { impl: 'naive', out }), { ...ctx, timeMs: Math.min(ctx.timeMs, 500) }, { minIters: 2 });
      record(ctx, { suite: 'matmul', case: kase, impl: 'naive', ms, flops, note: 'triple loop, 1 thread' });
    }
    if (ctx.ort && n === 1024) {
      const s = await ctx.ort.InferenceSession.create(peerModel('matmul.onnx'), ORT_OPTIONS);
      const feeds = { a: new ctx.ort.Tensor('float32', a.toArray(), [n, n]), b: new ctx.ort.Tensor('float32', b.toArray(), [n, n]) };
      const ms = await time(`ort matmul ${kase}`, () => s.run(feeds), ctx);
      record(ctx, { suite: 'matmul', case: kase, impl: 'onnxruntime', ms, flops });
    }
    compare(ctx, 'matmul', kase, n <= 512 ? 'naive' : null, 'onnxruntime');
    a.dispose(); b.dispose(); out.dispose();
  }
}
