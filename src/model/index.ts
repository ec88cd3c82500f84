// loadModel(dir): a Qwen2.5-VL (or text-only Qwen2) checkpoint folder in Hugging Face layout as a
// QwenModel. The checkpoint loader (src/model/checkpoint.ts) maps config.json and the safetensors
// weights; qwenConfigFromHF normalises the config; a folder with only these two loads.
import { typeError } from '../errors.js';
import { loadCheckpoint, type Checkpoint } from './checkpoint.js';
import { QwenModel, qwenConfigFromHF } from './qwen.js';

export { QwenModel, KVCache, qwenConfigFromHF, ropeIndex, windowIndex, visionPositions, canonicalName } from './qwen.js';
export type { QwenConfig, QwenVisionConfig, QwenInputs, QwenOutputs, GridThw } from './qwen.js';
export { generate, generateStream, sampleToken, samplerRng } from './generate.js';
export type { GenerateOptions, GeneratedSample, GenerateEvent } from './generate.js';

/**
 * Loads the checkpoint folder `dir` (config.json + *.safetensors, sharded or not; weights are
 * memory-mapped and stay in their stored dtype) as a QwenModel. The loader's result (config,
 * metadata, chat template) is kept as `model.checkpoint`; model.dispose() does not unmap the
 * weights, model.checkpoint.dispose() does.
 */
export async function loadModel(dir: string): Promise<QwenModel & { checkpoint: Checkpoint }> {
  if (typeof dir !== 'string' || dir === '') throw typeError('dir', 'a checkpoint folder path', dir);
  const ck = loadCheckpoint(dir);
  try {
    const model = new QwenModel(qwenConfigFromHF(ck.config), ck.weights) as QwenModel & { checkpoint: Checkpoint };
    model.checkpoint = ck;
    return model;
  } catch (e) {
    ck.dispose();
    throw e;
  }
}
