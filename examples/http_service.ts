// A small HTTP service around one loaded model: POST /ask {"video": "/path/clip.mp4",
// "question": "...", "n": 1, "temperature": 0} streams the answer as text/event-stream, one event
// per token; closing the connection aborts the generation. One generation runs at a time (the
// native kernels already use every core); others wait in a queue. The prompt side (tokenizer,
// chat template, video processor) comes from the checkpoint loader, as in video_qa.ts.
//
//   npx tsx examples/http_service.ts /models/VideoThinker-R1 8080
//   curl -N -d '{"video":"clip.mp4","question":"What happens?"}' localhost:8080/ask
import { createServer, type IncomingMessage } from 'node:http';

import { loadModel } from '../src/model/index.js';
import type { Tensor } from '../src/tensor.js';

const [dir, portArg] = process.argv.slice(2);
if (!dir) {
  console.error('usage: http_service.ts CHECKPOINT_DIR [PORT]');
  process.exit(2);
}
interface Prepared { inputIds: Int32Array; pixelValuesVideos: Tensor; videoGridThw: [number, number, number][]; secondPerGridTs: number[] }
interface CheckpointTools {
  processor: { prepare(o: { messages: unknown[]; video: string; fps?: number }): Promise<Prepared> };
  tokenizer: { decode(ids: number[]): string; eosTokenIds: number[] };
}

const model = await loadModel(dir);
const { processor, tokenizer } = model.checkpoint as unknown as CheckpointTools;
let queue: Promise<unknown> = Promise.resolve();

async function body(req: IncomingMessage): Promise<Record<string, unknown>> {
  let s = '';
  for await (const chunk of req) s += chunk;
  const v = JSON.parse(s) as unknown;
  if (typeof v !== 'object' || v === null) throw new TypeError('Expected a JSON object');
  return v as Record<string, unknown>;
}

createServer(async (req, res) => {
  if (req.method !== 'POST' || req.url !== '/ask') { res.writeHead(404).end(); return; }
  let q: Record<string, unknown>;
  try {
    q = await body(req);
    if (typeof q.video !== 'string' || typeof q.question !== 'string') throw new TypeError('Expected "video" and "question" strings');
  } catch (e) {
    res.writeHead(400, { 'content-type': 'text/plain' }).end(String((e as Error).message));
    return;
  }
  const ac = new AbortController();
  res.on('close', () => ac.abort());
  res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
  const job = queue.then(async () => {
    if (ac.signal.aborted) return;
    const messages = [{ role: 'user', content: [{ type: 'video', video: q.video }, { type: 'text', text: q.question }] }];
    const inputs = await processor.prepare({ messages, video: q.video as string, fps: 2 });
    const n = typeof q.n === 'number' ? q.n : 1;
    const texts: number[][] = Array.from({ length: n }, () => []);
    for await (const e of model.generateStream({ ...inputs, n, maxNewTokens: 256, temperature: typeof q.temperature === 'number' ? q.temperature : 0, stopTokens: tokenizer.eosTokenIds, signal: ac.signal })) {
      texts[e.sample]!.push(e.token);
      res.write(`data: ${JSON.stringify({ sample: e.sample, text: tokenizer.decode(texts[e.sample]!), done: e.finishReason ?? null })}\n\n`);
    }
    inputs.pixelValuesVideos.dispose();
  }).catch((e: Error) => { if (!ac.signal.aborted) res.write(`event: error\ndata: ${JSON.stringify(e.message)}\n\n`); })
    .finally(() => res.end());
  queue = job;
}).listen(Number(portArg ?? 8080), () => console.log(`listening on :${portArg ?? 8080}`));
