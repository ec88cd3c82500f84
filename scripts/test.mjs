// `npm test`: runs every test/*.test.ts with uvu under tsx, one process per file, then prints the
// closing line "N passed, N failed" (and ", N skipped"): uvu's own summary counts tests, not files
// that crashed or hung. Extra arguments filter test files by substring: `npm test -- tensor`.
//
// What is counted, per file:
//   - uvu's Total / Passed / Skipped, read with colour codes removed (FORCE_COLOR must not lose them);
//   - each "[vt-skip]" line (test/skip.ts: a test that found Python, PyTorch or ffmpeg missing
//     and returned) moves one test from passed to skipped;
//   - a file without a uvu summary (it crashed), or that exits non-zero with nothing failed, is
//     one failure;
//   - a file still running after VT_TEST_TIMEOUT_S seconds (default 600; the slowest file takes
//     about 40 s on 2 cores) is killed with everything it started and counted as one failure, so
//     a hang costs one file, not the whole CI job.
import { spawn } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const filters = process.argv.slice(2);
// VT_TEST_DIR: another folder of test files (the runner's own test points it at fixtures).
const testDir = process.env.VT_TEST_DIR ?? 'test';
const files = readdirSync(path.join(root, testDir)).filter((f) => f.endsWith('.test.ts'))
  .filter((f) => filters.length === 0 || filters.some((x) => f.includes(x)));
const built = existsSync(path.join(root, 'build', 'Release', 'videothinker.node')) ||
  existsSync(path.join(root, 'prebuilds', `${process.platform}-${process.arch}`)) || process.env.VT_ADDON_PATH;
if (!built) {
  console.error('No native addon found: run `npm run build` first (or `npm run build:gyp` for the CPU-only build).');
  console.log('0 passed, 1 failed');
  process.exit(1);
}
const timeoutS = Number(process.env.VT_TEST_TIMEOUT_S ?? 600);
const ANSI = /\x1b\[[0-9;]*[A-Za-z]/g;

/** Counts of one file's output (exported for the runner's own test). */
export function countOutput(raw, code, timedOut) {
  const out = raw.replace(ANSI, '');
  const num = (label) => { const m = out.match(new RegExp(`^\\s*${label}:\\s+(\\d+)`, 'm')); return m ? Number(m[1]) : NaN; };
  const total = num('Total'), ok = num('Passed'), sk = num('Skipped') || 0;
  const markers = (out.match(/\[vt-skip\]/g) ?? []).length;  // uvu prints its dots without newlines
  if (timedOut) return { passed: 0, failed: 1, skipped: 0, note: `timed out after ${timeoutS} s: killed, counted as one failure` };
  if (Number.isNaN(total) || Number.isNaN(ok)) return { passed: 0, failed: 1, skipped: 0, note: `no uvu summary (exit code ${code}): counted as one failure` };
  // uvu's Total counts the tests that ran (skipped ones apart); a runtime skip ran and "passed".
  const r = { passed: Math.max(ok - markers, 0), failed: total - ok, skipped: sk + Math.min(markers, ok), note: '' };
  if (code !== 0 && r.failed === 0) { r.failed = 1; r.note = `exit code ${code}`; }
  return r;
}

const isMain = process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url);
if (isMain) {
  let passed = 0, failed = 0, skipped = 0;
  for (const f of files) {
    // One process per file (its own process group, so that a timeout also ends what it spawned):
    // a crash, a hang or a leak in one family cannot hide the results of another.
    const r = await new Promise((resolve) => {
      const child = spawn(process.execPath, ['--import', 'tsx', '--expose-gc', path.join(testDir, f)],
        { cwd: root, stdio: ['ignore', 'pipe', 'inherit'], detached: true });
      let out = '', timedOut = false;
      const timer = setTimeout(() => {
        timedOut = true;
        try { process.kill(-child.pid, 'SIGKILL'); } catch { child.kill('SIGKILL'); }
      }, timeoutS * 1000);
      child.stdout.on('data', (d) => { out += d; process.stdout.write(d); });
      child.on('close', (c) => { clearTimeout(timer); resolve(countOutput(out, c, timedOut)); });
    });
    if (r.note) console.log(`${f}: ${r.note}`);
    passed += r.passed; failed += r.failed; skipped += r.skipped;
  }
  console.log(`\n${passed} passed, ${failed} failed${skipped ? `, ${skipped} skipped` : ''}`);
  process.exit(failed === 0 && passed > 0 ? 0 : 1);
}
