// A small HTTP service around one loaded model:
//
//   npx tsx examples/http_service.ts /models/VideoThinker-R1 8080
//   curl -N -d '{"video":"/data/clip.mp4","question":"What happens?"}' localhost:8080/ask
//
// POST /ask {"video": path, "question": "...", "n": 1, "temperature": 0, "maxNewTokens": 256}
// streams the answer as text/event-stream: one `data: {"sample", "text", "done"}` event per token
// (`text` is what the token adds), then `event: end`. Closing the connection aborts the
// generation (ffmpeg decoding included). One generation runs at a time (the native kernels already
// use every core); others wait in a queue. Port 0 picks a free port; the first line printed says which.
import { createServer, type IncomingMessage } from 'node:http';
import type { AddressInfo } from 'node:net';

import { loadModel, VIDEOTHINKER_VIDEO_OPTIONS } from '../src/index.js';

const [dir, portArg] = process.argv.slice(2);
if (!dir) {
  console.error('usage: http_service.ts CHECKPOINT_DIR [PORT]');
  process.exit(2);
}

const model = await loadModel(dir);
let queue: Promise<unknown> = Promise.resolve();

async function body(req: IncomingMessage): Promise<Record<string, unknown>> {
  let s = '';
  for await (const chunk of req) s += chunk;
  const v = JSON.parse(s) as unknown;
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new TypeError('Expected a JSON object');
  return v as Record<string, unknown>;
}

const server = createServer(async (req, res) => {
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
  res.on('close', () => { if (!res.writableFinished) ac.abort(); });
  res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
  const job = queue.then(async () => {
    if (ac.signal.aborted) return;
    // generate() validates n, temperature and maxNewTokens: a bad value becomes an error event
    for await (const e of model.generateStream({
      video: q.video as string, prompt: q.question as string, videoOptions: VIDEOTHINKER_VIDEO_OPTIONS, signal: ac.signal,
      n: (q.n ?? 1) as number, temperature: (q.temperature ?? 0) as number, maxNewTokens: (q.maxNewTokens ?? 256) as number,
    })) {
      res.write(`data: ${JSON.stringify({ sample: e.sample, text: e.text ?? '', done: e.finishReason ?? null })}\n\n`);
    }
    res.write('event: end\ndata: {}\n\n');
  }).catch((e: Error) => {
    // a client that left ends its generation (logged, so that an operator sees it happen)
    if (ac.signal.aborted) console.error('request aborted: the client went away');
    else res.write(`event: error\ndata: ${JSON.stringify(e.message)}\n\n`);
  })
    .finally(() => res.end());
  queue = job;
});
server.listen(Number(portArg ?? 8080), () => console.log(`listening on :${(server.address() as AddressInfo).port}`));
