// Skips that the count line shows. uvu counts `test.skip(...)` as skipped, but a test that returns
// early (Python, PyTorch or ffmpeg missing) as passed. Conditions known when a file loads use
// `(cond ? test : test.skip)`; the others call `return skip(reason)`, which prints a marker line
// that scripts/test.mjs counts, moving that test from "passed" to "skipped". In CI (CI=1) a
// missing tool is a failure instead, unless the skip is for hardware CI does not have (a GPU).
// A reference that is present but crashes is always a failure (runPython below).
import { spawnSync, type SpawnSyncOptions } from 'node:child_process';
import * as assert from 'uvu/assert';

/** The marker scripts/test.mjs counts (one per skipped test). */
export const SKIP_MARKER = '[vt-skip]';

/** Records a skip of the running test (call as `return skip(...)`). */
export function skip(reason: string, opts: { inCI?: 'fail' | 'skip' } = {}): void {
  if (process.env.CI && (opts.inCI ?? 'fail') === 'fail') assert.unreachable(`${reason}: required in CI`);
  console.log(`\n${SKIP_MARKER} ${reason}`);
}

export const PY = process.env.VT_PYTHON ?? '/usr/bin/python3';
const probed = new Map<string, boolean>();

/** Whether Python runs and imports these modules (e.g. ['numpy', 'torch']); probed once each. */
export function havePython(modules: readonly string[]): boolean {
  const key = modules.join(',');
  let ok = probed.get(key);
  if (ok === undefined) {
    const r = spawnSync(PY, ['-c', `import ${modules.join(', ')}`], { encoding: 'utf8', timeout: 120_000 });
    ok = r.status === 0 && !r.error;
    probed.set(key, ok);
  }
  return ok;
}

/**
 * Runs a Python reference; null when Python or one of `modules` is missing (the caller then
 * returns skip(...), once per test). A reference that starts but fails is a test failure with its
 * stderr: the comparison it was to make cannot be skipped silently.
 */
export function runPython(args: string[], modules: readonly string[], opts: SpawnSyncOptions & { input?: string } = {}): string | null {
  if (!havePython(modules)) return null;
  const r = spawnSync(PY, args, { encoding: 'utf8', timeout: 600_000, maxBuffer: 1 << 30, ...opts });
  if (r.error || r.status !== 0) {
    assert.unreachable(`the Python reference failed (${r.error ? String(r.error) : `exit ${r.status}${r.signal ? `, ${r.signal}` : ''}`}): ${String(r.stderr).trim().split('\n').slice(-6).join('\n')}`);
  }
  return String(r.stdout);
}

/** The skip reason for a missing Python module set. */
export const noPython = (modules: readonly string[]) => `Python with ${modules.join(', ')} not found (${PY}; set VT_PYTHON)`;
