// loadModel(dir): a Qwen2.5-VL (or text-only Qwen2) checkpoint folder in Hugging Face layout as a
// QwenModel. The checkpoint loader (src/model/checkpoint.ts) maps config.json and the safetensors
// weights; a folder with only these two loads (the low-level forward needs nothing more).
// tokenizer.json (+ tokenizer_config.json, chat template, generation_config.json) gives
// model.tokenizer, and a vision model gets model.processor (preprocessor_config.json or the
// defaults): together they let generate() take a question.
import { checkOptions, typeError } from '../errors.js';
import { QwenProcessor } from '../inputs/processor.js';
import { QwenTokenizer } from '../inputs/tokenizer.js';
import { loadCheckpoint, type Checkpoint } from '../model/checkpoint.js';
import { qwenConfigFromHF } from '../model/config.js';
import type { TrainOptions } from '../model/qwen.js';
import { QwenModel } from './model.js';

export interface LoadOptions {
  /**
   * Train the model: an f32 master copy of the trainable parameters (bf16/f16 checkpoints are
   * widened) and their gradients. `true` trains every parameter; options freeze name prefixes,
   * add LoRA adapters (then only they train) and choose activation recomputation.
   */
  train?: boolean | TrainOptions;
}

/**
 * Loads the checkpoint folder `dir` (config.json + *.safetensors, sharded or not; weights are
 * memory-mapped and, for inference, stay in their stored dtype) as a QwenModel. The loader's
 * result (config, metadata, chat template) is kept as `model.checkpoint`; model.dispose() does
 * not unmap the weights, model.checkpoint.dispose() does.
 */
export async function loadModel(dir: string, opts: LoadOptions = {}): Promise<QwenModel & { checkpoint: Checkpoint }> {
  if (typeof dir !== 'string' || dir === '') throw typeError('dir', 'a checkpoint folder path', dir);
  checkOptions('options', opts);
  const ck = loadCheckpoint(dir);
  try {
    const config = qwenConfigFromHF(ck.config);
    const model = await QwenModel.create(config, ck.weights, { ...(opts.train !== undefined ? { train: opts.train } : {}) }) as QwenModel & { checkpoint: Checkpoint };
    model.checkpoint = ck;
    const tokenizer = QwenTokenizer.fromDir(dir);
    if (tokenizer) model.tokenizer = tokenizer;
    if (model.config.vision) model.processor = QwenProcessor.fromDir(dir);
    return model;
  } catch (e) {
    ck.dispose();
    throw e;
  }
}
