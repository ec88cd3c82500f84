// Argument parsing shared by the commands: node:util parseArgs in strict mode (unknown options and
// missing values are usage errors, exit code 2), `--threads` and `--help` on every command, and
// number parsing with the messages the CLI has always printed.
import { parseArgs, type ParseArgsConfig } from 'node:util';

import { setNumThreads } from '../index.js';

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
} as const;

/**
 * Parses a command's arguments. Returns null when --help was given (the caller prints its help).
 * At most `maxPositionals` positionals; `--threads N` is applied at once.
 */
export function parse<O extends Options>(command: string, argv: string[], options: O, maxPositionals: number): Parsed<O> | null {
  let r: Parsed<O>;
  try {
    r = parseArgs({ args: argv, options: { ...options, ...COMMON }, allowPositionals: true, strict: true }) as Parsed<O>;
  } catch (e) {
    throw new UsageError((e as Error).message, command);
  }
  if ((r.values as { help?: boolean }).help) return null;
  if (r.positionals.length > maxPositionals) {
    throw new UsageError(`Unexpected argument '${r.positionals[maxPositionals]}' (${command} takes ${maxPositionals === 0 ? 'no positional arguments' : `at most ${maxPositionals}`})`, command);
  }
  const threads = (r.values as { threads?: string }).threads;
  if (threads !== undefined) setNumThreads(Number(threads));
  return r;
}

/** A number option: undefined stays undefined (or takes `fallback`); anything that is not a finite number is a TypeError. */
export function num(flag: string, v: string | undefined, fallback?: number): number | undefined {
  if (v === undefined) return fallback;
  const x = Number(v);
  if (v.trim() === '' || !Number.isFinite(x)) throw new TypeError(`Expected a number for --${flag} but received '${v}'`);
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
  -h, --help           this help`;
