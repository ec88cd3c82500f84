// Hostile and changing files (issue 14, items 3, 8 and the file parts of 15): memory-mapped
// weight files changed under a loaded model, files that are not regular files, duplicate names in
// a safetensors header, headers over the readers' limit at write, a failed final rename.
import { spawnSync } from 'node:child_process';
import { appendFileSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, renameSync, rmSync, truncateSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';

import { generate } from '../src/infer/generate.js';
import { loadModel } from '../src/infer/load.js';
import { loadCheckpoint } from '../src/model/checkpoint.js';
import { MAX_HEADER_BYTES, readCheckpointWeights, readSafetensors, readSafetensorsAsync, writeSafetensors } from '../src/model/safetensors.js';
import { QwenProcessor } from '../src/inputs/processor.js';
import { Tensor } from '../src/tensor.js';
import { writeTinyCheckpoint } from './ckpt_fixture.js';
import { randomF32, rejectsLike, throwsLike } from './helpers.js';

const dir = mkdtempSync(path.join(tmpdir(), 'vt-files-'));
test.after(() => rmSync(dir, { recursive: true, force: true }));
const f32 = (t: Tensor) => Array.from(t.toArray() as Float32Array);

function sample(name: string, n = 64): { file: string; values: number[] } {
  const file = path.join(dir, name);
  const v = randomF32(n, 1);
  writeSafetensors(file, { w: Tensor.from(v), i: Tensor.from(new Int32Array([1, 2, 3])) });
  return { file, values: Array.from(v) };
}

test('mmap: false reads the file into memory: truncating or rewriting it afterwards changes nothing', async () => {
  const { file, values } = sample('copy.safetensors');
  for (const read of [(f: string) => readSafetensors(f, { mmap: false }), (f: string) => readSafetensorsAsync(f, { mmap: false })]) {
    const st = await read(file);
    truncateSync(file, 8);                 // a mapping would raise SIGBUS on the next read
    assert.equal(f32(st.tensors.get('w')!), values);
    st.verify();                           // nothing to check: the bytes are ours
    st.dispose();
    sample('copy.safetensors');
  }
  throwsLike(() => readSafetensors(file, { mmap: 'yes' as never }), TypeError, /boolean for options\.mmap/);
});

test('a mapped file changed in place is detected by verify(); replaced by rename it is not (the mapping keeps the old file)', () => {
  const { file, values } = sample('mapped.safetensors');
  const st = readSafetensors(file);
  st.verify();
  // replaced by rename (what writeSafetensors does): safe, the tensors still read the old bytes
  writeSafetensors(file, { w: Tensor.from(new Float32Array(64).fill(7)), i: Tensor.from(new Int32Array([0, 0, 0])) });
  st.verify();
  assert.equal(f32(st.tensors.get('w')!), values);
  st.dispose();
  // changed in place (appended to, as a copy still running would): an Error that names the file
  const st2 = readSafetensors(file);
  appendFileSync(file, Buffer.alloc(16));
  throwsLike(() => st2.verify(), Error, /mapped\.safetensors was changed in place after it was loaded .*mmap: false/);
  st2.dispose();
});

test('loadModel: mapped for inference, read into memory with train (or as asked); generate refuses a changed weight file', async () => {
  const ck = mkdtempSync(path.join(dir, 'ck-'));
  writeTinyCheckpoint(ck);
  const m = await loadModel(ck);
  assert.is(m.checkpoint.mmap, true);
  const before = await generate(m, { inputIds: [1, 2, 3], maxNewTokens: 3, temperature: 0 });
  // rewritten in place (same inode): the next request is refused with a clear error, not a SIGBUS
  const file = path.join(ck, 'model.safetensors');
  const bytes = readFileSync(file);
  writeFileSync(file, bytes.subarray(0, bytes.length - 4096));
  await rejectsLike(generate(m, { inputIds: [1, 2, 3], maxNewTokens: 3, temperature: 0 }), Error, /model\.safetensors was changed in place/);
  m.dispose(); m.checkpoint.dispose();
  writeFileSync(file, bytes);
  const t = await loadModel(ck, { train: true });
  assert.is(t.checkpoint.mmap, false, 'train reads the weights into memory by default');
  truncateSync(file, 100);
  const after = await generate(t, { inputIds: [1, 2, 3], maxNewTokens: 3, temperature: 0 });
  assert.equal(after[0]!.tokens, before[0]!.tokens, 'weights read into memory do not depend on the file');
  t.dispose(); t.checkpoint.dispose();
  writeFileSync(file, bytes);
  const c = await loadModel(ck, { mmap: false });
  assert.is(c.checkpoint.mmap, false);
  c.dispose(); c.checkpoint.dispose();
  await rejectsLike(loadModel(ck, { mmap: 1 as never }), TypeError, /boolean for options\.mmap/);
});

test('sharded: a shard changed in place after loading is reported by verify()', () => {
  const ck = mkdtempSync(path.join(dir, 'shards-'));
  writeSafetensors(path.join(ck, 'a.safetensors'), { 'model.a': Tensor.from(randomF32(8, 2)) });
  writeSafetensors(path.join(ck, 'b.safetensors'), { 'model.b': Tensor.from(randomF32(8, 3)) });
  writeFileSync(path.join(ck, 'model.safetensors.index.json'), JSON.stringify({ weight_map: { 'model.a': 'a.safetensors', 'model.b': 'b.safetensors' } }));
  const w = readCheckpointWeights(ck);
  w.verify();
  appendFileSync(path.join(ck, 'a.safetensors'), 'x');
  throwsLike(() => w.verify(), Error, /a\.safetensors was changed in place/);
  w.dispose();
});

test('not a regular file: a named pipe, a directory, /dev/zero are refused at once (a FIFO blocked open() forever)', async () => {
  const fifo = path.join(dir, 'pipe.safetensors');
  const mk = spawnSync('mkfifo', [fifo]);
  assert.is(mk.status, 0, `mkfifo: ${mk.stderr}`);
  throwsLike(() => readSafetensors(fifo), RangeError, /regular file for file but .*pipe\.safetensors is a named pipe/);
  await rejectsLike(readSafetensorsAsync(fifo, { mmap: false }), RangeError, /named pipe/);
  const sub = path.join(dir, 'adir.safetensors');
  mkdirSync(sub);
  throwsLike(() => readSafetensors(sub), RangeError, /is a directory/);
  throwsLike(() => readSafetensors('/dev/zero'), RangeError, /character device/);
  // the JSON files of a checkpoint folder too
  const ck = mkdtempSync(path.join(dir, 'fifo-ck-'));
  writeTinyCheckpoint(ck);
  rmSync(path.join(ck, 'config.json'));
  assert.is(spawnSync('mkfifo', [path.join(ck, 'config.json')]).status, 0);
  await rejectsLike(loadModel(ck), RangeError, /config\.json.*named pipe/);
  throwsLike(() => loadCheckpoint(ck), RangeError, /named pipe/);
  const pp = mkdtempSync(path.join(dir, 'fifo-pp-'));
  assert.is(spawnSync('mkfifo', [path.join(pp, 'preprocessor_config.json')]).status, 0);
  throwsLike(() => QwenProcessor.fromDir(pp), Error, /named pipe/);
});

test('a header with a name twice is refused (JSON.parse kept the last one silently)', () => {
  const data = Buffer.alloc(8);
  const json = '{"t": {"dtype": "U8", "shape": [4], "data_offsets": [0, 4]}, "u": {"dtype": "U8", "shape": [4], "data_offsets": [4, 8]}, ' +
    '"t": {"dtype": "U8", "shape": [4], "data_offsets": [4, 8]}}';
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(Buffer.byteLength(json)));
  const file = path.join(dir, 'dup.safetensors');
  writeFileSync(file, Buffer.concat([len, Buffer.from(json), data]));
  throwsLike(() => readSafetensors(file), RangeError, /dup\.safetensors: the name 't' appears twice/);
  // escaped spellings of one name are one name; nested keys and strings do not count
  const esc = '{"\\u0074": {"dtype": "U8", "shape": [8], "data_offsets": [0, 8]}, "__metadata__": {"t": "a \\"t\\": b"}, "t": {"dtype": "U8", "shape": [0], "data_offsets": [8, 8]}}';
  len.writeBigUInt64LE(BigInt(Buffer.byteLength(esc)));
  writeFileSync(file, Buffer.concat([len, Buffer.from(esc), data]));
  throwsLike(() => readSafetensors(file), RangeError, /the name 't' appears twice/);
  const fine = '{"__metadata__": {"t": "x", "u": "{\\"t\\": 1}"}, "t": {"dtype": "U8", "shape": [8], "data_offsets": [0, 8]}}';
  len.writeBigUInt64LE(BigInt(Buffer.byteLength(fine)));
  writeFileSync(file, Buffer.concat([len, Buffer.from(fine), data]));
  const st = readSafetensors(file);
  assert.equal([...st.tensors.keys()], ['t']);
  st.dispose();
});

test('writeSafetensors refuses a header over the readers\' limit before writing; a failed rename leaves no temporary file', () => {
  const w = mkdtempSync(path.join(dir, 'write-'));
  const file = path.join(w, 'big.safetensors');
  throwsLike(() => writeSafetensors(file, { a: Tensor.from(new Float32Array(1)) }, { note: 'x'.repeat(MAX_HEADER_BYTES) }), RangeError,
    new RegExp(`header of at most ${MAX_HEADER_BYTES} bytes`));
  assert.equal(readdirSync(w), [], 'nothing written');
  // the target is a non-empty directory: the rename fails after the data was written
  const target = path.join(w, 'target.safetensors');
  mkdirSync(target);
  writeFileSync(path.join(target, 'keep'), 'x');
  assert.throws(() => writeSafetensors(target, { a: Tensor.from(new Float32Array(4)) }));
  assert.equal(readdirSync(w), ['target.safetensors'], 'no .tmp-* file left behind');
  renameSync(path.join(target, 'keep'), path.join(w, 'keep'));
});

test.run();
