// A Hugging Face checkpoint folder: config.json and the safetensors weights (model.safetensors,
// or shards listed by model.safetensors.index.json), memory-mapped or read into memory, kept in
// their stored dtype. A folder with only these loads; loadModel (src/infer/load.ts) adds the
// tokenizer and the processor.
import { existsSync } from 'node:fs';
import path from 'node:path';

import { checkOptions, typeError } from '../errors.js';
import type { Tensor } from '../tensor.js';
import { findChatTemplate, readJson } from '../files.js';
import { readCheckpointWeights, readCheckpointWeightsAsync, type ReadOptions, type SafetensorsFile } from './safetensors.js';

export interface Checkpoint {
  /** The folder. */
  dir: string;
  /** config.json as parsed JSON (the model normalises it). */
  config: unknown;
  /** Every weight by its Hugging Face name: CPU views on the mapped (or read) files, stored dtype kept. */
  weights: Map<string, Tensor>;
  /** The safetensors __metadata__ of the files, merged. */
  metadata: Record<string, string>;
  /** The chat template, when the folder has one (chat_template.json or tokenizer_config.json). */
  chatTemplate?: string;
  /** Whether the weights are memory-mapped (they then depend on the files; see verify()). */
  mmap: boolean;
  /**
   * Throws an Error naming the file when a memory-mapped weight file was truncated or rewritten
   * in place since loading (nothing to check with mmap: false). generate() calls it per request.
   */
  verify(): void;
  /** Disposes every weight (the mappings go with the last view). */
  dispose(): void;
}

export interface CheckpointOptions extends ReadOptions {
  /**
   * config.json already read and checked by the caller (loadModel validates it before any weight
   * is touched, so that a hostile config fails before memory is spent).
   */
  config?: unknown;
}

function configOf(dir: string, o: CheckpointOptions): unknown {
  if (typeof dir !== 'string' || dir === '') throw typeError('dir', 'a checkpoint folder path', dir);
  if (o.config !== undefined) return o.config;
  const cfg = path.join(dir, 'config.json');
  if (!existsSync(cfg)) throw new RangeError(`Expected ${cfg}: a Hugging Face checkpoint folder has config.json and *.safetensors`);
  return readJson(cfg);
}

function assemble(dir: string, config: unknown, w: SafetensorsFile, mmap: boolean): Checkpoint {
  let chatTemplate: string | undefined;
  try { chatTemplate = findChatTemplate(dir); } catch (e) { w.dispose(); throw e; }
  const ck: Checkpoint = { dir, config, weights: w.tensors, metadata: w.metadata, mmap, verify: w.verify, dispose: w.dispose };
  if (chatTemplate !== undefined) ck.chatTemplate = chatTemplate;
  return ck;
}

/**
 * Loads config.json and the weights of a checkpoint folder, synchronously: mapped (`mmap: true`,
 * the default here) or read into memory on this thread (`mmap: false`).
 */
export function loadCheckpoint(dir: string, opts: CheckpointOptions = {}): Checkpoint {
  const o = checkOptions('options', opts);
  const config = configOf(dir, o);
  const mmap = o.mmap ?? true;
  return assemble(dir, config, readCheckpointWeights(dir, { mmap }), mmap);
}

/** loadCheckpoint with the reads of `mmap: false` on a worker thread. */
export async function loadCheckpointAsync(dir: string, opts: CheckpointOptions = {}): Promise<Checkpoint> {
  const o = checkOptions('options', opts);
  const config = configOf(dir, o);
  const mmap = o.mmap ?? true;
  return assemble(dir, config, await readCheckpointWeightsAsync(dir, { mmap }), mmap);
}
