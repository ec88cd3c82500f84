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
import { readAdapter, type AdapterInfo } from '../model/save.js';
import { QwenModel } from './model.js';

export interface LoadOptions {
  /**
   * Train the model: an f32 master copy of the trainable parameters (bf16/f16 checkpoints are
   * widened) and their gradients. `true` trains every parameter; options freeze name prefixes,
   * add LoRA adapters (then only they train) and choose activation recomputation.
   */
  train?: boolean | TrainOptions;
  /**
   * A PEFT LoRA adapter folder (adapter_config.json + adapter_model.safetensors) to load: the
   * model gets its adapters (trainable, the rest frozen, unless `train` says more).
   */
  adapter?: string;
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
    let train = opts.train;
    let adapter: AdapterInfo | undefined;
    if (opts.adapter !== undefined) {
      if (typeof opts.adapter !== 'string' || opts.adapter === '') throw typeError('adapter', 'a PEFT adapter folder path', opts.adapter);
      adapter = readAdapter(opts.adapter);
      // The modules the file adapts, by full name: the model gets adapters on exactly these.
      const modules = [...new Set([...adapter.tensors.keys()].filter((k) => k.endsWith('.lora_A.weight')).map((k) => k.slice(0, -'.lora_A.weight'.length)))];
      const base = typeof train === 'object' ? train : {};
      train = { ...base, lora: { rank: adapter.rank, alpha: adapter.alpha, targets: modules } };
    }
    let model: QwenModel & { checkpoint: Checkpoint };
    try {
      model = await QwenModel.create(config, ck.weights, { ...(train !== undefined ? { train } : {}) }) as QwenModel & { checkpoint: Checkpoint };
      if (adapter) {
        const params = model.parameters();
        for (const [name, t] of params) {
          const src = adapter.tensors.get(name);
          if (!src) throw new RangeError(`Expected ${name} in the adapter ${opts.adapter} but it is missing`);
          if (src.shape.join() !== t.shape.join()) throw new RangeError(`Expected ${name} of shape [${t.shape.join(', ')}] in the adapter but received [${src.shape.join(', ')}]`);
          const f = src.dtype === 'f32' ? src : src.to('f32');
          (t.data as Float32Array).set(f.data as Float32Array);
          if (f !== src) f.dispose();
        }
        for (const k of adapter.tensors.keys()) {
          if (!params.has(k)) throw new RangeError(`The adapter ${opts.adapter} has ${k}, which this model has no parameter for (only the linear layers of both towers take LoRA here)`);
        }
      }
    } finally { adapter?.dispose(); }
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
