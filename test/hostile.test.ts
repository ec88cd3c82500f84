// A hostile checkpoint's tokenizer and chat template (issue 14, item 7) and a truncated video
// (item 14). A pre-tokenizer pattern like (a+)+$ blocked the event loop for minutes on a short
// text, as did a template looping over range(100000000); now each call is stopped after
// tokenizer.timeoutMs with a RangeError. A video whose container claims 48 frames of which 8
// decode was answered from copies of its last frame without a word; now the count is reported and
// past a threshold the request fails.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';

import { generate } from '../src/infer/generate.js';
import { loadModel } from '../src/infer/load.js';
import { QwenProcessor } from '../src/inputs/processor.js';
import { QwenTokenizer } from '../src/inputs/tokenizer.js';
import { TINY_TOKENIZER, writeTinyCheckpoint } from './ckpt_fixture.js';
import { rejectsLike, throwsLike } from './helpers.js';
import { HAVE_FFMPEG } from './synth_fixture.js';
import { skip } from './skip.js';

const dir = mkdtempSync(path.join(tmpdir(), 'vt-hostile-'));
test.after(() => rmSync(dir, { recursive: true, force: true }));

/** tokenizer.json with a catastrophic split pattern before the real one. */
function evilTokenizer(): Record<string, unknown> {
  const j = structuredClone(TINY_TOKENIZER.json) as { pre_tokenizer: { pretokenizers: unknown[] } };
  j.pre_tokenizer.pretokenizers.unshift({ type: 'Split', pattern: { Regex: '(a+)+$' }, behavior: 'Isolated', invert: false });
  return j;
}
const EVIL_TEMPLATE = "{%- for i in range(100000000) -%}{{ 'x' }}{%- endfor -%}";

test('a catastrophic pre-tokenizer pattern and an endless template are stopped after timeoutMs (they blocked for minutes)', () => {
  const tok = new QwenTokenizer({ tokenizer: evilTokenizer() });
  tok.timeoutMs = 200;
  assert.equal(Array.from(tok.encode('aaa')), Array.from(tok.encode('aaa')), 'ordinary text still tokenizes');
  const t0 = process.hrtime.bigint();
  throwsLike(() => tok.encode('a'.repeat(40) + '!'), RangeError, /Tokenizing 41 characters with tokenizer\.json took more than 200 ms and was stopped/);
  // not a timing assertion: a sanity bound that the call was stopped, not finished
  assert.ok(Number(process.hrtime.bigint() - t0) / 1e9 < 60, 'stopped');
  const tpl = new QwenTokenizer({ tokenizer: TINY_TOKENIZER.json, chatTemplate: EVIL_TEMPLATE });
  tpl.timeoutMs = 200;
  throwsLike(() => tpl.applyChatTemplate([{ role: 'user', content: 'hi' }]), RangeError, /chat template failed on these messages: The chat template took more than 200 ms/);
  // a normal tokenizer at the default bound is unaffected
  const ok = new QwenTokenizer({ tokenizer: TINY_TOKENIZER.json });
  assert.is(ok.timeoutMs, 2000);
  assert.ok(ok.decode(ok.encode('what is in the video?')) === 'what is in the video?');
});

test('through loadModel + generate: the hostile checkpoint answers with a RangeError; the event loop ran meanwhile only for the bound', async () => {
  const ck = mkdtempSync(path.join(dir, 'ck-'));
  writeTinyCheckpoint(ck, { files: { 'chat_template.json': JSON.stringify({ chat_template: EVIL_TEMPLATE }) } });
  const m = await loadModel(ck);
  m.tokenizer!.timeoutMs = 100;
  await rejectsLike(generate(m, { prompt: 'hi', maxNewTokens: 2 }), RangeError, /chat template .*took more than 100 ms/);
  m.dispose(); m.checkpoint.dispose();
  writeTinyCheckpoint(ck, { files: { 'tokenizer.json': JSON.stringify(evilTokenizer()), 'chat_template.json': JSON.stringify({ chat_template: '{{ messages[0].content }}' }) } });
  const m2 = await loadModel(ck);
  m2.tokenizer!.timeoutMs = 100;
  await rejectsLike(generate(m2, { prompt: 'a'.repeat(40) + '!', maxNewTokens: 2 }), RangeError, /Tokenizing .* took more than 100 ms/);
  const fine = await generate(m2, { prompt: 'what is it', maxNewTokens: 2, temperature: 0 });
  assert.is(fine[0]!.tokens.length, 2);
  m2.dispose(); m2.checkpoint.dispose();
});

test('a truncated video file: missing frames are reported, and past maxMissingFraction the request fails (needs ffmpeg)', async () => {
  if (!HAVE_FFMPEG) return skip('ffmpeg not on PATH');
  const full = path.join(dir, 'clip48.mp4');
  // 48 frames at 8 fps, the index (moov) first so that a cut file still claims all 48
  const r = spawnSync('ffmpeg', ['-v', 'error', '-f', 'lavfi', '-i', 'testsrc=size=64x48:rate=8:duration=6', '-pix_fmt', 'yuv420p', '-c:v', 'libx264',
    '-g', '4', '-movflags', '+faststart', full], { timeout: 60_000 });
  assert.is(r.status, 0, `ffmpeg: ${r.stderr}`);
  const bytes = readFileSync(full);
  const cut = path.join(dir, 'cut.mp4');
  writeFileSync(cut, bytes.subarray(0, Math.floor(bytes.length * 0.35)));
  const p = new QwenProcessor({ minPixels: 28 * 28 * 2, maxPixels: 28 * 28 * 4 });
  const opts = { fps: 2, minFrames: 4, maxFrames: 12 };
  const whole = await p.video(full, opts);
  assert.is(whole.missingFrames, 0);
  whole.pixelValues.dispose();
  await rejectsLike(p.video(cut, opts), Error, /cut\.mp4' delivered \d+ of its 12 sampled frames \(its container claims 48\).*more than maxMissingFraction \(0\.25\)/);
  const lax = await p.video(cut, { ...opts, maxMissingFraction: 1 });
  assert.ok(lax.missingFrames > 3 && lax.missingFrames < 12, `missing ${lax.missingFrames}`);
  lax.pixelValues.dispose();
  await rejectsLike(p.video(cut, { ...opts, maxMissingFraction: 2 }), RangeError, /\[0, 1\] for options\.maxMissingFraction/);
  // generate reports the count in its result, and fails past the threshold
  const ck = mkdtempSync(path.join(dir, 'gen-'));
  writeTinyCheckpoint(ck, { files: { 'preprocessor_config.json': JSON.stringify({ min_pixels: 28 * 28 * 2, max_pixels: 28 * 28 * 4 }) } });
  const m = await loadModel(ck);
  await rejectsLike(generate(m, { prompt: 'what happens?', video: cut, videoOptions: opts, maxNewTokens: 2 }), Error, /Is the file truncated\?/);
  const s = await generate(m, { prompt: 'what happens?', video: cut, videoOptions: { ...opts, maxMissingFraction: 1 }, maxNewTokens: 2, temperature: 0 });
  assert.is(s[0]!.missingFrames, lax.missingFrames);
  const good = await generate(m, { prompt: 'what happens?', video: full, videoOptions: opts, maxNewTokens: 2, temperature: 0 });
  assert.is(good[0]!.missingFrames, 0);
  const text = await generate(m, { prompt: 'what happens?', maxNewTokens: 2, temperature: 0 });
  assert.is(text[0]!.missingFrames, undefined, 'no video, no count');
  m.dispose(); m.checkpoint.dispose();
});

test.run();
