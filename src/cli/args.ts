// Argument parsing shared by the commands: node:util parseArgs in strict mode (unknown options and
// missing values are usage errors, exit code 2), `--threads`, `--precision` and `--help` on every command,
// number parsing with the messages the CLI has always printed, and what stops a command early
// (the reader of stdout went away).
import { parseArgs, type ParseArgsConfig } from 'node:util';

import { setMatmulPrecision, setNumThreads } from '../index.js';

/** A mistake in the command line: printed with the command's usage hint, exit code 2. */
export class UsageError extends Error {
  constructor(message: string, readonly command?: string) {
    super(message);
    this.name = 'UsageError';
  }
}

type Options = NonNullable<ParseArgsConfig['options']>;
type Parsed<O extends Options> = ReturnType<typeof parseArgs<{ options: O & typeof COMMON; allowPositionals: true; strict: true }>>;

const COMMON = {
  help: { type: 'boolean', short: 'h' },
  threads: { type: 'string' },
  precision: { type: 'string' },
} as const;

/**
 * Aborted when stdout's reader goes away (EPIPE: `videothinker ask ... | head -c 1`): a command
 * that streams output stops its work and exits quietly instead of dying on the write error.
 */
export const outputClosed = new AbortController();

/** A negative number given as an option's value (`--temperature -1`), which parseArgs takes for an option. */
const NEGATIVE = /^-(\d|\.\d|Infinity$)/;

/**
 * `--flag -1` -> `--flag=-1` for the options that take a value: parseArgs refuses a value that
 * starts with '-' as ambiguous, and a negative number is what the user meant (the library then
 * judges its range). Everything after `--` is left alone.
 */
function joinNegativeValues(argv: string[], options: Options): string[] {
  const takesValue = new Set(Object.entries(options).filter(([, o]) => o.type === 'string').map(([k]) => `--${k}`));
  const out: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === '--') { out.push(...argv.slice(i)); break; }
    if (takesValue.has(a) && i + 1 < argv.length && NEGATIVE.test(argv[i + 1]!)) { out.push(`${a}=${argv[i + 1]}`); i++; continue; }
    out.push(a);
  }
  return out;
}

/**
 * Parses a command's arguments. Returns null when --help was given (the caller prints its help).
 * At most `maxPositionals` positionals; `--threads N` and `--precision P` are applied at once.
 */
export function parse<O extends Options>(command: string, argv: string[], options: O, maxPositionals: number): Parsed<O> | null {
  let r: Parsed<O>;
  try {
    const all = { ...options, ...COMMON };
    r = parseArgs({ args: joinNegativeValues(argv, all), options: all, allowPositionals: true, strict: true }) as Parsed<O>;
  } catch (e) {
    throw new UsageError((e as Error).message, command);
  }
  if ((r.values as { help?: boolean }).help) return null;
  if (r.positionals.length > maxPositionals) {
    throw new UsageError(`Unexpected argument '${r.positionals[maxPositionals]}' (${command} takes ${maxPositionals === 0 ? 'no positional arguments' : `at most ${maxPositionals}`})`, command);
  }
  const threads = (r.values as { threads?: string }).threads;
  if (threads !== undefined) {
    const t = int('threads', threads)!;
    if (t < 1 || t > 256) throw new RangeError(`Expected an integer in [1, 256] for --threads but received ${threads}`);
    setNumThreads(t);
  }
  const precision = (r.values as { precision?: string }).precision;
  if (precision !== undefined) {
    if (precision !== 'f32' && precision !== 'bf16') throw new RangeError(`Expected 'f32' or 'bf16' for --precision but received '${precision}'`);
    setMatmulPrecision(precision);
  }
  return r;
}

/** Decimal numbers only: Number() would also take '0x10', '0b11', ' 5' and '' (0). */
const DECIMAL = /^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$/;

/** A number option: undefined stays undefined (or takes `fallback`); anything that is not a finite decimal number is a TypeError. */
export function num(flag: string, v: string | undefined, fallback?: number): number | undefined {
  if (v === undefined) return fallback;
  const x = Number(v);
  if (!DECIMAL.test(v) || !Number.isFinite(x)) throw new TypeError(`Expected a number for --${flag} but received '${v}'`);
  return x;
}

/** An integer option (the library checks its range and names the option). */
export function int(flag: string, v: string | undefined, fallback?: number): number | undefined {
  const x = num(flag, v, fallback);
  if (x !== undefined && !Number.isInteger(x)) throw new TypeError(`Expected an integer for --${flag} but received '${v}'`);
  return x;
}

/** The shared lines of every command's help. */
export const COMMON_HELP = `  --threads N          native threads (default: VT_NUM_THREADS, else all hardware threads)
  --precision P        f32 (default) or bf16: the network's GEMMs round their operands to bf16
                       and sum in f32 (up to 2x faster on CPUs with AVX512_BF16; setMatmulPrecision)
  -h, --help           this help`;
