// The `videothinker` command as a user runs it: the dispatcher (help, version, info by default,
// --threads before the command, unknown commands), each command's --help, the exit codes of
// usage errors (2) and bad values (1), numbers as the user writes them, and `ask` stopped by
// Ctrl-C or by a reader that goes away (issue 14, items 5 and 16). synth, init, eval and ask's
// answers have their own tests in their files.
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';

import { backend } from '../src/index.js';
import { generate } from '../src/infer/generate.js';
import { loadModel } from '../src/infer/load.js';
import { int, num } from '../src/cli/args.js';
import { writeTinyCheckpoint } from './ckpt_fixture.js';
import { cli, ROOT } from './synth_fixture.js';

const CK = mkdtempSync(path.join(tmpdir(), 'vt-cli-'));
// weights seeded so that the greedy answer never reaches a stop token (checked below)
writeTinyCheckpoint(CK, { seed: 108 });  // a seed whose greedy answer to 'what is it' never stops (the EPIPE / Ctrl-C test needs one)
test.after(() => rmSync(CK, { recursive: true, force: true }));

/** `videothinker ask` as a child; `onStdout` gets it and the first chunk. Resolves with the exit code and stderr. */
function ask(args: string[], onStart: (child: ReturnType<typeof spawn>) => void): Promise<{ code: number | null; signal: string | null; stderr: string; stdout: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', 'src/cli/index.ts', 'ask', CK, ...args], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
    let stderr = '', stdout = '';
    const timer = setTimeout(() => { child.kill('SIGKILL'); reject(new Error(`ask did not end in 120 s: ${stderr}`)); }, 120_000);
    child.stderr!.on('data', (d) => { stderr += d; });
    child.stdout!.on('data', (d) => { stdout += d; });
    child.on('error', reject);
    child.on('close', (code, signal) => { clearTimeout(timer); resolve({ code, signal, stderr, stdout }); });
    onStart(child);
  });
}

test('help, version, info by default and with --threads before it', () => {
  const h = cli('--help');
  assert.is(h.status, 0);
  for (const c of ['info', 'check', 'ask', 'synth', 'init', 'eval']) assert.match(h.stdout, new RegExp(`videothinker ${c}\\b`), `the help lists ${c}`);
  const v = cli('--version');
  assert.is(v.status, 0);
  assert.is(v.stdout.trim(), backend().version);
  const plain = cli();
  assert.is(plain.status, 0);
  assert.match(plain.stdout, /^videothinker \d+\.\d+\.\d+\n {2}kernels/);
  const t = cli('--threads', '1', 'info', '--json');
  assert.is(t.status, 0, t.stderr);
  assert.is(JSON.parse(t.stdout).threads, 1, '--threads before the command still applies');
  const j = cli('--json');
  assert.is(j.status, 0);
  assert.is(typeof JSON.parse(j.stdout).version, 'string', 'options without a command go to info');
});

test('each command has its own --help', () => {
  for (const c of ['info', 'check', 'ask', 'synth', 'init', 'eval']) {
    const r = cli(c, '--help');
    assert.is(r.status, 0, `${c} --help`);
    assert.match(r.stdout, new RegExp(`^Usage: videothinker ${c}\\b`), c);
    assert.match(r.stdout, /--threads N/);
  }
  assert.match(cli('help', 'synth').stdout, /^Usage: videothinker synth/);
});

test('errors: unknown command and options exit 2; bad values exit 1 with the old messages', () => {
  const u = cli('train');
  assert.is(u.status, 2);
  assert.match(u.stderr, /^Unknown command 'train'\./);
  const o = cli('info', '--size', '3');
  assert.is(o.status, 2);
  assert.match(o.stderr, /videothinker info: Unknown option '--size'.*\nRun 'videothinker info --help' for the options\./s);
  const extra = cli('check', '64');
  assert.is(extra.status, 2);
  assert.match(extra.stderr, /Unexpected argument '64' \(check takes no positional arguments\)/);
  const size = cli('check', '--size', '0');
  assert.is(size.status, 1);
  assert.match(size.stderr, /RangeError: Expected an integer in \[1, 8192\] for --size but received 0/);
  const noValue = cli('check', '--size');
  assert.is(noValue.status, 2);
  assert.match(noValue.stderr, /--size/);
  const ask = cli('ask', '/no/model');
  assert.is(ask.status, 1);
  assert.match(ask.stderr, /TypeError: Expected 'ask MODEL_DIR "QUESTION"' but received 1 arguments/);
  const ask3 = cli('ask', 'a', 'b', 'c');
  assert.is(ask3.status, 2);
  assert.match(ask3.stderr, /Unexpected argument 'c'/);
  const ok = cli('check', '--size', '32');
  assert.is(ok.status, 0);
  assert.match(ok.stdout, /^matmul 32\^3: .* relative error vs float64/);
});

test('numbers as written: negative values are values (they were "ambiguous"), hex and blanks are not numbers, extra arguments and unknown commands with --help exit 2', async () => {
  const neg = cli('check', '--size', '-1');
  assert.is(neg.status, 1, neg.stderr);
  assert.match(neg.stderr, /RangeError: Expected an integer in \[1, 8192\] for --size but received -1/);
  const hex = cli('check', '--size', '0x10');
  assert.is(hex.status, 1);
  assert.match(hex.stderr, /TypeError: Expected a number for --size but received '0x10'/);
  for (const bad of ['', ' 5', '1_000', '0b11', '0o7', 'Infinity', '1e999', '5px', '--5']) {
    assert.throws(() => num('size', bad), (e: Error) => e instanceof TypeError && e.message === `Expected a number for --size but received '${bad}'`, `'${bad}'`);
  }
  for (const good of ['5', '-5', '+5', '1.5', '.5', '5.', '1e3', '-2.5E-3']) assert.is(num('x', good), Number(good), good);
  assert.throws(() => int('n', '1.5'), /Expected an integer for --n but received '1\.5'/);
  const th = cli('--threads', '-2', 'info');
  assert.is(th.status, 1);
  assert.match(th.stderr, /RangeError: Expected an integer in \[1, 256\] for --threads but received -2/);
  const temp = cli('ask', CK, 'what is it', '--temperature', '-1', '--max-new-tokens', '2');
  assert.is(temp.status, 1, temp.stderr);
  assert.match(temp.stderr, /RangeError: .*for temperature but received -1/);
  const frac = cli('ask', CK, 'what is it', '--max-new-tokens', '0x10');
  assert.is(frac.status, 1);
  assert.match(frac.stderr, /Expected a number for --max-new-tokens but received '0x10'/);
  const extra = cli('ask', CK, 'what is it', 'and more');
  assert.is(extra.status, 2);
  assert.match(extra.stderr, /Unexpected argument 'and more'/);
  const unknown = cli('nosuch', '--help');
  assert.is(unknown.status, 2);
  assert.match(unknown.stderr, /^Unknown command 'nosuch'\./);
  assert.is(unknown.stdout, '');
  const ok = cli('ask', CK, 'what is it', '--max-new-tokens', '2', '--temperature', '0', '--seed', '1');
  assert.is(ok.status, 0, ok.stderr);
});

test('ask: a reader that goes away (EPIPE) ends it quietly with exit 0; Ctrl-C ends it quietly with exit 130', async () => {
  // A greedy answer that does not stop early, so that the child is still writing when it is stopped.
  const m = await loadModel(CK);
  const long = await generate(m, { prompt: 'what is it', maxNewTokens: 3000, temperature: 0 });
  m.dispose(); m.checkpoint.dispose();
  assert.is(long[0]!.finishReason, 'length', 'the fixture answer runs to the length limit');
  // the read end closed before the first write: every write fails with EPIPE
  const pipe = await ask(['what is it', '--max-new-tokens', '3000'], (c) => c.stdout!.destroy());
  assert.is(pipe.code, 0, `exit code after EPIPE: ${pipe.stderr}`);
  assert.is(pipe.stderr, '', 'no stack trace');
  // SIGINT after the first streamed text
  const int = await ask(['what is it', '--max-new-tokens', '3000'], (c) => c.stdout!.once('data', () => c.kill('SIGINT')));
  assert.is(int.code, 130, `exit code after Ctrl-C: ${int.stderr}`);
  assert.is(int.stderr, '', 'no AbortError printed');
  assert.ok(int.stdout.length > 0 && int.stdout.length < long[0]!.text!.length, 'stopped part way');
});

test.run();
