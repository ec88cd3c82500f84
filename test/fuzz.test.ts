// Fuzzing in the test suite (issue 14): a few thousand deterministic cases of hostile input for the
// safetensors reader, config parsing, the tokenizer and chat template, and the image/video
// processor (test/fuzz/targets.ts), each target in worker processes so that a crash or a hang is
// counted, not fatal (test/fuzz/run.ts). `npm run fuzz` runs 20000 cases per target from other
// seeds; a failing case reruns alone with `npm run fuzz -- TARGET --seed S --cases 1`.
import { test } from 'uvu';
import * as assert from 'uvu/assert';

import { runFuzz, summary } from './fuzz/run.js';

// Seeds differ from `npm run fuzz`'s default start (1) so that the two runs add up.
const CASES: Record<string, number> = { safetensors: 1500, config: 1500, tokenizer: 800, processor: 1500 };
const FROM = 1_000_000;

for (const [target, n] of Object.entries(CASES)) {
  test(`fuzz ${target}: ${n} cases, no bug, crash or hang`, async () => {
    const r = await runFuzz(target, FROM, n);
    console.log(`  ${summary(r)}`);
    assert.is(r.cases, n);
    assert.equal([...r.bugs, ...r.crashes, ...r.hangs], [], summary(r));
    assert.ok(r.ok > 0 && r.refused > 0, 'both accepted and refused inputs were tried');
  });
}

test('the driver counts a crash, a hang and a bug and goes on after each', async () => {
  const r = await runFuzz('_selftest', 0, 20, { caseTimeoutMs: 2000 });
  assert.is(r.cases, 20);
  assert.equal(r.crashes.map((x) => x.split(':')[0]), ['_selftest seed 3', '_selftest seed 13']);
  assert.match(r.crashes[0]!, /signal SIGABRT/);
  assert.equal(r.hangs.map((x) => x.split(':')[0]), ['_selftest seed 5', '_selftest seed 15']);
  assert.equal(r.bugs.map((x) => x.split(':')[0]), ['_selftest seed 6', '_selftest seed 16']);
  assert.is(r.refused, 2);
  assert.is(r.ok, 14);
});

test.run();
