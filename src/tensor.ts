// Tensor: a typed, strided view on native-owned memory. Views (reshape, view, slice,
// transpose) share storage; dispose() gives a tensor's share back, and the memory is freed when
// every tensor sharing it is disposed (or collected) and no typed-array view is alive.
import { constants as bufferConstants } from 'node:buffer';
import { inspect } from 'node:util';

import { checkInteger, checkNumber, checkOptions, describe, rangeError, typeError } from './errors.js';
import { native, type StorageHandle, type TensorDesc } from './native.js';

export type DType = 'f32' | 'f16' | 'bf16' | 'i32' | 'i64' | 'u8' | 'bool';
export type Device = 'cpu' | 'cuda' | `cuda:${number}`;
export const DTYPES: readonly DType[] = ['f32', 'f16', 'bf16', 'i32', 'i64', 'u8', 'bool'];

/** The codes native code uses (native/core/dtype.h). */
const CODE: Record<DType, number> = { f32: 0, f16: 1, bf16: 2, i32: 3, i64: 4, u8: 5, bool: 6 };
export const DTYPE_SIZE: Record<DType, number> = { f32: 4, f16: 2, bf16: 2, i32: 4, i64: 8, u8: 1, bool: 1 };

/** The typed array a dtype is viewed through (f16 and bf16 as raw bits). */
export type TypedArrayOf<D extends DType> = D extends 'f32' ? Float32Array
  : D extends 'f16' | 'bf16' ? Uint16Array
  : D extends 'i32' ? Int32Array
  : D extends 'i64' ? BigInt64Array
  : Uint8Array;
export type AnyTypedArray = Float32Array | Uint16Array | Int32Array | BigInt64Array | Uint8Array;

const VIEW_CTOR: Record<DType, { new(buf: ArrayBuffer, off: number, len: number): AnyTypedArray }> = {
  f32: Float32Array, f16: Uint16Array, bf16: Uint16Array, i32: Int32Array, i64: BigInt64Array, u8: Uint8Array, bool: Uint8Array,
};

/**
 * The largest memory a typed-array view can cover: `.data` is a view on one external ArrayBuffer
 * over the whole storage, which Node makes through a Buffer (2^32 bytes in Node 20). Larger
 * storages are refused with a RangeError before native code is asked for the buffer (asking
 * crashed the process: "double free or corruption").
 */
const MAX_VIEW_BYTES = bufferConstants.MAX_LENGTH;

/** Shared by all tensors over one storage: counts them so the last dispose frees the memory. */
class Shared {
  refs = 0;
  constructor(readonly handle: StorageHandle) {}
  acquire(): this { this.refs++; return this; }
  releaseOne(): void {
    if (--this.refs <= 0 && !this.handle.released) this.handle.release();
  }
}

// Tensors that are never disposed need no registry of their own: when every tensor over a
// storage is collected, so are their Shared and its handle, whose native finalizer drops the
// memory's reference (native/addon/napi_util.cc, StorageWrap). A FinalizationRegistry here used to
// call release() instead, which detached the storage's ArrayBuffer and so emptied typed arrays
// that the user still held (`const c = matmulSync(a, b).data` read as length 0 after some
// allocations); it also cost a registration per tensor and a JS task per collected tensor.

export function isDType(v: unknown): v is DType {
  return typeof v === 'string' && (DTYPES as readonly string[]).includes(v);
}

function checkDType(name: string, v: unknown): DType {
  if (!isDType(v)) throw (typeof v === 'string' ? rangeError : typeError)(name, `a dtype (${DTYPES.join(', ')})`, v);
  return v;
}

function parseDevice(name: string, v: unknown): number {
  if (v === 'cpu') return -1;
  if (v === 'cuda') return 0;
  if (typeof v === 'string' && /^cuda:\d+$/.test(v)) return Number(v.slice(5));
  throw typeError(name, "a device ('cpu', 'cuda' or 'cuda:N')", v);
}

function deviceName(d: number): Device {
  return d < 0 ? 'cpu' : d === 0 ? 'cuda' : `cuda:${d}`;
}

function checkShape(name: string, shape: unknown): number[] {
  if (!Array.isArray(shape)) throw typeError(name, 'an array of non-negative integers', shape);
  if (shape.length > 16) throw rangeError(name, 'at most 16 dimensions', shape);
  shape.forEach((d, i) => checkInteger(`${name}[${i}]`, d, 0, Number.MAX_SAFE_INTEGER));
  return shape.slice() as number[];
}

const numelOf = (shape: readonly number[]): number => shape.reduce((a, b) => a * b, 1);

function contiguousStrides(shape: readonly number[]): number[] {
  const s = new Array<number>(shape.length);
  let acc = 1;
  for (let i = shape.length - 1; i >= 0; i--) { s[i] = acc; acc *= shape[i]!; }
  return s;
}

function naturalDType(a: ArrayBufferView): DType | undefined {
  if (a instanceof Float32Array) return 'f32';
  if (a instanceof Int32Array) return 'i32';
  if (a instanceof BigInt64Array) return 'i64';
  if (a instanceof Uint8Array) return 'u8';
  return undefined;
}

function normDim(name: string, dim: unknown, ndim: number): number {
  checkInteger(name, dim, -Math.max(ndim, 1), Math.max(ndim, 1) - 1);
  return (dim as number) < 0 ? (dim as number) + ndim : (dim as number);
}

export interface RandomOptions {
  /** Seed of the counter-based generator: the same seed gives the same numbers on any thread count. */
  seed?: number;
  dtype?: DType;
}

export class Tensor {
  readonly dtype: DType;
  readonly shape: readonly number[];
  /** Strides in elements. */
  readonly strides: readonly number[];
  /** Offset of the first element from the storage start, in elements. */
  readonly offset: number;
  readonly device: Device;
  #shared: Shared | null;

  /** @internal Use the static constructors. */
  constructor(shared: Shared, dtype: DType, shape: readonly number[], strides: readonly number[], offset: number) {
    this.#shared = shared.acquire();
    this.dtype = dtype;
    this.shape = Object.freeze(shape.slice());
    this.strides = Object.freeze(strides.slice());
    this.offset = offset;
    this.device = deviceName(shared.handle.device);
  }

  /**
   * @internal A contiguous view of `shape` elements of `dtype` that starts `byteOffset` bytes into
   * this tensor's storage (a multiple of the dtype's size; the caller checks the bounds). The
   * safetensors reader uses it for zero-copy tensors over a mapped file.
   */
  _viewBytes(dtype: DType, shape: readonly number[], byteOffset: number): Tensor {
    if (this.#shared === null) throw new TypeError('Expected a live Tensor but it has been disposed');
    return new Tensor(this.#shared, dtype, shape, contiguousStrides(shape), byteOffset / DTYPE_SIZE[dtype]);
  }

  /** @internal Wraps a fresh native storage as a contiguous tensor. */
  static _wrap(handle: StorageHandle, dtype: DType, shape: readonly number[]): Tensor {
    return new Tensor(new Shared(handle), dtype, shape, contiguousStrides(shape), 0);
  }

  /**
   * Copies a typed array (or an array of numbers, taken as f32) into a new tensor.
   * `shape` defaults to [length]. Without `dtype` the array's own type decides (Float32Array: f32,
   * Int32Array: i32, BigInt64Array: i64, Uint8Array: u8). A Uint16Array needs dtype 'f16' or 'bf16'
   * and is taken as raw bits; a Float32Array or Float64Array with dtype f16/bf16 is rounded to
   * nearest even; any other pairing is converted element by element.
   */
  static from(data: ArrayBufferView | readonly number[], shape?: readonly number[], dtype?: DType): Tensor {
    if (dtype !== undefined) checkDType('dtype', dtype);
    let src: ArrayBufferView;
    if (Array.isArray(data)) {
      data.forEach((v, i) => { if (typeof v !== 'number') throw typeError(`data[${i}]`, 'a number', v); });
      src = Float32Array.from(data as number[]);
    } else if (ArrayBuffer.isView(data) && !(data instanceof DataView)) {
      // Memory shared with other threads is copied into an ordinary buffer first (N-API refuses
      // to read a SharedArrayBuffer's view: a bare "Invalid argument").
      src = typeof SharedArrayBuffer !== 'undefined' && data.buffer instanceof SharedArrayBuffer ? (data as Uint8Array).slice() : data;
    } else {
      throw typeError('data', 'a typed array or an array of numbers', data);
    }
    const length = (src as unknown as { length: number }).length;
    const sh = shape === undefined ? [length] : checkShape('shape', shape);
    if (numelOf(sh) !== length) {
      throw rangeError('shape', `a shape of ${length} elements (the data's length)`, `[${sh.join(', ')}]` as unknown);
    }
    let natural = naturalDType(src);
    if (src instanceof Uint16Array) {
      if (dtype !== 'f16' && dtype !== 'bf16') {
        throw typeError('dtype', "'f16' or 'bf16' with a Uint16Array (raw half-precision bits)", dtype);
      }
      natural = dtype;
    }
    if (src instanceof Float64Array) { src = Float32Array.from(src as Float64Array); natural = 'f32'; }
    if (src instanceof Int8Array || src instanceof Int16Array || src instanceof Uint32Array || src instanceof Uint8ClampedArray) {
      src = Float64Array.from(src as Int8Array, Number) as unknown as ArrayBufferView;
      src = Float32Array.from(src as Float64Array);
      natural = 'f32';
    }
    if (natural === undefined) throw typeError('data', 'a Float32Array, Float64Array, Int32Array, BigInt64Array, Uint8Array or Uint16Array', data);
    const base = Tensor._wrap(native.fromBytes(src), natural, sh);
    const want = dtype ?? natural;
    if (want === natural) return base;
    const out = base.to(want);
    base.dispose();
    return out;
  }

  /** A tensor of uninitialised memory. */
  static empty(shape: readonly number[], dtype: DType = 'f32', opts: { device?: Device } = {}): Tensor {
    return Tensor.#alloc(shape, dtype, opts, false);
  }

  static zeros(shape: readonly number[], dtype: DType = 'f32', opts: { device?: Device } = {}): Tensor {
    return Tensor.#alloc(shape, dtype, opts, true);
  }

  static #alloc(shape: readonly number[], dtype: DType, opts: { device?: Device }, zero: boolean): Tensor {
    const sh = checkShape('shape', shape);
    checkDType('dtype', dtype);
    const device = parseDevice('device', checkOptions('options', opts).device ?? 'cpu');
    return Tensor._wrap(native.alloc(numelOf(sh) * DTYPE_SIZE[dtype], device, zero), dtype, sh);
  }

  /** Normal(mean, std) samples from a seeded counter-based generator (f32, then cast to dtype). */
  static randn(shape: readonly number[], opts: RandomOptions & { mean?: number; std?: number } = {}): Tensor {
    const o = checkOptions('options', opts);
    const mean = checkNumber('mean', o.mean ?? 0), std = checkNumber('std', o.std ?? 1, 0);
    return Tensor.#random(shape, o, 'normal', mean, std);
  }

  /** Uniform samples in [low, high) from a seeded counter-based generator. */
  static rand(shape: readonly number[], opts: RandomOptions & { low?: number; high?: number } = {}): Tensor {
    const o = checkOptions('options', opts);
    const low = checkNumber('low', o.low ?? 0), high = checkNumber('high', o.high ?? 1);
    if (!(high > low)) throw rangeError('high', `a number above low (${low})`, high);
    return Tensor.#random(shape, o, 'uniform', low, high);
  }

  static #random(shape: readonly number[], o: RandomOptions, kind: 'normal' | 'uniform', a: number, b: number): Tensor {
    const seed = checkInteger('seed', o.seed ?? 0, 0, Number.MAX_SAFE_INTEGER);
    const dtype = checkDType('dtype', o.dtype ?? 'f32');
    const t = Tensor.empty(shape, 'f32');
    native.fillRandom(t._desc('tensor'), kind, seed, a, b);
    if (dtype === 'f32') return t;
    const out = t.to(dtype);
    t.dispose();
    return out;
  }

  get ndim(): number { return this.shape.length; }
  /** Number of elements. */
  get numel(): number { return numelOf(this.shape); }
  get disposed(): boolean { return this.#shared === null; }
  get isContiguous(): boolean {
    let expect = 1;
    for (let i = this.ndim - 1; i >= 0; i--) {
      if (this.shape[i] !== 1 && this.strides[i] !== expect) return false;
      expect *= this.shape[i]!;
    }
    return true;
  }

  #handle(): StorageHandle {
    if (this.#shared === null) throw new TypeError('Expected a live Tensor but it has been disposed');
    return this.#shared.handle;
  }

  /** @internal The descriptor native functions take; `name` is used in errors. */
  _desc(name = 'tensor'): TensorDesc {
    if (this.#shared === null) throw new TypeError(`Expected a live Tensor for ${name} but it has been disposed`);
    return { h: this.#shared.handle, dt: CODE[this.dtype], shape: this.shape as number[], strides: this.strides as number[], off: this.offset };
  }

  #derive(shape: readonly number[], strides: readonly number[], offset: number): Tensor {
    this.#handle();
    return new Tensor(this.#shared!, this.dtype, shape, strides, offset);
  }

  /**
   * Zero-copy typed-array view of a contiguous CPU tensor (f16/bf16 as raw Uint16 bits). Writes
   * through it change the tensor. The view keeps the memory alive on its own: it stays valid after
   * the tensor is garbage-collected, for as long as the view is reachable. Only dispose() of the
   * last tensor over the memory ends it early: the view is then detached (length 0), never
   * dangling.
   */
  get data(): TypedArrayOf<this['dtype']> {
    const h = this.#handle();
    if (this.device !== 'cpu') throw new TypeError(`Expected a CPU tensor for data but it is on ${this.device}: use .to('cpu')`);
    if (!this.isContiguous) throw new TypeError('Expected a contiguous tensor for data but it is a strided view: use .contiguous() or .toArray()');
    const size = DTYPE_SIZE[this.dtype];
    if (h.bytes > MAX_VIEW_BYTES) {
      throw new RangeError(`Expected a tensor whose memory fits a JS ArrayBuffer (at most ${MAX_VIEW_BYTES} bytes) for data but received a view on ${h.bytes} bytes: copy a part with slice(...).toArray()`);
    }
    return new VIEW_CTOR[this.dtype](h.arrayBuffer(), this.offset * size, this.numel) as TypedArrayOf<this['dtype']>;
  }

  /** A copy of the elements in row-major order, as a fresh typed array. */
  toArray(): TypedArrayOf<this['dtype']> {
    if (this.device !== 'cpu') {
      const c = this.to('cpu');
      try { return c.toArray() as TypedArrayOf<this['dtype']>; } finally { c.dispose(); }
    }
    if (this.isContiguous && this.#handle().bytes <= MAX_VIEW_BYTES) return this.data.slice() as TypedArrayOf<this['dtype']>;
    // Strided, or a view into memory too large for one ArrayBuffer: a native copy of just these
    // elements first (a small slice of a huge tensor reads like any other).
    const bytes = this.numel * DTYPE_SIZE[this.dtype];
    if (bytes > MAX_VIEW_BYTES) {
      throw new RangeError(`Expected at most ${MAX_VIEW_BYTES} bytes for toArray() (a JS typed array) but received a tensor of ${bytes} bytes: read it in slices (t.slice(...).toArray())`);
    }
    const c = this.clone();
    try { return c.data.slice() as TypedArrayOf<this['dtype']>; } finally { c.dispose(); }
  }

  /** The elements as nested JS arrays of numbers (bigints for i64). For small tensors. */
  toList(): unknown {
    const flat = this.dtype === 'f16' || this.dtype === 'bf16' ? this.to('f32').toArray() : this.toArray();
    const rec = (dim: number, off: number): unknown => {
      if (dim === this.ndim) return flat[off];
      const stride = numelOf(this.shape.slice(dim + 1));
      return Array.from({ length: this.shape[dim]! }, (_, i) => rec(dim + 1, off + i * stride));
    };
    return rec(0, 0);
  }

  /** A contiguous tensor with the same elements (this tensor itself, shared, when already contiguous). */
  contiguous(): Tensor {
    if (this.isContiguous) return this.#derive(this.shape, contiguousStrides(this.shape), this.offset);
    return Tensor._wrap(native.copyStrided(this._desc(), CODE[this.dtype], false) as StorageHandle, this.dtype, this.shape);
  }

  /** An independent contiguous copy. */
  clone(): Tensor {
    return Tensor._wrap(native.copyStrided(this._desc(), CODE[this.dtype], false) as StorageHandle, this.dtype, this.shape);
  }

  /** A view with a new shape over the same elements (one dimension may be -1); throws when the strides do not allow it. */
  view(shape: readonly number[]): Tensor {
    const sh = this.#inferShape(shape);
    const strides = this.#viewStrides(sh);
    if (strides === null) {
      throw new TypeError(`Expected a tensor whose strides allow view([${sh.join(', ')}]) but received a strided view of shape [${this.shape.join(', ')}]; use reshape() (copies) or contiguous()`);
    }
    return this.#derive(sh, strides, this.offset);
  }

  /** Like view(), but copies when the strides do not allow a view. */
  reshape(shape: readonly number[]): Tensor {
    const sh = this.#inferShape(shape);
    const strides = this.#viewStrides(sh);
    if (strides !== null) return this.#derive(sh, strides, this.offset);
    const c = this.contiguous();
    try { return c.view(sh); } finally { c.dispose(); }
  }

  #inferShape(shape: readonly number[]): number[] {
    if (!Array.isArray(shape)) throw typeError('shape', 'an array of integers', shape);
    const sh = shape.slice();
    const neg = sh.reduce<number[]>((acc, d, i) => (d === -1 ? [...acc, i] : acc), []);
    if (neg.length > 1) throw rangeError('shape', 'at most one -1', `[${sh.join(', ')}]` as unknown);
    sh.forEach((d, i) => { if (d !== -1) checkInteger(`shape[${i}]`, d, 0); });
    const n = this.numel;
    if (neg.length === 1) {
      const rest = numelOf(sh.filter((d) => d !== -1));
      if (rest === 0 || n % rest !== 0) throw rangeError('shape', `a shape that divides ${n} elements`, `[${sh.join(', ')}]` as unknown);
      sh[neg[0]!] = n / rest;
    }
    if (numelOf(sh) !== n) {
      throw rangeError('shape', `a shape of ${n} elements (from [${this.shape.join(', ')}])`, `[${sh.join(', ')}]` as unknown);
    }
    return sh;
  }

  // Strides for viewing this tensor as `sh`, or null when its memory layout does not allow it.
  // Old dimensions are grouped into chunks that are contiguous with each other (each chunk's
  // elements are evenly spaced); the new shape must split into the same chunks.
  #viewStrides(sh: readonly number[]): number[] | null {
    if (this.numel === 0 || this.isContiguous) return contiguousStrides(sh);
    const os = this.shape, ost = this.strides;
    const out = new Array<number>(sh.length).fill(1);
    let vd = sh.length - 1;
    let base = ost[os.length - 1]!;
    let chunkNumel = 1, viewNumel = 1;
    for (let td = os.length - 1; td >= 0; td--) {
      chunkNumel *= os[td]!;
      const chunkEnds = td === 0 || (os[td - 1] !== 1 && ost[td - 1] !== chunkNumel * base);
      if (!chunkEnds) continue;
      while (vd >= 0 && (viewNumel < chunkNumel || sh[vd] === 1)) {
        out[vd] = viewNumel * base;
        viewNumel *= sh[vd]!;
        vd--;
      }
      if (viewNumel !== chunkNumel) return null;
      if (td > 0) { base = ost[td - 1]!; chunkNumel = 1; viewNumel = 1; }
    }
    return vd === -1 ? out : null;
  }

  /** Elements start, start+step, ... below end along `dim` (negative indices count from the end). */
  slice(dim: number, start: number, end?: number, step = 1): Tensor {
    const d = normDim('dim', dim, this.ndim);
    const size = this.shape[d]!;
    checkInteger('step', step, 1);
    const clamp = (v: number) => Math.min(Math.max(v < 0 ? v + size : v, 0), size);
    checkInteger('start', start);
    const s = clamp(start);
    const e = end === undefined ? size : clamp(checkInteger('end', end));
    const len = e > s ? Math.ceil((e - s) / step) : 0;
    const shape = this.shape.slice(), strides = this.strides.slice();
    shape[d] = len; strides[d] = this.strides[d]! * step;
    return this.#derive(shape, strides, this.offset + (len > 0 ? s * this.strides[d]! : 0));
  }

  /** Swaps two dimensions (default: the last two). A view. */
  transpose(dim0 = -2, dim1 = -1): Tensor {
    const a = normDim('dim0', dim0, this.ndim), b = normDim('dim1', dim1, this.ndim);
    const shape = this.shape.slice(), strides = this.strides.slice();
    [shape[a], shape[b]] = [shape[b]!, shape[a]!];
    [strides[a], strides[b]] = [strides[b]!, strides[a]!];
    return this.#derive(shape, strides, this.offset);
  }

  /** Reorders the dimensions. A view. */
  permute(dims: readonly number[]): Tensor {
    if (!Array.isArray(dims) || dims.length !== this.ndim) throw rangeError('dims', `a permutation of ${this.ndim} dimensions`, dims);
    const nd = dims.map((d, i) => normDim(`dims[${i}]`, d, this.ndim));
    if (new Set(nd).size !== nd.length) throw rangeError('dims', 'a permutation (no repeated dimension)', dims);
    return this.#derive(nd.map((d) => this.shape[d]!), nd.map((d) => this.strides[d]!), this.offset);
  }

  /**
   * A converted copy: `to('bf16')` casts (f16/bf16 round to nearest even, floats to integers
   * truncate and saturate), `to('cuda')` / `to('cpu')` moves between devices.
   */
  to(target: DType | Device): Tensor {
    if (isDType(target)) {
      if (target === this.dtype) return this.clone();
      return Tensor._wrap(native.copyStrided(this._desc(), CODE[target], false) as StorageHandle, target, this.shape);
    }
    const device = parseDevice('target', target);
    const src = this.isContiguous ? this : this.contiguous();
    try {
      return Tensor._wrap(native.toDevice(src._desc(), device), this.dtype, this.shape);
    } finally {
      if (src !== this) src.dispose();
    }
  }

  /**
   * Gives this tensor's share of its memory back. Idempotent. When the last tensor sharing the
   * memory is disposed, it is freed and typed-array views from `.data` become empty (detached).
   */
  dispose(): void {
    const s = this.#shared;
    if (s === null) return;
    this.#shared = null;
    s.releaseOne();
  }

  [Symbol.dispose](): void { this.dispose(); }

  toString(): string {
    return `Tensor(${this.dtype}, [${this.shape.join(', ')}], ${this.device}${this.disposed ? ', disposed' : ''})`;
  }

  [inspect.custom](): string {
    if (this.disposed || this.numel > 64 || this.device !== 'cpu') return this.toString();
    return `${this.toString()} ${inspect(this.toList(), { depth: 8 })}`;
  }
}

/** Checks a Tensor argument: a live Tensor, optionally of given dtypes and dimension count. */
export function expectTensor(name: string, v: unknown, opts: { dtypes?: readonly DType[]; ndim?: number; layout?: string } = {}): Tensor {
  if (!(v instanceof Tensor)) throw typeError(name, 'a Tensor', v);
  if (v.disposed) throw new TypeError(`Expected a live Tensor for ${name} but it has been disposed`);
  if (opts.dtypes && !opts.dtypes.includes(v.dtype)) {
    throw new TypeError(`Expected dtype ${opts.dtypes.join(' or ')} for ${name} but received ${v.dtype}`);
  }
  if (opts.ndim !== undefined && v.ndim !== opts.ndim) {
    throw new RangeError(`Expected ${opts.ndim} dimensions${opts.layout ? ' ' + opts.layout : ''} for ${name} but received shape [${v.shape.join(', ')}]`);
  }
  return v;
}

/**
 * Accepts an index array (Int32Array, or an i32 Tensor of one dimension) and returns an i32
 * Tensor; `owned` says whether the caller must dispose it.
 */
export function indexTensor(name: string, v: unknown, length?: number): { tensor: Tensor; owned: boolean } {
  let tensor: Tensor, owned: boolean;
  if (v instanceof Int32Array) {
    tensor = Tensor.from(v); owned = true;
  } else if (v instanceof Tensor) {
    expectTensor(name, v, { dtypes: ['i32'], ndim: 1, layout: '[n]' });
    if (v.device !== 'cpu') throw new TypeError(`Expected a CPU tensor for ${name} but received one on ${v.device}`);
    tensor = v.isContiguous ? v : v.contiguous(); owned = tensor !== v;
  } else {
    throw typeError(name, 'an Int32Array or an i32 Tensor', v);
  }
  if (length !== undefined && tensor.numel !== length) {
    if (owned) tensor.dispose();
    throw new RangeError(`Expected ${length} elements for ${name} but received ${tensor.numel}`);
  }
  return { tensor, owned };
}

export { describe };
