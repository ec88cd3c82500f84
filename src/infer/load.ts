// loadModel(dir): a Qwen2.5-VL (or text-only Qwen2) checkpoint folder in Hugging Face layout as a
// QwenModel. The checkpoint loader (src/model/checkpoint.ts) maps config.json and the safetensors
// weights; a folder with only these two loads (the low-level forward needs nothing more).
// tokenizer.json (+ tokenizer_config.json, chat template, generation_config.json) gives
// model.tokenizer, and a vision model gets model.processor (preprocessor_config.json or the
// defaults): together they let generate() take a question.
import { existsSync } from 'node:fs';
import path from 'node:path';

import { checkBoolean, checkOptions, typeError } from '../errors.js';
import { readJson } from '../files.js';
import { QwenProcessor } from '../inputs/processor.js';
import { QwenTokenizer } from '../inputs/tokenizer.js';
import { loadCheckpointAsync, type Checkpoint } from '../model/checkpoint.js';
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
  /**
   * Memory-map the weight files (default: true for inference, false with `train`). Mapped weights
   * load at once and share the page cache, but the files must not be truncated or rewritten in
   * place while the model lives (SIGBUS; generate() checks the files before each request and
   * refuses changed ones). false reads them into memory (on a worker thread): a training run of
   * hours then does not depend on files another process may overwrite.
   */
  mmap?: boolean;
}

/**
 * Loads the checkpoint folder `dir` (config.json + *.safetensors, sharded or not; weights are
 * memory-mapped or read (`mmap`) and, for inference, stay in their stored dtype) as a QwenModel.
 * config.json is validated before any weight is read; a mapped shard changed in place while the
 * later ones loaded is an error. The loader's
 * result (config, metadata, chat template) is kept as `model.checkpoint`; model.dispose() does
 * not unmap the weights, model.checkpoint.dispose() does.
 */
export async function loadModel(dir: string, opts: LoadOptions = {}): Promise<QwenModel & { checkpoint: Checkpoint }> {
  if (typeof dir !== 'string' || dir === '') throw typeError('dir', 'a checkpoint folder path', dir);
  checkOptions('options', opts);
  const mmap = opts.mmap === undefined ? (opts.train === undefined || opts.train === false) : checkBoolean('options.mmap', opts.mmap);
  // config.json first: a hostile one (num_hidden_layers: 1e9) fails before any weight is read.
  const cfgFile = path.join(dir, 'config.json');
  if (!existsSync(cfgFile)) throw new RangeError(`Expected ${cfgFile}: a Hugging Face checkpoint folder has config.json and *.safetensors`);
  const json = readJson(cfgFile);
  const config = qwenConfigFromHF(json);
  const ck = await loadCheckpointAsync(dir, { config: json, mmap });
  let model: (QwenModel & { checkpoint: Checkpoint }) | undefined;
  let adapter: AdapterInfo | undefined;
  try {
    let train = opts.train;
    if (opts.adapter !== undefined) {
      if (typeof opts.adapter !== 'string' || opts.adapter === '') throw typeError('adapter', 'a PEFT adapter folder path', opts.adapter);
      adapter = readAdapter(opts.adapter);
      // The modules the file adapts, by full name: the model gets adapters on exactly these.
      const modules = [...new Set([...adapter.tensors.keys()].filter((k) => k.endsWith('.lora_A.weight')).map((k) => k.slice(0, -'.lora_A.weight'.length)))];
      const base = typeof train === 'object' ? train : {};
      train = { ...base, lora: { rank: adapter.rank, alpha: adapter.alpha, targets: modules } };
    }
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
    model.checkpoint = ck;
    const tokenizer = QwenTokenizer.fromDir(dir);
    if (tokenizer) model.tokenizer = tokenizer;
    if (model.config.vision) model.processor = QwenProcessor.fromDir(dir);
    ck.verify();
    return model;
  } catch (e) {
    model?.dispose();
    ck.dispose();
    throw e;
  } finally {
    adapter?.dispose();
  }
}
