// f16 / bf16 conversions: bit-exact for all 65536 patterns and for many f32 inputs, against an
// independent float64 JS reference and against numpy (f16) and PyTorch (bf16) when Python has them
// (CI installs python3-numpy and python3-torch; there a missing reference is a failure).
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { compareUint8Arrays } from 'typed-array-utils';

import { backend, setSimdLevel, Tensor } from '../src/index.js';
import { bitsToF32, f32ToBits, refF32ToBf16, rng, roundHalfEven } from './helpers.js';
import { noPython, runPython, skip } from './skip.js';

const LEVELS = (['scalar', 'avx2', 'avx512'] as const).filter((l) =>
  l === 'scalar' || (l === 'avx2' && backend().simd.avx2) || (l === 'avx512' && backend().bestKernels === 'avx512'));

// ---- independent float64 references (the rules documented in native/core/half.h) ----
// (bitsToF32, f32ToBits, roundHalfEven and refF32ToBf16 live in helpers.ts: the bf16 GEMM's tests use them too)

/** f16 bits -> f32 bits by arithmetic on the value (NaN payloads kept, not quieted: numpy). */
function refF16ToF32(h: number): number {
  const s = h >> 15, e = (h >> 10) & 0x1f, m = h & 0x3ff;
  if (e === 0x1f) return ((s << 31) | 0x7f800000 | (m << 13)) >>> 0;
  const v = (e === 0 ? m * 2 ** -24 : (1 + m / 1024) * 2 ** (e - 15)) * (s ? -1 : 1);
  if (v === 0) return s ? 0x80000000 : 0;
  return f32ToBits(v);
}

/** f32 bits -> f16 bits, round to nearest even (NaN: numpy's rule). */
function refF32ToF16(u: number): number {
  const sign = (u >>> 16) & 0x8000, a = u & 0x7fffffff;
  if (a > 0x7f800000) { const p = (a >>> 13) & 0x3ff; return sign | 0x7c00 | (p || 1); }
  const x = Math.abs(bitsToF32(u));
  if (x === Infinity || x >= 65520) return sign | 0x7c00;
  if (x === 0) return sign;
  let e = Math.max(Math.floor(Math.log2(x)), -14);
  while (2 ** e > x && e > -14) e--;
  while (2 ** (e + 1) <= x) e++;
  let r = roundHalfEven(x / 2 ** (e - 10));
  if (r === 2048) { r = 1024; e++; }
  if (e === -14 && r < 1024) return sign | r;  // subnormal (or zero)
  if (e > 15) return sign | 0x7c00;
  return sign | ((e + 15) << 10) | (r - 1024);
}

// ---- inputs ----
const ALL16 = new Uint16Array(65536).map((_, i) => i);

/** f32 bit patterns that exercise rounding: every f16/bf16 value, the midpoints between
 * neighbours and one ulp either side, NaNs with assorted payloads, and random bits. */
function f32Inputs(): Uint32Array {
  const out: number[] = [];
  for (let h = 0; h < 0x10000; h++) {
    const u = refF16ToF32(h);
    out.push(u);
    const b = (h << 16) >>> 0;  // bf16 pattern h as f32
    out.push(b, (b + 0x8000) >>> 0, (b + 0x7fff) >>> 0, (b + 0x8001) >>> 0);
  }
  for (let h = 0; h < 0x7c00; h++) {  // f16 midpoints (positive and negative), +-1 ulp
    const lo = bitsToF32(refF16ToF32(h)), hi = bitsToF32(refF16ToF32(h + 1));
    const mid = f32ToBits((lo + hi) / 2);
    for (const d of [-1, 0, 1]) { out.push((mid + d) >>> 0, ((mid + d) | 0x80000000) >>> 0); }
  }
  const r = rng(7);
  for (let i = 0; i < 200000; i++) out.push(Math.floor(r() * 2 ** 32) >>> 0);
  out.push(0x7f800001, 0x7fc00000, 0xffc00000, 0x7fbfffff, 0x7f801fff, 0xff802000, 0x477ff000, 0x477fefff, 0x33000000, 0x33000001, 0x7f7f8000, 0x7f7f7fff);
  return Uint32Array.from(out);
}
const F32IN = f32Inputs();

function nativeConvert(src: Tensor, to: 'f32' | 'f16' | 'bf16'): Uint8Array {
  const t = src.to(to);
  try { const d = t.data; return new Uint8Array(d.buffer, d.byteOffset, d.byteLength).slice(); } finally { t.dispose(); }
}
const bytes = (a: ArrayBufferView) => new Uint8Array(a.buffer, a.byteOffset, a.byteLength);

function firstMismatch(got: Uint32Array | Uint16Array, want: Uint32Array | Uint16Array, input: ArrayLike<number>): string {
  for (let i = 0; i < want.length; i++) {
    if (got[i] !== want[i]) return `input 0x${input[i]!.toString(16)}: got 0x${got[i]!.toString(16)}, want 0x${want[i]!.toString(16)}`;
  }
  return 'none';
}

// ---- Python references (numpy for f16, PyTorch for bf16) ----
function pythonRefs(): { f16to32: Uint32Array; f32to16: Uint16Array; torch16to32?: Uint32Array; torchBf16?: Uint16Array } | null {
  const dir = mkdtempSync(path.join(tmpdir(), 'vt-half-'));
  try {
    writeFileSync(path.join(dir, 'f32.bin'), bytes(F32IN));
    const script = `
import numpy as np, sys
d = sys.argv[1]
h = np.arange(65536, dtype=np.uint32).astype(np.uint16)
h.view(np.float16).astype(np.float32).tofile(d + '/f16to32.bin')
x = np.fromfile(d + '/f32.bin', dtype=np.uint32).view(np.float32)
x.astype(np.float16).tofile(d + '/f32to16.bin')
try:
    import torch
    torch.from_numpy(h.view(np.int16).copy()).view(torch.float16).float().numpy().tofile(d + '/t16to32.bin')
    # element by element through the scalar c10::BFloat16 path would be slow; the tensor path
    # agrees with it on every non-NaN value, NaNs are checked against the documented rule
    torch.from_numpy(x.copy()).bfloat16().view(torch.int16).numpy().tofile(d + '/tbf16.bin')
except ImportError:
    pass
`;
    // null only when numpy is missing; a script that fails is a test failure (runPython)
    if (runPython(['-c', script, dir], ['numpy']) === null) return null;
    const rd = (f: string) => { try { return readFileSync(path.join(dir, f)); } catch { return null; } };
    const a = rd('f16to32.bin')!, b = rd('f32to16.bin')!, c = rd('t16to32.bin'), e = rd('tbf16.bin');
    return {
      f16to32: new Uint32Array(a.buffer, a.byteOffset, a.byteLength / 4),
      f32to16: new Uint16Array(b.buffer, b.byteOffset, b.byteLength / 2),
      torch16to32: c ? new Uint32Array(c.buffer, c.byteOffset, c.byteLength / 4) : undefined,
      torchBf16: e ? new Uint16Array(e.buffer, e.byteOffset, e.byteLength / 2) : undefined,
    };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

const REF_F16_TO_F32 = Uint32Array.from(ALL16, refF16ToF32);
const REF_F32_TO_F16 = Uint16Array.from(F32IN, refF32ToF16);
const REF_F32_TO_BF16 = Uint16Array.from(F32IN, refF32ToBf16);
let pyCache: ReturnType<typeof pythonRefs> | undefined;
const refs = () => (pyCache === undefined ? (pyCache = pythonRefs()) : pyCache);
const isNaN32 = (u: number) => (u & 0x7fffffff) > 0x7f800000;

test('the JS reference agrees with numpy on every pattern (checks the reference itself)', () => {
  const py = refs();
  if (!py) return skip(noPython(['numpy']));
  assert.ok(compareUint8Arrays(bytes(py.f16to32), bytes(REF_F16_TO_F32)), `f16->f32 ${firstMismatch(REF_F16_TO_F32, py.f16to32, ALL16)}`);
  assert.ok(compareUint8Arrays(bytes(py.f32to16), bytes(REF_F32_TO_F16)), `f32->f16 ${firstMismatch(REF_F32_TO_F16, py.f32to16, F32IN)}`);
});

test('bf16 reference agrees with PyTorch on every non-NaN input', () => {
  const py = refs();
  if (!py?.torchBf16) return skip(noPython(['numpy', 'torch']));
  let bad = 0, first = '';
  for (let i = 0; i < F32IN.length; i++) {
    if (isNaN32(F32IN[i]!)) continue;
    if (py.torchBf16[i] !== REF_F32_TO_BF16[i]) { if (!bad) first = `0x${F32IN[i]!.toString(16)}: torch 0x${py.torchBf16[i]!.toString(16)} ref 0x${REF_F32_TO_BF16[i]!.toString(16)}`; bad++; }
  }
  assert.is(bad, 0, first);
  // f16 -> f32: PyTorch agrees with numpy except that it quiets signalling NaNs
  for (let h = 0; h < 65536; h++) {
    const want = REF_F16_TO_F32[h]!, got = py.torch16to32![h]!;
    if (isNaN32(want)) assert.is(got, (want | 0x00400000) >>> 0, `torch quiets NaN 0x${h.toString(16)}`);
    else assert.is(got, want, `f16 0x${h.toString(16)}`);
  }
});

for (const level of LEVELS) {
  test(`[${level}] f16 -> f32, all 65536 patterns, bit-exact`, () => {
    const prev = setSimdLevel(level);
    try {
      using src = Tensor.from(ALL16, [65536], 'f16');
      const got = new Uint32Array(nativeConvert(src, 'f32').buffer);
      assert.ok(compareUint8Arrays(bytes(got), bytes(REF_F16_TO_F32)), firstMismatch(got, REF_F16_TO_F32, ALL16));
    } finally { setSimdLevel(prev); }
  });

  test(`[${level}] f32 -> f16, ${F32IN.length} inputs incl. ties and NaNs, bit-exact`, () => {
    const prev = setSimdLevel(level);
    try {
      using src = Tensor.from(new Float32Array(F32IN.buffer), [F32IN.length]);
      const got = new Uint16Array(nativeConvert(src, 'f16').buffer);
      assert.ok(compareUint8Arrays(bytes(got), bytes(REF_F32_TO_F16)), firstMismatch(got, REF_F32_TO_F16, F32IN));
      // odd length: the SIMD tail path
      using tail = src.slice(0, 0, 13);
      const t = new Uint16Array(nativeConvert(tail, 'f16').buffer);
      assert.ok(compareUint8Arrays(bytes(t), bytes(REF_F32_TO_F16.subarray(0, 13))));
    } finally { setSimdLevel(prev); }
  });

  test(`[${level}] bf16 -> f32 (all patterns) and f32 -> bf16 (round to nearest even), bit-exact`, () => {
    const prev = setSimdLevel(level);
    try {
      using b = Tensor.from(ALL16, [65536], 'bf16');
      const got = new Uint32Array(nativeConvert(b, 'f32').buffer);
      for (let h = 0; h < 65536; h++) if (got[h] !== (h << 16) >>> 0) assert.unreachable(`bf16 0x${h.toString(16)} -> 0x${got[h]!.toString(16)}`);
      using src = Tensor.from(new Float32Array(F32IN.buffer), [F32IN.length]);
      const g2 = new Uint16Array(nativeConvert(src, 'bf16').buffer);
      assert.ok(compareUint8Arrays(bytes(g2), bytes(REF_F32_TO_BF16)), firstMismatch(g2, REF_F32_TO_BF16, F32IN));
    } finally { setSimdLevel(prev); }
  });
}

test('f16 <-> bf16 round once through f32', () => {
  using h = Tensor.from(ALL16, [65536], 'f16');
  const got = new Uint16Array(nativeConvert(h, 'bf16').buffer);
  for (let i = 0; i < 65536; i++) {
    const want = refF32ToBf16(REF_F16_TO_F32[i]!);
    if (got[i] !== want) assert.unreachable(`f16 0x${i.toString(16)} -> bf16 0x${got[i]!.toString(16)}, want 0x${want.toString(16)}`);
  }
});

test.run();
