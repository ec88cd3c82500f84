// Skips that the count line shows. uvu counts `test.skip(...)` as skipped, but a test that returns
// early (Python, PyTorch or ffmpeg missing) as passed. Conditions known when a file loads use
// `(cond ? test : test.skip)`; the others call `return skip(reason)`, which prints a marker line
// that scripts/test.mjs counts, moving that test from "passed" to "skipped". In CI (CI=1) a
// missing tool is a failure instead, unless the skip is for hardware CI does not have (a GPU).
// A reference that is present but crashes is always a failure (runPython below).
import { spawnSync, type ChildProcess, type SpawnSyncOptions } from 'node:child_process';
import { fileURLToPath } from 'node:url';
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

/** How long a CLI run of a test may take before it counts as hung (generous: the slowest takes seconds to a minute). */
export const CLI_TIMEOUT_MS = 300_000;

/**
 * `node --import tsx src/cli/index.ts ...args` (tsx named by its resolved location, so that it
 * runs from any folder), synchronously, with a time limit: a run still going after `timeoutMs`
 * is killed and fails the calling test with the command and the end of its stderr, rather than
 * stalling the file until the runner's limit.
 */
export function runCliTimed(args: string[], opts: { cwd: string; timeoutMs?: number }): { status: number | null; stdout: string; stderr: string } {
  const timeoutMs = opts.timeoutMs ?? CLI_TIMEOUT_MS;
  const cli = fileURLToPath(new URL('../src/cli/index.ts', import.meta.url));
  const r = spawnSync(process.execPath, ['--import', import.meta.resolve('tsx'), cli, ...args],
    { cwd: opts.cwd, encoding: 'utf8', timeout: timeoutMs, killSignal: 'SIGKILL', maxBuffer: 1 << 28 });
  if (r.error) {
    const timedOut = (r.error as NodeJS.ErrnoException).code === 'ETIMEDOUT';
    assert.unreachable(`videothinker ${args.join(' ')} ${timedOut ? `did not finish within ${timeoutMs / 1000} s (killed)` : `could not run (${String(r.error)})`}: ` +
      String(r.stderr ?? '').trim().split('\n').slice(-6).join('\n'));
  }
  return { status: r.status, stdout: String(r.stdout), stderr: String(r.stderr) };
}

/**
 * Resolves when `child` exits; kills it (SIGKILL) and rejects with a clear message when it is
 * still running after `timeoutMs`.
 */
export function exitOf(child: ChildProcess, what: string, timeoutMs = CLI_TIMEOUT_MS): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`${what} did not finish within ${timeoutMs / 1000} s (killed)`));
    }, timeoutMs);
    child.on('exit', (code, signal) => { clearTimeout(timer); resolve({ code, signal }); });
  });
}
