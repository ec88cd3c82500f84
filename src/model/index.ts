// loadModel(dir): a Qwen2.5-VL (or text-only Qwen2) checkpoint folder in Hugging Face layout as a
// QwenModel. config.json is normalised by qwenConfigFromHF; the weights come from the
// checkpoint loader (src/model/checkpoint.ts: safetensors, sharded or not, memory-mapped, kept in
// their stored dtype), so a folder with only config.json and weights loads.
import { readFile } from 'node:fs/promises';
import path from 'node:path';

import { typeError } from '../errors.js';
import type { Tensor } from '../tensor.js';
import { QwenModel, qwenConfigFromHF } from './qwen.js';

export { QwenModel, KVCache, qwenConfigFromHF, ropeIndex, windowIndex, visionPositions, canonicalName } from './qwen.js';
export type { QwenConfig, QwenVisionConfig, QwenInputs, QwenOutputs, GridThw } from './qwen.js';
export { generate, generateStream, sampleToken, samplerRng } from './generate.js';
export type { GenerateOptions, GeneratedSample, GenerateEvent } from './generate.js';

/** What the checkpoint loader returns (the fields loadModel uses). */
interface Checkpoint { weights: Map<string, Tensor> }
type CheckpointModule = { loadCheckpoint(dir: string): Checkpoint | Promise<Checkpoint> };

// A variable specifier: the loader is another module of this package, resolved at run time.
const CHECKPOINT_MODULE = './checkpoint.js';

/**
 * Loads the checkpoint folder `dir` (config.json + *.safetensors) as a QwenModel. The loader's
 * result (tokenizer, processor and chat template where the folder has them) is kept as
 * `model.checkpoint`.
 */
export async function loadModel(dir: string): Promise<QwenModel & { checkpoint: Checkpoint }> {
  if (typeof dir !== 'string' || dir === '') throw typeError('dir', 'a checkpoint folder path', dir);
  const cfgPath = path.join(dir, 'config.json');
  let json: unknown;
  try {
    json = JSON.parse(await readFile(cfgPath, 'utf8'));
  } catch (e) {
    throw new Error(`Cannot read ${cfgPath}: ${(e as Error).message}. Expected a Hugging Face checkpoint folder (config.json and *.safetensors)`);
  }
  const config = qwenConfigFromHF(json);
  const mod = (await import(CHECKPOINT_MODULE)) as CheckpointModule;
  const ck = await mod.loadCheckpoint(dir);
  if (!ck || !(ck.weights instanceof Map)) throw new TypeError(`Expected loadCheckpoint(${dir}) to give a Map of weights`);
  const model = new QwenModel(config, ck.weights) as QwenModel & { checkpoint: Checkpoint };
  model.checkpoint = ck;
  return model;
}
