// The fuzz driver: runs a target's cases in worker processes (worker.ts). A worker that dies (a
// crash) or stops reporting for `caseTimeoutMs` (a hang, then killed) costs one counted case, and
// a new worker goes on from the next seed: nothing a case does can stop the run.
//
//   npm run fuzz                          every target, 20000 cases each, seeds from 1
//   npm run fuzz -- config --cases 500 --seed 7000
//   npm run fuzz -- safetensors --seed 1234 --cases 1     (one case again, to reproduce it)
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');

export interface FuzzResult {
  target: string;
  cases: number;
  /** Cases the package accepted or refused with its own TypeError/RangeError. */
  ok: number;
  refused: number;
  bugs: string[];
  crashes: string[];
  hangs: string[];
}

/** Runs `count` cases of `target` from seed `from`. */
export async function runFuzz(target: string, from: number, count: number, opts: { caseTimeoutMs?: number; batch?: number } = {}): Promise<FuzzResult> {
  const res: FuzzResult = { target, cases: 0, ok: 0, refused: 0, bugs: [], crashes: [], hangs: [] };
  const end = from + count;
  const caseTimeout = opts.caseTimeoutMs ?? 30_000;
  let next = from;
  const tmp = mkdtempSync(path.join(tmpdir(), 'vt-fuzz-'));
  try {
    while (next < end) {
      const stop = Math.min(end, next + (opts.batch ?? 5000));
      // one worker for seeds [next, stop); it reports each case as it starts
      const r = await new Promise<{ last: number | null; done: boolean; timedOut: boolean; status: string }>((resolve) => {
        const child = spawn(process.execPath, ['--import', 'tsx', path.join('test', 'fuzz', 'worker.ts'), target, String(next), String(stop)],
          { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, VT_FUZZ_TMP: tmp } });
        let buf = '', last: number | null = null, done = false, timedOut = false, stderr = '';
        let state: 'run' | 'refused' | 'bug' = 'run';
        // a case that reported nothing else before the next one started (or DONE) returned
        const finish = () => { if (last !== null && state !== 'bug') res.ok++; };
        let timer = setTimeout(onTimeout, caseTimeout * 4);  // the first case also waits for the start-up
        function onTimeout() { timedOut = true; child.kill('SIGKILL'); }
        child.stderr.on('data', (d) => { stderr = (stderr + d).slice(-2000); });
        child.stdout.on('data', (d) => {
          buf += d;
          let nl: number;
          while ((nl = buf.indexOf('\n')) >= 0) {
            const l = buf.slice(0, nl);
            buf = buf.slice(nl + 1);
            if (l === 'DONE') { finish(); last = null; done = true; continue; }
            const m = /^([SEB]) (\d+) ?(.*)$/.exec(l);
            if (!m) continue;
            const seed = Number(m[2]);
            if (m[1] === 'S') {
              finish();
              last = seed; state = 'run'; res.cases++;
              clearTimeout(timer); timer = setTimeout(onTimeout, caseTimeout);
            } else if (m[1] === 'E') { state = 'refused'; res.refused++; } else { state = 'bug'; res.bugs.push(`${target} seed ${seed}: ${m[3]}`); }
          }
        });
        child.on('close', (code, sig) => {
          clearTimeout(timer);
          resolve({ last, done, timedOut, status: `${code === null ? `signal ${sig}` : `exit ${code}`}${stderr ? `: ${stderr.trim().split('\n').slice(-3).join(' | ')}` : ''}` });
        });
      });
      if (r.done) { next = stop; continue; }
      // the worker died or hung in case `last` (or before the first): count it, go on after it
      if (r.last === null) {
        // the worker did not get to its first case: nothing else would run either
        res.crashes.push(`${target}: the worker failed before seed ${next} (${r.timedOut ? 'no start-up' : r.status})`);
        break;
      }
      (r.timedOut ? res.hangs : res.crashes).push(`${target} seed ${r.last}: ${r.timedOut ? `no answer in ${caseTimeout} ms` : r.status}`);
      next = r.last + 1;
    }
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
  return res;
}

export function summary(r: FuzzResult): string {
  return `${r.target}: ${r.cases} cases, ${r.ok} passed (${r.refused} refused with a named error), ${r.bugs.length} bugs, ${r.crashes.length} crashes, ${r.hangs.length} hangs`;
}

const isMain = process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url);
if (isMain) {
  const args = process.argv.slice(2);
  const opt = (name: string, d: number) => { const i = args.indexOf(`--${name}`); if (i < 0) return d; const v = Number(args.splice(i, 2)[1]); if (!Number.isSafeInteger(v) || v < 0) { console.error(`--${name} takes a non-negative integer`); process.exit(2); } return v; };
  const cases = opt('cases', 20000), seed = opt('seed', 1);
  const { TARGETS } = await import('./targets.js');
  const names = args.length ? args : Object.keys(TARGETS).filter((n) => !n.startsWith('_'));
  for (const n of names) if (!(n in TARGETS)) { console.error(`unknown target ${n}; one of ${Object.keys(TARGETS).join(', ')}`); process.exit(2); }
  let bad = 0;
  for (const n of names) {
    const t0 = Date.now();
    const r = await runFuzz(n, seed, cases);
    console.log(`${summary(r)} (${((Date.now() - t0) / 1000).toFixed(1)} s)`);
    for (const x of [...r.bugs, ...r.crashes, ...r.hangs]) console.log(`  ${x}`);
    bad += r.bugs.length + r.crashes.length + r.hangs.length;
  }
  process.exit(bad ? 1 : 0);
}
