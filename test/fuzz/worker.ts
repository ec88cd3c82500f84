// One fuzz worker: `node --import tsx test/fuzz/worker.ts TARGET FROM TO` runs the cases with seeds
// FROM..TO-1 of one target in this process and reports on stdout, one line each (stdout is
// synchronous for pipes, so the parent always knows which case was running when this process died):
//   S seed            the case starts
//   E seed message    it threw the package's own TypeError/RangeError (a pass)
//   B seed message    it threw something else (a bug)
//   DONE
import { acceptable, TARGETS } from './targets.js';

const [name, fromArg, toArg] = process.argv.slice(2);
const target = TARGETS[name ?? ''];
if (!target) { console.error(`unknown target ${name}; one of ${Object.keys(TARGETS).join(', ')}`); process.exit(2); }
const from = Number(fromArg), to = Number(toArg);
const line = (s: string) => process.stdout.write(s.replace(/\n/g, ' ').slice(0, 400) + '\n');
for (let seed = from; seed < to; seed++) {
  line(`S ${seed}`);
  try {
    await target(seed);
  } catch (e) {
    if (acceptable(e)) line(`E ${seed} ${(e as Error).message}`);
    else line(`B ${seed} ${(e as Error)?.constructor?.name ?? typeof e}: ${(e as Error)?.message ?? String(e)} @ ${String((e as Error)?.stack ?? '').split('\n').slice(1, 3).join(' ').trim()}`);
  }
}
line('DONE');
