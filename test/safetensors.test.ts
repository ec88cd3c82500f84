// safetensors: round trips of every dtype, zero-copy mapping, files built by hand (an independent
// writer), sharded checkpoints, atomic writes, and every malformed-file case as a clear error.
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';

import { memoryStats } from '../src/backend.js';
import { loadCheckpoint } from '../src/model/checkpoint.js';
import { readCheckpointWeights, readSafetensors, writeSafetensors } from '../src/model/safetensors.js';
import { Tensor } from '../src/tensor.js';
import { randomF32, throwsLike } from './helpers.js';

const dir = mkdtempSync(path.join(tmpdir(), 'vt-st-'));
test.after(() => rmSync(dir, { recursive: true, force: true }));

/** A safetensors file built by hand: header JSON (not padded unless asked) and raw data. */
function handMade(name: string, header: unknown, data: Uint8Array, opts: { headerLen?: bigint; raw?: string } = {}): string {
  const json = Buffer.from(opts.raw ?? JSON.stringify(header), 'utf8');
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(opts.headerLen ?? BigInt(json.length));
  const file = path.join(dir, name);
  writeFileSync(file, Buffer.concat([len, json, Buffer.from(data)]));
  return file;
}

function bytesOf(t: Tensor): Uint8Array {
  const c = t.contiguous();
  const v = c.data as ArrayBufferView;
  return new Uint8Array(v.buffer, v.byteOffset, v.byteLength).slice();
}

test('round trip of every dtype with metadata; tensors keep their dtype and shape', () => {
  const src = new Map<string, Tensor>([
    ['a.f32', Tensor.from(randomF32(60, 1), [3, 4, 5])],
    ['b.f16', Tensor.from(randomF32(7, 2), [7], 'f16')],
    ['c.bf16', Tensor.from(randomF32(12, 3), [3, 4], 'bf16')],
    ['d.i32', Tensor.from(new Int32Array([1, -2, 3]))],
    ['e.i64', Tensor.from(new BigInt64Array([1n, -(2n ** 40n)]))],
    ['f.u8', Tensor.from(new Uint8Array([0, 255, 7]))],
    ['g.bool', Tensor.from(new Uint8Array([1, 0, 1]), [3], 'bool')],
    ['h.empty', Tensor.zeros([0, 4])],
    ['i.strided', Tensor.from(randomF32(20, 4), [4, 5]).transpose()],
  ]);
  const file = path.join(dir, 'all.safetensors');
  writeSafetensors(file, src, { format: 'pt', note: 'ü' });
  const st = readSafetensors(file);
  assert.equal([...st.tensors.keys()].sort(), [...src.keys()].sort());
  assert.equal(st.metadata, { format: 'pt', note: 'ü' });
  for (const [name, t] of src) {
    const r = st.tensors.get(name)!;
    assert.is(r.dtype, t.dtype, name);
    assert.equal(r.shape, t.shape, name);
    assert.equal(bytesOf(r), bytesOf(t), name);
  }
  // The header is padded so the data starts 8-byte aligned.
  const buf = readFileSync(file);
  assert.is(Number(buf.readBigUInt64LE(0)) % 8, 0);
  st.dispose();
});

test('reading is zero-copy (no native allocation for the data) and copy-on-write (the file never changes)', () => {
  const file = path.join(dir, 'big.safetensors');
  writeSafetensors(file, { w: Tensor.from(randomF32(1 << 20, 5), [1024, 1024]) });
  const before = readFileSync(file);
  const live = memoryStats().liveBytes;
  const st = readSafetensors(file);
  assert.ok(memoryStats().liveBytes - live < 1 << 16, 'the 4 MiB tensor is a view on the mapping');
  const w = st.tensors.get('w')!;
  (w.data as Float32Array)[0] = 12345;
  assert.is((w.data as Float32Array)[0], 12345);
  assert.equal(readFileSync(file), before, 'writes to the view do not reach the file');
  st.dispose();
});

test('files written by hand: unaligned data offsets are copied correctly; __metadata__; names in file order', () => {
  // Header of odd length: the f32 data starts at an offset that is not a multiple of 4.
  const data = new Uint8Array(16 + 4);
  const f = new Float32Array([1.5, -2, 3.25, 1e-3]);
  data.set(new Uint8Array(f.buffer), 0);
  data.set([9, 8, 7, 6], 16);
  const header = { __metadata__: { k: 'v' }, x: { dtype: 'F32', shape: [2, 2], data_offsets: [0, 16] }, y: { dtype: 'U8', shape: [4], data_offsets: [16, 20] } };
  const raw = JSON.stringify(header) + (JSON.stringify(header).length % 2 ? '' : ' ');
  const file = handMade('odd.safetensors', null, data, { raw });
  const st = readSafetensors(file);
  assert.equal(Array.from(st.tensors.get('x')!.toArray()), Array.from(f));
  assert.equal(Array.from(st.tensors.get('y')!.toArray()), [9, 8, 7, 6]);
  assert.equal(st.metadata, { k: 'v' });
  st.dispose();
});

test('malformed files give RangeErrors that name the file and the tensor', () => {
  const d8 = new Uint8Array(8);
  const ok = { t: { dtype: 'F32', shape: [2], data_offsets: [0, 8] } };
  const short = path.join(dir, 'short.safetensors');
  writeFileSync(short, Buffer.from([1, 2, 3]));
  throwsLike(() => readSafetensors(short), RangeError, /short\.safetensors: 3 bytes: shorter than the 8-byte header length/);
  throwsLike(() => readSafetensors(handMade('trunc.safetensors', ok, d8.subarray(0, 4))), RangeError, /trunc\.safetensors: tensor 't': data_offsets \[0, 8\] lie outside the 4 bytes/);
  throwsLike(() => readSafetensors(handMade('len.safetensors', ok, d8, { headerLen: 5000n })), RangeError, /header length 5000 runs past the end/);
  throwsLike(() => readSafetensors(handMade('huge.safetensors', ok, d8, { headerLen: 2n ** 62n })), RangeError, /exceeds the \d+-byte limit/);
  throwsLike(() => readSafetensors(handMade('json.safetensors', null, d8, { raw: '{"t": {' })), RangeError, /json\.safetensors: the header is not valid JSON/);
  throwsLike(() => readSafetensors(handMade('arr.safetensors', [1, 2], d8)), RangeError, /not a JSON object/);
  throwsLike(() => readSafetensors(handMade('f64.safetensors', { t: { dtype: 'F64', shape: [1], data_offsets: [0, 8] } }, d8)), RangeError, /tensor 't': dtype "F64" is not supported/);
  throwsLike(() => readSafetensors(handMade('x99.safetensors', { t: { dtype: 'X99', shape: [1], data_offsets: [0, 8] } }, d8)), RangeError, /dtype "X99" is unknown/);
  throwsLike(() => readSafetensors(handMade('shape.safetensors', { t: { dtype: 'F32', shape: [3], data_offsets: [0, 8] } }, d8)), RangeError, /tensor 't': shape \[3\] of F32 needs 12 bytes but data_offsets give 8/);
  throwsLike(() => readSafetensors(handMade('neg.safetensors', { t: { dtype: 'F32', shape: [-2], data_offsets: [0, 8] } }, d8)), RangeError, /shape is not an array of non-negative integers/);
  throwsLike(() => readSafetensors(handMade('rev.safetensors', { t: { dtype: 'F32', shape: [0], data_offsets: [8, 0] } }, d8)), RangeError, /end before they begin/);
  const two = (a: number[], b: number[]) => ({ a: { dtype: 'U8', shape: [a[1]! - a[0]!], data_offsets: a }, b: { dtype: 'U8', shape: [b[1]! - b[0]!], data_offsets: b } });
  throwsLike(() => readSafetensors(handMade('overlap.safetensors', two([0, 6], [4, 8]), d8)), RangeError, /tensor 'b' overlaps the previous tensor/);
  throwsLike(() => readSafetensors(handMade('hole.safetensors', two([0, 2], [4, 8]), d8)), RangeError, /a hole of 2 bytes precedes tensor 'b'/);
  throwsLike(() => readSafetensors(handMade('tail.safetensors', two([0, 2], [2, 6]), d8)), RangeError, /2 bytes of data after the last tensor/);
  throwsLike(() => readSafetensors(handMade('meta.safetensors', { __metadata__: { a: 1 }, ...ok }, d8)), RangeError, /__metadata__\.a is not a string/);
  throwsLike(() => readSafetensors(handMade('utf.safetensors', null, d8, { raw: '\uFFFF' })), RangeError, /not a JSON object|not valid/);
});

test('sharded checkpoints through model.safetensors.index.json; a wrong index is an error', () => {
  const ck = mkdtempSync(path.join(dir, 'ck-'));
  const a = Tensor.from(randomF32(6, 1), [2, 3]), b = Tensor.from(randomF32(4, 2), [4], 'bf16');
  writeSafetensors(path.join(ck, 'model-00001-of-00002.safetensors'), { 'model.a': a });
  writeSafetensors(path.join(ck, 'model-00002-of-00002.safetensors'), { 'model.b': b });
  const index = { metadata: {}, weight_map: { 'model.a': 'model-00001-of-00002.safetensors', 'model.b': 'model-00002-of-00002.safetensors' } };
  writeFileSync(path.join(ck, 'model.safetensors.index.json'), JSON.stringify(index));
  const w = readCheckpointWeights(ck);
  assert.equal([...w.tensors.keys()].sort(), ['model.a', 'model.b']);
  assert.equal(bytesOf(w.tensors.get('model.b')!), bytesOf(b));
  assert.is(w.tensors.get('model.b')!.dtype, 'bf16');
  w.dispose();
  writeFileSync(path.join(ck, 'model.safetensors.index.json'), JSON.stringify({ weight_map: { ...index.weight_map, 'model.c': 'model-00002-of-00002.safetensors' } }));
  throwsLike(() => readCheckpointWeights(ck), RangeError, /tensor 'model\.c' is listed but not found/);
  writeFileSync(path.join(ck, 'model.safetensors.index.json'), JSON.stringify({ weight_map: { 'model.a': '../x.safetensors' } }));
  throwsLike(() => readCheckpointWeights(ck), RangeError, /not a file name in the folder/);
});

test('writes are atomic: a failed write leaves the old file and no temporary file', () => {
  const ck = mkdtempSync(path.join(dir, 'atomic-'));
  const file = path.join(ck, 'w.safetensors');
  writeSafetensors(file, { a: Tensor.from(new Float32Array([1, 2])) });
  const before = readFileSync(file);
  const gone = Tensor.zeros([3]);
  gone.dispose();
  throwsLike(() => writeSafetensors(file, { a: Tensor.from(new Float32Array([5])), b: gone }), TypeError, /disposed/);
  throwsLike(() => writeSafetensors(file, { a: 3 as never }), TypeError, /tensors\['a'\]/);
  assert.equal(readFileSync(file), before);
  assert.equal(readdirSync(ck), ['w.safetensors']);
  writeSafetensors(file, { z: Tensor.from(new Int32Array([7])) });
  const st = readSafetensors(file);
  assert.equal([...st.tensors.keys()], ['z']);
  st.dispose();
});

test('loadCheckpoint: config.json + weights (+ chat template); a folder without config.json is a clear error', () => {
  const ck = mkdtempSync(path.join(dir, 'load-'));
  throwsLike(() => loadCheckpoint(ck), RangeError, /config\.json/);
  writeFileSync(path.join(ck, 'config.json'), JSON.stringify({ architectures: ['Qwen2ForCausalLM'], hidden_size: 8 }));
  writeSafetensors(path.join(ck, 'model.safetensors'), { 'model.embed_tokens.weight': Tensor.from(randomF32(32, 1), [4, 8], 'bf16') });
  writeFileSync(path.join(ck, 'tokenizer_config.json'), JSON.stringify({ chat_template: '{{ messages }}' }));
  const c = loadCheckpoint(ck);
  assert.equal((c.config as { hidden_size: number }).hidden_size, 8);
  assert.is(c.weights.get('model.embed_tokens.weight')!.dtype, 'bf16');
  assert.is(c.chatTemplate, '{{ messages }}');
  c.dispose();
  writeFileSync(path.join(ck, 'config.json'), '{ nope');
  throwsLike(() => loadCheckpoint(ck), RangeError, /Invalid .*config\.json/);
});

test.run();
