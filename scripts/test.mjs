// `npm test`: runs every test/*.test.ts with uvu under tsx in one process, then prints the
// closing line "N passed, N failed" (uvu's own summary counts tests, not files that crashed).
// Extra arguments filter test files by substring: `npm test -- tensor`.
import { spawn } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const filters = process.argv.slice(2);
const files = readdirSync(path.join(root, 'test')).filter((f) => f.endsWith('.test.ts'))
  .filter((f) => filters.length === 0 || filters.some((x) => f.includes(x)));
const built = existsSync(path.join(root, 'build', 'Release', 'videothinker.node')) ||
  existsSync(path.join(root, 'prebuilds', `${process.platform}-${process.arch}`)) || process.env.VT_ADDON_PATH;
if (!built) {
  console.error('No native addon found: run `npm run build` first (or `npm run build:gyp` for the CPU-only build).');
  console.log('0 passed, 1 failed');
  process.exit(1);
}
let passed = 0, failed = 0, skipped = 0;
for (const f of files) {
  // One process per file: a crash or a leak in one family cannot hide the results of another.
  const code = await new Promise((resolve) => {
    const child = spawn(process.execPath, ['--import', 'tsx', '--expose-gc', path.join('test', f)], { cwd: root, stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    child.stdout.on('data', (d) => { out += d; process.stdout.write(d); });
    child.on('close', (c) => {
      const num = (label) => { const m = out.match(new RegExp(`${label}:\\s+(\\d+)`)); return m ? Number(m[1]) : NaN; };
      const total = num('Total'), ok = num('Passed'), sk = num('Skipped');
      if (Number.isNaN(total) || Number.isNaN(ok)) {
        console.log(`${f}: no uvu summary (exit code ${c}): counted as one failure`);
        failed += 1;
      } else {
        // uvu's Total counts the tests that ran; skipped ones are reported apart.
        passed += ok; skipped += sk || 0;
        failed += total - ok;
        if (c !== 0 && total - ok === 0) { console.log(`${f}: exit code ${c}`); failed += 1; }
      }
      resolve(c);
    });
  });
  void code;
}
console.log(`\n${passed} passed, ${failed} failed${skipped ? `, ${skipped} skipped` : ''}`);
process.exit(failed === 0 && passed > 0 ? 0 : 1);
