// safetensors files (https://huggingface.co/docs/safetensors): an 8-byte little-endian header
// length, a JSON header { name: { dtype, shape, data_offsets: [begin, end] }, __metadata__? }, then
// the data. The reader maps the file (private, copy-on-write) and returns zero-copy tensor views,
// or reads it into memory (mmap: false); it validates everything a hostile file could get wrong
// and names the file and the tensor in every error. The writer is atomic (temp file + fsync +
// rename).
//
// The mapping contract: a mapped file must not be truncated or rewritten in place while tensors
// on it live (a page past a new end raises SIGBUS, which no library can turn into an exception;
// rewritten pages change the weights). Replacing it by rename (writeSafetensors does) is safe: the
// mapping keeps the old file. verify() tells whether a mapped file was changed in place since it
// was opened (same inode, other size or modification time); mmap: false reads the bytes once and
// depends on the file no more.
import { closeSync, constants as fsConstants, existsSync, fstatSync, fsyncSync, openSync, readSync, renameSync, statSync, unlinkSync, writeSync, type Stats } from 'node:fs';
import path from 'node:path';

import { typeError } from '../errors.js';
import { readRegularFile } from '../files.js';
import { native, type StorageHandle } from '../native.js';
import { DTYPE_SIZE, Tensor, type DType } from '../tensor.js';

declare module '../native.js' {
  interface Binding {
    mapFile(path: string, fd: number, size: number): StorageHandle;
    readFile(path: string, fd: number, size: number, async: boolean): StorageHandle | Promise<StorageHandle>;
  }
}

/** Header size limit (bytes): a larger header is refused rather than parsed. */
export const MAX_HEADER_BYTES = 100 * 2 ** 20;

const FROM_ST: Record<string, DType> = { F32: 'f32', F16: 'f16', BF16: 'bf16', I32: 'i32', I64: 'i64', U8: 'u8', BOOL: 'bool' };
const TO_ST: Record<DType, string> = { f32: 'F32', f16: 'F16', bf16: 'BF16', i32: 'I32', i64: 'I64', u8: 'U8', bool: 'BOOL' };
// Known to the format but without a tensor dtype here: named in the error.
const UNSUPPORTED = new Set(['F64', 'I8', 'I16', 'U16', 'U32', 'U64', 'F8_E4M3', 'F8_E5M2', 'F8_E8M0', 'F4', 'F6_E2M3', 'F6_E3M2', 'C64']);

export interface SafetensorsFile {
  /** The tensors, by name, in file order; CPU views on the mapping (stored dtype kept). */
  tensors: Map<string, Tensor>;
  /** The header's __metadata__ (string values), or {}. */
  metadata: Record<string, string>;
  /** Disposes every tensor (the mapping goes when the last view is gone). */
  dispose(): void;
  /**
   * Throws an Error naming the file when a memory-mapped file was truncated or rewritten in place
   * since it was opened (the tensors would change, or a read past the new end kill the process);
   * nothing to check for files read into memory (mmap: false).
   */
  verify(): void;
}

export interface ReadOptions {
  /**
   * Map the file (default true): zero-copy, pages shared with other processes and loaded on first
   * use, but the file must stay unchanged while the tensors live (see verify()). false reads the
   * whole file into native memory: the tensors then never depend on it.
   */
  mmap?: boolean;
}

/** What identifies a file's content for verify(): a rename gives a new inode (safe for a mapping). */
interface FileStamp { file: string; dev: number; ino: number; size: number; mtimeMs: number }

function stampOf(file: string, st: Stats): FileStamp {
  return { file, dev: st.dev, ino: st.ino, size: st.size, mtimeMs: st.mtimeMs };
}

/** Throws when a mapped file was changed in place (same inode, other size or mtime). */
export function verifyStamps(stamps: readonly FileStamp[]): void {
  for (const s of stamps) {
    let st: Stats;
    try { st = statSync(s.file); } catch { continue; }  // removed: the mapping keeps the old inode
    if (st.dev !== s.dev || st.ino !== s.ino) continue;  // replaced by rename: the mapping keeps the old file
    if (st.size !== s.size || st.mtimeMs !== s.mtimeMs) {
      throw new Error(`The memory-mapped file ${s.file} was changed in place after it was loaded (${s.size} bytes, now ${st.size}; ` +
        `modified ${new Date(st.mtimeMs).toISOString()}): its weights are no longer the ones loaded, and a read past a new end would kill ` +
        'the process (SIGBUS). Reload the model; replace checkpoint files by rename (as writeSafetensors does), or load with { mmap: false }');
    }
  }
}

const KIND = (st: Stats) => st.isDirectory() ? 'a directory' : st.isFIFO() ? 'a named pipe' : st.isSocket() ? 'a socket'
  : st.isCharacterDevice() ? 'a character device' : st.isBlockDevice() ? 'a block device' : 'not a regular file';

/**
 * Opens a file for reading without blocking (O_NONBLOCK: opening a named pipe would wait for a
 * writer forever) and refuses anything that is not a regular file.
 */
function openRegular(file: string): { fd: number; st: Stats } {
  const fd = openSync(file, fsConstants.O_RDONLY | (fsConstants.O_NONBLOCK ?? 0));
  try {
    const st = fstatSync(fd);
    if (!st.isFile()) throw new RangeError(`Expected a regular file for file but ${file} is ${KIND(st)}`);
    return { fd, st };
  } catch (e) {
    closeSync(fd);
    throw e;
  }
}

/**
 * The top-level keys of a JSON object text, in order, duplicates included (JSON.parse keeps the
 * last of two equal keys silently; the safetensors format forbids them). The text is valid JSON.
 */
export function topLevelKeys(text: string): string[] {
  const keys: string[] = [];
  let i = 0, depth = 0;
  const n = text.length;
  while (i < n) {
    const c = text[i]!;
    if (c === '"') {
      let j = i + 1;
      while (j < n && text[j] !== '"') j += text[j] === '\\' ? 2 : 1;
      if (depth === 1) {
        // a string at depth 1 is a key when a ':' follows it
        let k = j + 1;
        while (k < n && (text[k] === ' ' || text[k] === '\t' || text[k] === '\n' || text[k] === '\r')) k++;
        if (text[k] === ':') keys.push(JSON.parse(text.slice(i, j + 1)) as string);
      }
      i = j + 1;
      continue;
    }
    if (c === '{' || c === '[') depth++;
    else if (c === '}' || c === ']') depth--;
    i++;
  }
  return keys;
}

class SafetensorsError extends RangeError {}

function fail(file: string, what: string): never {
  throw new SafetensorsError(`Invalid safetensors file ${file}: ${what}`);
}

/** Parses and checks a header against the data size; returns the entries sorted by offset. */
function checkHeader(file: string, header: unknown, dataBytes: number) {
  if (header === null || typeof header !== 'object' || Array.isArray(header)) fail(file, 'the header is not a JSON object');
  const entries: { name: string; dtype: DType; shape: number[]; begin: number; end: number }[] = [];
  let metadata: Record<string, string> = {};
  for (const [name, v] of Object.entries(header as Record<string, unknown>)) {
    if (name === '__metadata__') {
      if (v === null || typeof v !== 'object' || Array.isArray(v)) fail(file, '__metadata__ is not an object');
      for (const [k, x] of Object.entries(v as Record<string, unknown>)) if (typeof x !== 'string') fail(file, `__metadata__.${k} is not a string`);
      metadata = v as Record<string, string>;
      continue;
    }
    const t = `tensor '${name}'`;
    if (v === null || typeof v !== 'object' || Array.isArray(v)) fail(file, `${t}: expected an object with dtype, shape, data_offsets`);
    const e = v as Record<string, unknown>;
    if (typeof e.dtype !== 'string') fail(file, `${t}: dtype is not a string`);
    const dtype = FROM_ST[e.dtype];
    if (!dtype) fail(file, `${t}: dtype ${JSON.stringify(e.dtype)} is ${UNSUPPORTED.has(e.dtype) ? 'not supported by videothinker' : 'unknown'} (supported: ${Object.keys(FROM_ST).join(', ')})`);
    if (!Array.isArray(e.shape) || !e.shape.every((d) => Number.isSafeInteger(d) && (d as number) >= 0)) fail(file, `${t}: shape is not an array of non-negative integers`);
    const off = e.data_offsets;
    if (!Array.isArray(off) || off.length !== 2 || !off.every((d) => Number.isSafeInteger(d) && (d as number) >= 0)) fail(file, `${t}: data_offsets is not [begin, end] of non-negative integers`);
    const [begin, end] = off as [number, number];
    if (end < begin) fail(file, `${t}: data_offsets [${begin}, ${end}] end before they begin`);
    if (end > dataBytes) fail(file, `${t}: data_offsets [${begin}, ${end}] lie outside the ${dataBytes} bytes of data`);
    const shape = e.shape as number[];
    const bytes = shape.reduce((a, d) => a * d, 1) * DTYPE_SIZE[dtype];
    if (bytes !== end - begin) fail(file, `${t}: shape [${shape.join(', ')}] of ${e.dtype} needs ${bytes} bytes but data_offsets give ${end - begin}`);
    entries.push({ name, dtype, shape, begin, end });
  }
  // Tensors tile the data exactly: no overlaps, no holes.
  const sorted = [...entries].sort((a, b) => a.begin - b.begin || a.end - b.end);
  let at = 0;
  for (const e of sorted) {
    if (e.begin < at) fail(file, `tensor '${e.name}' overlaps the previous tensor (data_offsets [${e.begin}, ${e.end}], previous ends at ${at})`);
    if (e.begin > at) fail(file, `a hole of ${e.begin - at} bytes precedes tensor '${e.name}' (data_offsets [${e.begin}, ${e.end}])`);
    at = e.end;
  }
  if (at !== dataBytes) fail(file, `${dataBytes - at} bytes of data after the last tensor belong to no tensor`);
  return { entries, metadata };
}

/**
 * Reads a .safetensors file: memory-mapped, tensors are zero-copy views (copy-on-write: writing
 * to them never changes the file). A tensor whose offset is not a multiple of its element size is
 * copied. Throws a RangeError naming the file (and tensor) for any malformed content.
 */
export function readSafetensors(file: string, opts: ReadOptions = {}): SafetensorsFile {
  const o = openSafetensors(file, opts);
  try {
    return viewsOf(o, o.mmap ? native.mapFile(file, o.fd, o.size) : native.readFile(file, o.fd, o.size, false) as StorageHandle);
  } finally { closeSync(o.fd); }
}

/** readSafetensors with the read of `mmap: false` on a worker thread (the event loop stays free). */
export async function readSafetensorsAsync(file: string, opts: ReadOptions = {}): Promise<SafetensorsFile> {
  const o = openSafetensors(file, opts);
  try {
    return viewsOf(o, o.mmap ? native.mapFile(file, o.fd, o.size) : await native.readFile(file, o.fd, o.size, true));
  } finally { closeSync(o.fd); }
}

type Opened = ReturnType<typeof openSafetensors>;

/** Opens and validates a file's header; the caller maps or reads the data and closes fd. */
function openSafetensors(file: string, opts: ReadOptions) {
  if (typeof file !== 'string') throw typeError('file', 'a path string', file);
  if (opts === null || typeof opts !== 'object') throw typeError('options', 'an options object', opts);
  const mmap = opts.mmap === undefined ? true : opts.mmap;
  if (typeof mmap !== 'boolean') throw typeError('options.mmap', 'a boolean', mmap);
  const { fd, st } = openRegular(file);
  let headerLen: number, size: number, header: unknown;
  try {
    size = st.size;
    if (size < 8) fail(file, `${size} bytes: shorter than the 8-byte header length`);
    const lenBuf = Buffer.alloc(8);
    readSync(fd, lenBuf, 0, 8, 0);
    const len = lenBuf.readBigUInt64LE(0);
    if (len > BigInt(MAX_HEADER_BYTES)) fail(file, `header length ${len} exceeds the ${MAX_HEADER_BYTES}-byte limit`);
    headerLen = Number(len);
    if (8 + headerLen > size) fail(file, `header length ${headerLen} runs past the end of the ${size}-byte file`);
    const hb = Buffer.alloc(headerLen);
    readSync(fd, hb, 0, headerLen, 8);
    let text: string;
    try { text = new TextDecoder('utf-8', { fatal: true }).decode(hb); } catch { fail(file, 'the header is not valid UTF-8'); }
    try { header = JSON.parse(text); } catch (e) { fail(file, `the header is not valid JSON (${(e as Error).message})`); }
    const seen = new Set<string>();
    for (const k of topLevelKeys(text)) {
      if (seen.has(k)) fail(file, `the name '${k}' appears twice in the header (the format requires unique names)`);
      seen.add(k);
    }
  } catch (e) {
    closeSync(fd);
    throw e;
  }
  const dataStart = 8 + headerLen;
  let checked;
  try { checked = checkHeader(file, header, size - dataStart); } catch (e) { closeSync(fd); throw e; }
  return { file, fd, size, dataStart, mmap, stamp: stampOf(file, st), ...checked };
}

/** The tensors of an opened file as views on its bytes (a mapping or a copy). */
function viewsOf(o: Opened, handle: StorageHandle): SafetensorsFile {
  const { entries, metadata, dataStart, size } = o;
  const tensors = new Map<string, Tensor>();
  const base = Tensor._wrap(handle, 'u8', [size]);
  try {
    for (const e of entries) {
      const at = dataStart + e.begin;
      const es = DTYPE_SIZE[e.dtype];
      if (at % es === 0) {
        tensors.set(e.name, base._viewBytes(e.dtype, e.shape, at));
      } else {
        // a native copy of just these bytes (a view of a file over 4 GiB has no typed array)
        using bytes = base.slice(0, at, e.end + dataStart);
        const copy = bytes.clone();
        tensors.set(e.name, copy._viewBytes(e.dtype, e.shape, 0));
        copy.dispose();
      }
    }
  } finally {
    base.dispose();  // the views keep the mapping alive
  }
  const stamps = o.mmap ? [o.stamp] : [];
  return { tensors, metadata, dispose: () => { for (const t of tensors.values()) t.dispose(); }, verify: () => verifyStamps(stamps) };
}

/**
 * Writes tensors (CPU or CUDA, any layout; stored contiguous in their dtype) to a .safetensors
 * file atomically: a temporary file in the same folder is written, flushed and renamed over
 * `file`, so an interrupted write leaves the old file (or none), never a partial one.
 */
export function writeSafetensors(file: string, tensors: Map<string, Tensor> | Record<string, Tensor>, metadata: Record<string, string> = {}): void {
  if (typeof file !== 'string') throw typeError('file', 'a path string', file);
  const list = tensors instanceof Map ? [...tensors.entries()] : Object.entries(tensors);
  for (const [k, v] of Object.entries(metadata)) if (typeof v !== 'string') throw typeError(`metadata.${k}`, 'a string', v);
  const header: Record<string, unknown> = {};
  if (Object.keys(metadata).length) header.__metadata__ = metadata;
  let at = 0;
  const parts: Uint8Array[] = [];
  const owned: Tensor[] = [];
  try {
    for (const [name, t] of list) {
      if (!(t instanceof Tensor)) throw typeError(`tensors['${name}']`, 'a Tensor', t);
      if (name === '__metadata__') throw new RangeError("Expected tensor names other than '__metadata__'");
      let c = t.device === 'cpu' ? t : t.to('cpu');
      if (c !== t) owned.push(c);
      if (!c.isContiguous) { c = c.contiguous(); owned.push(c); }
      const bytes = c.numel * DTYPE_SIZE[t.dtype];
      const view = c.data as ArrayBufferView;
      parts.push(new Uint8Array(view.buffer, view.byteOffset, bytes));
      header[name] = { dtype: TO_ST[t.dtype], shape: [...t.shape], data_offsets: [at, at + bytes] };
      at += bytes;
    }
    // Pad the header with spaces so the data starts 8-byte aligned (zero-copy views on read).
    let json = JSON.stringify(header);
    json += ' '.repeat((8 - ((8 + Buffer.byteLength(json)) % 8)) % 8);
    // A header the reader would refuse is refused here, before anything is written.
    if (Buffer.byteLength(json) > MAX_HEADER_BYTES) {
      throw new RangeError(`Expected a safetensors header of at most ${MAX_HEADER_BYTES} bytes (the readers' limit) but these ${list.length} tensors and the metadata make ${Buffer.byteLength(json)}`);
    }
    const hb = Buffer.from(json, 'utf8');
    const len = Buffer.alloc(8);
    len.writeBigUInt64LE(BigInt(hb.length));
    const tmp = path.join(path.dirname(file), `.${path.basename(file)}.tmp-${process.pid}-${Date.now()}`);
    const fd = openSync(tmp, 'w');
    try {
      writeSync(fd, len);
      writeSync(fd, hb);
      for (const p of parts) {
        let off = 0;
        while (off < p.length) off += writeSync(fd, p, off, Math.min(p.length - off, 1 << 30));
      }
      fsyncSync(fd);
    } catch (e) {
      closeSync(fd);
      if (existsSync(tmp)) unlinkSync(tmp);
      throw e;
    }
    closeSync(fd);
    try {
      renameSync(tmp, file);
    } catch (e) {
      // e.g. `file` is a directory, or the folder became read-only: leave no temporary behind
      try { unlinkSync(tmp); } catch { /* already gone */ }
      throw e;
    }
  } finally {
    for (const t of owned) t.dispose();
  }
}

/**
 * Reads a checkpoint folder's weights: model.safetensors, or the shards listed by
 * model.safetensors.index.json (weight_map: name -> file). Tensors keep their stored dtype.
 */
export function readCheckpointWeights(dir: string, opts: ReadOptions = {}): SafetensorsFile {
  const shards = shardsOf(dir);
  if (typeof shards === 'string') return readSafetensors(shards, opts);
  const opened: SafetensorsFile[] = [];
  try {
    for (const f of shards.files) opened.push(readSafetensors(path.join(dir, f), opts));
  } catch (e) {
    for (const o of opened) o.dispose();
    throw e;
  }
  return gather(shards, opened);
}

/** readCheckpointWeights with `mmap: false` reads on a worker thread. */
export async function readCheckpointWeightsAsync(dir: string, opts: ReadOptions = {}): Promise<SafetensorsFile> {
  const shards = shardsOf(dir);
  if (typeof shards === 'string') return readSafetensorsAsync(shards, opts);
  const opened: SafetensorsFile[] = [];
  try {
    for (const f of shards.files) opened.push(await readSafetensorsAsync(path.join(dir, f), opts));
  } catch (e) {
    for (const o of opened) o.dispose();
    throw e;
  }
  return gather(shards, opened);
}

/** model.safetensors (a path), or the index's weight map and shard names. */
function shardsOf(dir: string): string | { index: string; map: Record<string, unknown>; files: string[] } {
  const index = path.join(dir, 'model.safetensors.index.json');
  if (!existsSync(index)) return path.join(dir, 'model.safetensors');
  let map: unknown;
  try { map = JSON.parse(readRegularFile(index)).weight_map; } catch (e) { throw new RangeError(`Invalid ${index}: ${(e as Error).message}`); }
  if (map === null || typeof map !== 'object' || Array.isArray(map)) throw new RangeError(`Invalid ${index}: no weight_map object`);
  const files = [...new Set(Object.values(map as Record<string, unknown>))];
  for (const f of files) {
    if (typeof f !== 'string' || f === '' || f.includes('/') || f.includes('\\') || f === '..' || f === '.') throw new RangeError(`Invalid ${index}: shard ${JSON.stringify(f)} is not a file name in the folder`);
  }
  return { index, map: map as Record<string, unknown>, files: files as string[] };
}

/** The shards' tensors checked against the index, as one SafetensorsFile. */
function gather(shards: { index: string; map: Record<string, unknown>; files: string[] }, opened: SafetensorsFile[]): SafetensorsFile {
  const { index, map } = shards;
  const tensors = new Map<string, Tensor>();
  const metadata: Record<string, string> = {};
  try {
    for (const [i, f] of shards.files.entries()) {
      const st = opened[i]!;
      Object.assign(metadata, st.metadata);
      for (const [name, t] of st.tensors) {
        if ((map as Record<string, unknown>)[name] !== f) throw new RangeError(`Invalid ${index}: tensor '${name}' is in ${f} but the index ${name in (map as object) ? `places it in ${(map as Record<string, string>)[name]}` : 'does not list it'}`);
        tensors.set(name, t);
      }
    }
    for (const name of Object.keys(map as object)) if (!tensors.has(name)) throw new RangeError(`Invalid ${index}: tensor '${name}' is listed but not found in ${(map as Record<string, string>)[name]}`);
    // A shard mapped early and changed in place while later ones loaded (a copy into the folder
    // still running) would give weights from two checkpoints.
    for (const o of opened) o.verify();
  } catch (e) {
    for (const o of opened) o.dispose();
    throw e;
  }
  return { tensors, metadata, dispose: () => { for (const t of tensors.values()) t.dispose(); }, verify: () => { for (const o of opened) o.verify(); } };
}
