// The README's claim about examples/http_service.ts that had no test (issue 14): closing the
// connection aborts the generation. The server runs as a user runs it, with a time limit on its
// start and on every wait.
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';

import { generate } from '../src/infer/generate.js';
import { loadModel } from '../src/infer/load.js';
import { VIDEOTHINKER_VIDEO_OPTIONS } from '../src/index.js';
import { writeTinyCheckpoint } from './ckpt_fixture.js';
import { skip } from './skip.js';
import { HAVE_FFMPEG, ROOT } from './synth_fixture.js';

/** Resolves when `pred` holds for the text of `stream` so far; rejects after `ms`. */
function waitFor(stream: NodeJS.ReadableStream, pred: (s: string) => boolean, ms: number, what: string): Promise<string> {
  return new Promise((resolve, reject) => {
    let out = '';
    const timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}; got: ${out.slice(-500)}`)), ms);
    stream.on('data', (d) => { out += d; if (pred(out)) { clearTimeout(timer); resolve(out); } });
  });
}

test('http_service.ts: a client that leaves mid-answer aborts its generation; the next request is served', async () => {
  if (!HAVE_FFMPEG) return skip('ffmpeg not on PATH');
  const dir = mkdtempSync(path.join(tmpdir(), 'vt-http-'));
  writeTinyCheckpoint(dir, { seed: 102 });
  const srv = spawn(process.execPath, ['--import', 'tsx', 'examples/http_service.ts', dir, '0'], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
  try {
    const clip = path.join(dir, 'clip.mp4');
    const r = spawnSync('ffmpeg', ['-v', 'error', '-f', 'lavfi', '-i', 'testsrc=size=64x48:rate=4:duration=2', '-pix_fmt', 'yuv420p', '-c:v', 'libx264', '-crf', '18', clip], { timeout: 120_000 });
    assert.is(r.status, 0, String(r.stderr));
    // the answer runs to its length limit (checked here), so the client leaves while it is produced
    const m = await loadModel(dir);
    const full = await generate(m, { prompt: 'What happens?', video: clip, videoOptions: VIDEOTHINKER_VIDEO_OPTIONS, maxNewTokens: 1000, temperature: 0 });
    m.dispose(); m.checkpoint.dispose();
    assert.is(full[0]!.finishReason, 'length');
    const stderr = waitFor(srv.stderr, (s) => s.includes('request aborted: the client went away'), 120_000, 'the abort');
    const port = Number(/listening on :(\d+)/.exec(await waitFor(srv.stdout, (s) => /listening on :\d+/.test(s), 120_000, 'the server to listen'))![1]);
    await new Promise<void>((resolve, reject) => {
      const req = request({ port, method: 'POST', path: '/ask' }, (res) => {
        assert.is(res.statusCode, 200);
        res.once('data', () => { req.destroy(); resolve(); });  // the first token, then hang up
      });
      req.on('error', (e) => { if (!req.destroyed) reject(e); });
      req.end(JSON.stringify({ video: clip, question: 'What happens?', maxNewTokens: 1000 }));
    });
    await stderr;
    const res = await fetch(`http://127.0.0.1:${port}/ask`, { method: 'POST', body: JSON.stringify({ video: clip, question: 'What happens?', maxNewTokens: 4 }), signal: AbortSignal.timeout(120_000) });
    const events = (await res.text()).split('\n\n').filter((x) => x.startsWith('data: ') && x !== 'data: {}');
    assert.is(events.length, 4, 'the next request gets its 4 tokens');
  } finally {
    srv.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  }
});

test.run();
