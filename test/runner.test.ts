// The test runner itself (scripts/test.mjs): skips are counted with colours forced, a runtime skip
// ([vt-skip], test/skip.ts) moves a test from passed to skipped, and a crashing or hanging file is
// one failure each, the hang killed after the timeout (with the processes it started) instead of
// stalling the whole run.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';

import { ROOT } from './synth_fixture.js';

test('counts: passed, failed, uvu skips and runtime skips with FORCE_COLOR; a crash and a hang are one failure each', () => {
  const dir = mkdtempSync(path.join(ROOT, 'test', '.runner-'));
  try {
    const head = "import { test } from 'uvu';\nimport * as assert from 'uvu/assert';\n";
    writeFileSync(path.join(dir, 'a.test.ts'), `${head}test('ok', () => assert.ok(true));\ntest.skip('not here', () => {});\n` +
      "test('runtime skip', () => { console.log('[vt-skip] torch missing'); });\ntest('fails', () => assert.is(1, 2));\ntest.run();\n");
    writeFileSync(path.join(dir, 'b.test.ts'), `${head}test('crash', () => { process.abort(); });\ntest.run();\n`);
    // a hang that also leaves a grandchild behind: both must be killed
    writeFileSync(path.join(dir, 'c.test.ts'), `import { spawn } from 'node:child_process';\n${head}` +
      "test('hang', async () => { spawn('sleep', ['271828'], { stdio: 'ignore' }); await new Promise(() => setInterval(() => {}, 1000)); });\ntest.run();\n");
    const t0 = Date.now();
    const r = spawnSync(process.execPath, ['scripts/test.mjs'], {
      cwd: ROOT, encoding: 'utf8', timeout: 120_000,
      env: { ...process.env, VT_TEST_DIR: path.relative(ROOT, dir), VT_TEST_TIMEOUT_S: '5', FORCE_COLOR: '1' },
    });
    const lines = r.stdout.trim().split('\n');
    assert.is(lines.at(-1), '1 passed, 3 failed, 2 skipped', r.stdout + r.stderr);
    assert.is(r.status, 1);
    assert.match(r.stdout, /b\.test\.ts: no uvu summary \(exit code null\): counted as one failure/);
    assert.match(r.stdout, /c\.test\.ts: timed out after 5 s: killed, counted as one failure/);
    assert.ok(Date.now() - t0 < 100_000, 'the hang did not hold the run');
    const sleeping = spawnSync('pgrep', ['-f', '^sleep 271828$'], { encoding: 'utf8' });
    assert.is(sleeping.stdout.trim(), '', 'the hung file\'s child was killed with it');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test.run();
