// Shared test utilities: float64 references, relative errors, deterministic JS random data.
import * as assert from 'uvu/assert';

/** Deterministic JS generator (mulberry32) for test inputs, independent of the native RNG. */
export function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6D2B79F5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** n standard-normal-ish f32 values (sum of uniforms), seeded. */
export function randomF32(n: number, seed: number, scale = 1): Float32Array {
  const r = rng(seed);
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = (r() + r() + r() - 1.5) * 2 * scale;
  return out;
}

// ---- bf16 rounding: an independent float64 reference (half.test checks it against PyTorch) ----
const f32buf = new Float32Array(1), u32buf = new Uint32Array(f32buf.buffer);
export const bitsToF32 = (u: number): number => { u32buf[0] = u; return f32buf[0]!; };
export const f32ToBits = (x: number): number => { f32buf[0] = x; return u32buf[0]!; };

export function roundHalfEven(m: number): number {
  const f = Math.floor(m), d = m - f;
  return d > 0.5 ? f + 1 : d < 0.5 ? f : (f % 2 === 0 ? f : f + 1);
}

/** f32 bits -> bf16 bits, round to nearest even (NaN: 0x7FC0). */
export function refF32ToBf16(u: number): number {
  const sign = (u >>> 16) & 0x8000, a = u & 0x7fffffff;
  if (a > 0x7f800000) return 0x7fc0;
  if (a === 0x7f800000) return sign | 0x7f80;
  const x = Math.abs(bitsToF32(u));
  if (x === 0) return sign;
  let e = Math.max(Math.floor(Math.log2(x)), -126);
  while (2 ** e > x && e > -126) e--;
  while (2 ** (e + 1) <= x) e++;
  let r = roundHalfEven(x / 2 ** (e - 7));
  if (r === 256) { r = 128; e++; }
  if (e === -126 && r < 128) return sign | r;
  if (e > 127) return sign | 0x7f80;
  return sign | ((e + 127) << 7) | (r - 128);
}

/** x rounded to the nearest bf16 (ties to even), as a number: what precision 'bf16' multiplies. */
export function bf16Round(x: number): number {
  return bitsToF32((refF32ToBf16(f32ToBits(x)) << 16) >>> 0);
}

/** Every element rounded to bf16 (bf16Round). */
export function bf16RoundAll(a: ArrayLike<number>): Float64Array {
  return Float64Array.from(a, bf16Round);
}

/** max |got - want| / max(max |want|, tiny): the relative error of a whole array. */
export function relErr(got: ArrayLike<number>, want: ArrayLike<number>): number {
  assert.is(got.length, want.length, 'length');
  let num = 0, den = 0;
  for (let i = 0; i < want.length; i++) {
    const g = got[i]!, w = want[i]!;
    if (Number.isNaN(g) !== Number.isNaN(w)) return Infinity;
    if (Number.isNaN(w) || g === w) continue;
    num = Math.max(num, Math.abs(g - w));
    den = Math.max(den, Math.abs(w));
  }
  for (let i = 0; i < want.length; i++) den = Math.max(den, Math.abs(want[i]!));
  return num === 0 ? 0 : num / Math.max(den, 1e-30);
}

export function assertRel(got: ArrayLike<number>, want: ArrayLike<number>, tol: number, what: string): void {
  const e = relErr(got, want);
  assert.ok(e < tol, `${what}: relative error ${e.toExponential(3)} >= ${tol}`);
}

/** Asserts that fn throws an instance of `type` whose message matches `re`. */
export function throwsLike(fn: () => unknown, type: new (...a: never[]) => Error, re: RegExp, what = ''): void {
  try {
    fn();
  } catch (e) {
    assert.instance(e, type, `${what}: expected ${type.name}, got ${(e as Error)?.constructor?.name}: ${(e as Error)?.message}`);
    assert.match((e as Error).message, re, what);
    return;
  }
  assert.unreachable(`${what}: expected ${type.name} matching ${re}`);
}

export async function rejectsLike(p: Promise<unknown>, type: new (...a: never[]) => Error, re: RegExp, what = ''): Promise<void> {
  try {
    await p;
  } catch (e) {
    assert.instance(e, type, `${what}: expected ${type.name}, got ${(e as Error)?.constructor?.name}: ${(e as Error)?.message}`);
    assert.match((e as Error).message, re, what);
    return;
  }
  assert.unreachable(`${what}: expected a rejection with ${type.name}`);
}

/** float64 reference of row-major C = op(A) op(B). */
export function matmulRef(A: ArrayLike<number>, B: ArrayLike<number>, M: number, N: number, K: number, transA = false, transB = false): Float64Array {
  const C = new Float64Array(M * N);
  for (let i = 0; i < M; i++) {
    for (let k = 0; k < K; k++) {
      const a = transA ? A[k * M + i]! : A[i * K + k]!;
      if (a === 0) continue;
      for (let j = 0; j < N; j++) C[i * N + j] += a * (transB ? B[j * K + k]! : B[k * N + j]!);
    }
  }
  return C;
}
