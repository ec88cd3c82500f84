// A Hugging Face checkpoint folder: config.json and the safetensors weights (model.safetensors,
// or shards listed by model.safetensors.index.json), memory-mapped and kept in their stored dtype.
// A folder with only these loads; loadModel (index.ts) adds the tokenizer and the processor.
import { existsSync } from 'node:fs';
import path from 'node:path';

import { typeError } from '../errors.js';
import type { Tensor } from '../tensor.js';
import { findChatTemplate, readJson } from '../files.js';
import { readCheckpointWeights } from './safetensors.js';

export interface Checkpoint {
  /** The folder. */
  dir: string;
  /** config.json as parsed JSON (the model normalises it). */
  config: unknown;
  /** Every weight by its Hugging Face name: CPU views on the mapped files, stored dtype kept. */
  weights: Map<string, Tensor>;
  /** The safetensors __metadata__ of the files, merged. */
  metadata: Record<string, string>;
  /** The chat template, when the folder has one (chat_template.json or tokenizer_config.json). */
  chatTemplate?: string;
  /** Disposes every weight (the mappings go with the last view). */
  dispose(): void;
}

/** Loads config.json and the weights of a checkpoint folder (synchronous: the data is mapped, not read). */
export function loadCheckpoint(dir: string): Checkpoint {
  if (typeof dir !== 'string' || dir === '') throw typeError('dir', 'a checkpoint folder path', dir);
  const cfg = path.join(dir, 'config.json');
  if (!existsSync(cfg)) throw new RangeError(`Expected ${cfg}: a Hugging Face checkpoint folder has config.json and *.safetensors`);
  const config = readJson(cfg);
  const w = readCheckpointWeights(dir);
  const chatTemplate = findChatTemplate(dir);
  const ck: Checkpoint = { dir, config, weights: w.tensors, metadata: w.metadata, dispose: w.dispose };
  if (chatTemplate !== undefined) ck.chatTemplate = chatTemplate;
  return ck;
}
