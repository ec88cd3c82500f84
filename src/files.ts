// The small files of a checkpoint or run folder: read one way for every loader, written atomically
// one way for every writer.
import { closeSync, constants, existsSync, fstatSync, openSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';

/** Files of a checkpoint folder that are read whole (configs, tokenizers): 1 GiB at most. */
const MAX_TEXT_BYTES = 2 ** 30;

/**
 * A small file's text, refusing what is not a regular file: opening a named pipe waits for a
 * writer (forever), reading /dev/zero never ends. Opened non-blocking, checked, then read.
 */
export function readRegularFile(file: string): string {
  const fd = openSync(file, constants.O_RDONLY | (constants.O_NONBLOCK ?? 0));
  try {
    const st = fstatSync(fd);
    if (!st.isFile()) throw new RangeError(`Expected a regular file but ${file} is ${st.isDirectory() ? 'a directory' : st.isFIFO() ? 'a named pipe' : 'not one'}`);
    if (st.size > MAX_TEXT_BYTES) throw new RangeError(`Expected at most ${MAX_TEXT_BYTES} bytes in ${file} but it has ${st.size}`);
    return readFileSync(fd, 'utf8');
  } finally {
    closeSync(fd);
  }
}

/** Parses a JSON file; a RangeError names the file when it is not valid JSON (or not a regular file). */
export function readJson(file: string): unknown {
  try {
    return JSON.parse(readRegularFile(file));
  } catch (e) {
    throw new RangeError(`Invalid ${file}: ${(e as Error).message}`);
  }
}

/** The folder's chat template: chat_template.json's, else tokenizer_config.json's, else undefined. */
export function findChatTemplate(dir: string): string | undefined {
  for (const f of ['chat_template.json', 'tokenizer_config.json']) {
    const p = path.join(dir, f);
    if (!existsSync(p)) continue;
    const t = (readJson(p) as { chat_template?: unknown } | null)?.chat_template;
    if (typeof t === 'string') return t;
  }
  return undefined;
}

/** Text to a temporary file beside `file`, then renamed over it (readers never see half a file). */
export function writeTextAtomic(file: string, text: string): void {
  const tmp = `${file}.tmp-${process.pid}-${Math.random().toString(36).slice(2)}`;
  try {
    writeFileSync(tmp, text);
    renameSync(tmp, file);
  } catch (e) {
    rmSync(tmp, { force: true });
    throw e;
  }
}

/** JSON (indented, with a final newline) written as writeTextAtomic writes text. */
export function writeJsonAtomic(file: string, value: unknown, indent: number | undefined = 2): void {
  writeTextAtomic(file, JSON.stringify(value, null, indent) + '\n');
}
