// Argument checks with one message shape: "Expected <what> for <name> but received <value>".

/** Describes a received value for an error message: its value (short) and its type. */
export function describe(v: unknown): string {
  if (v === null) return 'null';
  if (v === undefined) return 'undefined';
  if (typeof v === 'number' || typeof v === 'boolean' || typeof v === 'bigint') return `${String(v)} of type ${typeof v}`;
  if (typeof v === 'string') return `'${v.length > 40 ? v.slice(0, 40) + '...' : v}' of type string`;
  if (ArrayBuffer.isView(v)) return `a ${v.constructor.name} of length ${(v as unknown as { length?: number }).length ?? v.byteLength}`;
  if (Array.isArray(v)) return `an array of length ${v.length}`;
  if (typeof v === 'function') return 'a function';
  const name = (v as object).constructor?.name;
  return name && name !== 'Object' ? `an instance of ${name}` : 'an object';
}

export function typeError(name: string, expected: string, received: unknown): TypeError {
  return new TypeError(`Expected ${expected} for ${name} but received ${describe(received)}`);
}

export function rangeError(name: string, expected: string, received: unknown): RangeError {
  return new RangeError(`Expected ${expected} for ${name} but received ${describe(received)}`);
}

export const isInteger = (v: unknown): v is number => typeof v === 'number' && Number.isInteger(v);

export function checkInteger(name: string, v: unknown, min = -Infinity, max = Infinity): number {
  if (!isInteger(v)) throw typeError(name, 'an integer', v);
  if (v < min || v > max) {
    const range = max === Infinity ? `an integer >= ${min}` : min === -Infinity ? `an integer <= ${max}` : `an integer in [${min}, ${max}]`;
    throw rangeError(name, range, v);
  }
  return v;
}

export function checkNumber(name: string, v: unknown, min = -Infinity, max = Infinity, opts: { exclusiveMin?: boolean } = {}): number {
  if (typeof v !== 'number' || Number.isNaN(v)) throw typeError(name, 'a number', v);
  if (v < min || v > max || (opts.exclusiveMin && v === min)) {
    throw rangeError(name, `a number in ${opts.exclusiveMin ? '(' : '['}${min}, ${max}]`, v);
  }
  return v;
}

/**
 * The smallest softmax temperature the kernels take. They compute logits / T in float32: below
 * 1e-6 ordinary logits overflow to inf (and 1e-50 rounds to 0 in float32, a division by zero),
 * which would turn finite inputs into NaN. Greedy decoding is temperature 0 in generate().
 */
export const MIN_TEMPERATURE = 1e-6;

/** A softmax temperature: a finite number >= MIN_TEMPERATURE (or exactly 0 when `greedy` allows it). */
export function checkTemperature(name: string, v: unknown, opts: { greedy?: boolean } = {}): number {
  if (typeof v !== 'number' || Number.isNaN(v)) throw typeError(name, 'a number', v);
  if (opts.greedy && v === 0) return 0;
  if (!(v >= MIN_TEMPERATURE && v < Infinity)) {
    throw rangeError(name, `${opts.greedy ? '0 (greedy) or ' : ''}a finite number >= 1e-6 (below it logits / temperature overflow float32)`, v);
  }
  return v;
}

export function checkBoolean(name: string, v: unknown): boolean {
  if (typeof v !== 'boolean') throw typeError(name, 'a boolean', v);
  return v;
}

export function checkOneOf<T extends string>(name: string, v: unknown, allowed: readonly T[]): T {
  if (typeof v !== 'string' || !(allowed as readonly string[]).includes(v)) {
    throw (typeof v === 'string' ? rangeError : typeError)(name, `one of ${allowed.map((a) => `'${a}'`).join(', ')}`, v);
  }
  return v as T;
}

/** Checks that an options argument is undefined or a plain object. */
export function checkOptions<T extends object>(name: string, v: T | undefined): T {
  if (v === undefined) return {} as T;
  if (v === null || typeof v !== 'object' || Array.isArray(v)) throw typeError(name, 'an options object', v);
  return v;
}
