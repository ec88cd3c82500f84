// A tiny Qwen2.5-VL checkpoint folder on disk (config.json, model.safetensors, and optionally a
// tokenizer with its chat template), written by the tests that load models from files: hostile
// configs and files, the mmap contract, the CLI, the soak script.
import { writeFileSync } from 'node:fs';
import path from 'node:path';

import { writeSafetensors } from '../src/model/safetensors.js';
import { Tensor } from '../src/tensor.js';
import { tinyTokenizer } from './fixtures.js';
import { HF, makeWeights, type HFConfig } from './qwen_fixture.js';

export const TINY_TOKENIZER = tinyTokenizer('what is in the video? the cat sat on the mat. what happens in this clip, and why?', 20);

export interface TinyOptions {
  /** config.json as an object (default the tiny HF config) or as raw text. */
  config?: HFConfig | Record<string, unknown> | string;
  dtype?: 'f32' | 'bf16' | 'f16';
  /** Write tokenizer.json, tokenizer_config.json and generation_config.json (default true). */
  tokenizer?: boolean;
  /** Extra files (name -> text). */
  files?: Record<string, string>;
  seed?: number;
}

/** Writes the folder; the weights always have the tiny config's shapes. */
export function writeTinyCheckpoint(dir: string, opts: TinyOptions = {}): void {
  const w = makeWeights(opts.seed ?? 100);
  const tensors = new Map<string, Tensor>();
  for (const [k, v] of w) tensors.set(k, Tensor.from(v, w.shapes.get(k)!, opts.dtype ?? 'f32'));
  writeSafetensors(path.join(dir, 'model.safetensors'), tensors);
  for (const t of tensors.values()) t.dispose();
  const cfg = opts.config ?? HF;
  writeFileSync(path.join(dir, 'config.json'), typeof cfg === 'string' ? cfg : JSON.stringify(cfg));
  if (opts.tokenizer !== false) {
    writeFileSync(path.join(dir, 'tokenizer.json'), JSON.stringify(TINY_TOKENIZER.json));
    writeFileSync(path.join(dir, 'tokenizer_config.json'), JSON.stringify({ eos_token: '<|endoftext|>' }));
    writeFileSync(path.join(dir, 'generation_config.json'), JSON.stringify({ eos_token_id: [287, 285] }));
  }
  for (const [f, text] of Object.entries(opts.files ?? {})) writeFileSync(path.join(dir, f), text);
}
