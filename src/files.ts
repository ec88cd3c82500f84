// The small JSON files of a Hugging Face checkpoint folder, read one way for every loader.
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';

/** Parses a JSON file; a RangeError names the file when it is not valid JSON. */
export function readJson(file: string): unknown {
  try {
    return JSON.parse(readFileSync(file, 'utf8'));
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
