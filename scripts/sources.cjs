// The native source list of both builds, expanded: native/sources.json's files plus the 'dirs'
// folders by one rule (*.cu -> cuda, *_stub.cc -> nocuda, other *.cc -> cpu). CMakeLists.txt
// applies the same rule with file(GLOB); binding.gyp calls `node scripts/sources.cjs gyp`.
'use strict';
const fs = require('node:fs');
const path = require('node:path');

const root = path.resolve(__dirname, '..');
function sources() {
  const s = JSON.parse(fs.readFileSync(path.join(root, 'native', 'sources.json'), 'utf8'));
  const out = { cpu: [...s.cpu], cuda: [...s.cuda], nocuda: [...s.nocuda] };
  for (const dir of s.dirs ?? []) {
    const abs = path.join(root, dir);
    if (!fs.existsSync(abs)) continue;
    for (const f of fs.readdirSync(abs).sort()) {
      const rel = `${dir}/${f}`;
      if (f.endsWith('.cu')) out.cuda.push(rel);
      else if (f.endsWith('_stub.cc')) out.nocuda.push(rel);
      else if (f.endsWith('.cc')) out.cpu.push(rel);
    }
  }
  return out;
}
module.exports = { sources };
if (require.main === module) {
  const s = sources();
  const what = process.argv[2] ?? 'gyp';
  // gyp: the CPU-only build's files, space-separated.
  console.log(what === 'gyp' ? [...s.cpu, ...s.nocuda].join(' ') : JSON.stringify(s, null, 2));
}
