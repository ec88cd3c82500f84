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
