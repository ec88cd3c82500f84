// The `videothinker` command as a user runs it: the dispatcher (help, version, info by default,
// --threads before the command, unknown commands), each command's --help, and the exit codes of
// usage errors (2) and bad values (1). synth, init, eval and ask have their own tests in their files.
import { test } from 'uvu';
import * as assert from 'uvu/assert';

import { backend } from '../src/index.js';
import { cli } from './synth_fixture.js';

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

test.run();
