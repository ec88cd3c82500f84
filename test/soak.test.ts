// A short run of the soak script (`npm run soak` runs 4000 operations and more on demand): mixed
// async calls, disposals, abandoned tensors and aborts must leave the native live bytes where they
// started and RSS flat after warm-up. The script itself decides; this checks that it runs and says so.
import { spawnSync } from 'node:child_process';
import { test } from 'uvu';
import * as assert from 'uvu/assert';

import { ROOT } from './synth_fixture.js';

test('soak: 600 mixed operations, 8 in flight: native memory back at the start, RSS flat', () => {
  const r = spawnSync(process.execPath, ['--import', 'tsx', '--expose-gc', 'scripts/soak.ts', '--ops', '600', '--reports', '6', '--seed', '11'],
    { cwd: ROOT, encoding: 'utf8', timeout: 300_000 });
  assert.is(r.status, 0, r.stdout + r.stderr);
  assert.match(r.stdout, /soak: flat \(native live bytes back at/);
  assert.is((r.stdout.match(/^\s+\d+ \|/gm) ?? []).length, 6, 'six reports');
});

test.run();
