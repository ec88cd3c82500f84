// Writing a network as a Hugging Face checkpoint folder (config.json, model.safetensors or shards
// with model.safetensors.index.json, the tokenizer / chat template / processor files of the
// source folder) and its LoRA adapters as a PEFT adapter folder. Folders are written beside their
// destination and renamed into place, so an interrupted save leaves the old folder (or none).
import { copyFileSync, existsSync, mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';

import { checkInteger, checkOneOf, checkOptions, typeError } from '../errors.js';
import { Tensor, type DType } from '../tensor.js';
import { parameterShapes, type QwenConfig } from './config.js';
import { readSafetensors, writeSafetensors } from './safetensors.js';

export interface SaveOptions {
  /** dtype of the saved weights (default 'bf16', what Qwen2.5-VL checkpoints use). */
  dtype?: 'bf16' | 'f16' | 'f32';
  /** Shard above this many bytes per file (default 5e9, transformers' default). */
  maxShardBytes?: number;
}

/** What a network exposes for saving (QwenNetwork). */
export interface SaveSource {
  readonly config: QwenConfig;
  readonly weights: Map<string, Tensor>;
  parameters(): Map<string, Tensor>;
}

/** The small files of a checkpoint folder that go with its weights. */
export const CHECKPOINT_FILES = ['tokenizer.json', 'tokenizer_config.json', 'special_tokens_map.json', 'added_tokens.json', 'vocab.json', 'merges.txt',
  'chat_template.json', 'chat_template.jinja', 'preprocessor_config.json', 'video_preprocessor_config.json', 'generation_config.json'];

const TORCH_DTYPE: Record<string, string> = { bf16: 'bfloat16', f16: 'float16', f32: 'float32' };

/** A Hugging Face config.json (Qwen2_5_VLForConditionalGeneration, or Qwen2ForCausalLM without vision) for `cfg`. */
export function configToHF(cfg: QwenConfig, dtype: 'bf16' | 'f16' | 'f32' = 'bf16'): Record<string, unknown> {
  const D = cfg.hiddenSize / cfg.numHeads;
  const base: Record<string, unknown> = {
    architectures: [cfg.vision ? 'Qwen2_5_VLForConditionalGeneration' : 'Qwen2ForCausalLM'], model_type: cfg.vision ? 'qwen2_5_vl' : 'qwen2',
    hidden_act: 'silu', hidden_size: cfg.hiddenSize, intermediate_size: cfg.intermediateSize, num_attention_heads: cfg.numHeads,
    num_hidden_layers: cfg.numLayers, num_key_value_heads: cfg.numKvHeads, rms_norm_eps: cfg.rmsNormEps, rope_theta: cfg.ropeTheta,
    tie_word_embeddings: cfg.tieWordEmbeddings, vocab_size: cfg.vocabSize, torch_dtype: TORCH_DTYPE[dtype], use_cache: true,
    image_token_id: cfg.imageTokenId, video_token_id: cfg.videoTokenId, vision_start_token_id: cfg.visionStartTokenId,
  };
  if (cfg.mropeSection[0] !== D / 2) base.rope_scaling = { type: 'mrope', mrope_section: [...cfg.mropeSection] };
  const v = cfg.vision;
  if (v) {
    base.vision_config = {
      model_type: 'qwen2_5_vl', depth: v.depth, hidden_act: 'silu', hidden_size: v.hiddenSize, intermediate_size: v.intermediateSize,
      num_heads: v.numHeads, in_chans: v.inChannels, out_hidden_size: v.outHiddenSize, patch_size: v.patchSize, spatial_merge_size: v.spatialMergeSize,
      spatial_patch_size: v.patchSize, temporal_patch_size: v.temporalPatchSize, tokens_per_second: v.tokensPerSecond, window_size: v.windowSize,
      fullatt_block_indexes: [...v.fullattBlockIndexes],
    };
  }
  return base;
}

/** Writes `files` (a callback given the temporary folder) and renames the folder to `dir`. */
export function writeFolderAtomic(dir: string, write: (tmp: string) => void): void {
  if (typeof dir !== 'string' || dir === '') throw typeError('dir', 'a folder path', dir);
  const abs = path.resolve(dir);
  mkdirSync(path.dirname(abs), { recursive: true });
  const tmp = `${abs}.tmp-${process.pid}-${Date.now()}`;
  mkdirSync(tmp);
  try {
    write(tmp);
    if (existsSync(abs)) {
      // rename() cannot replace a non-empty folder: move the old one aside first, then drop it.
      const old = `${abs}.old-${process.pid}-${Date.now()}`;
      renameSync(abs, old);
      renameSync(tmp, abs);
      rmSync(old, { recursive: true, force: true });
    } else {
      renameSync(tmp, abs);
    }
  } catch (e) {
    rmSync(tmp, { recursive: true, force: true });
    throw e;
  }
}

function jsonFile(file: string, value: unknown): void {
  writeFileSync(file, JSON.stringify(value, null, 2) + '\n');
}

/**
 * Saves the network's weights (the trained values of trainable parameters, the stored ones of
 * frozen parameters; LoRA adapters are not folded in: see saveAdapter / mergeAdapter) as a
 * Hugging Face folder. `sourceDir` is the folder the model came from (its config.json and
 * tokenizer/processor files are carried over).
 */
export function saveCheckpoint(net: SaveSource, dir: string, opts: SaveOptions = {}, sourceDir?: string): void {
  const o = checkOptions('options', opts);
  const dtype = checkOneOf('dtype', o.dtype ?? 'bf16', ['bf16', 'f16', 'f32']) as DType;
  const maxShard = o.maxShardBytes === undefined ? 5e9 : checkInteger('maxShardBytes', o.maxShardBytes, 1);
  const params = net.parameters();
  try {
    const { shapes } = parameterShapes(net.config);
    const names = [...shapes.keys()];
    const source = (name: string) => params.get(name) ?? net.weights.get(name);
    for (const n of names) if (!source(n)) throw new RangeError(`Expected weight ${n} in the model but it is missing`);
    // Shards in name order, each at most maxShard bytes (a single larger tensor gets its own).
    const shards: string[][] = [];
    let cur: string[] = [], bytes = 0;
    const size = (n: string) => shapes.get(n)!.reduce((a, b) => a * b, 1) * (dtype === 'f32' ? 4 : 2);
    for (const n of names) {
      if (cur.length && bytes + size(n) > maxShard) { shards.push(cur); cur = []; bytes = 0; }
      cur.push(n); bytes += size(n);
    }
    if (cur.length) shards.push(cur);
    writeFolderAtomic(dir, (tmp) => {
      const files = shards.length === 1 ? ['model.safetensors'] : shards.map((_, i) => `model-${String(i + 1).padStart(5, '0')}-of-${String(shards.length).padStart(5, '0')}.safetensors`);
      const weightMap: Record<string, string> = {};
      let total = 0;
      shards.forEach((s, i) => {
        const out = new Map<string, Tensor>();
        const owned: Tensor[] = [];
        try {
          for (const n of s) {
            const t = source(n)!;
            // Saved with the Hugging Face shape (the patch embedding's Conv3d weight is 5-D).
            let c = t.dtype === dtype ? t : t.to(dtype);
            if (c !== t) owned.push(c);
            const want = shapes.get(n)!;
            if (c.shape.join() !== want.join()) { c = c.reshape(want); owned.push(c); }
            out.set(n, c);
            weightMap[n] = files[i]!;
            total += c.numel * (dtype === 'f32' ? 4 : 2);
          }
          writeSafetensors(path.join(tmp, files[i]!), out, { format: 'pt' });
        } finally { for (const t of owned) t.dispose(); }
      });
      if (shards.length > 1) jsonFile(path.join(tmp, 'model.safetensors.index.json'), { metadata: { total_size: total }, weight_map: weightMap });
      let config: Record<string, unknown> = configToHF(net.config, dtype as 'bf16');
      const srcCfg = sourceDir ? path.join(sourceDir, 'config.json') : undefined;
      if (srcCfg && existsSync(srcCfg)) {
        try { config = { ...(JSON.parse(readFileSync(srcCfg, 'utf8')) as Record<string, unknown>), torch_dtype: TORCH_DTYPE[dtype] }; } catch { /* keep the generated one */ }
      }
      jsonFile(path.join(tmp, 'config.json'), config);
      if (sourceDir && path.resolve(sourceDir) !== path.resolve(dir)) {
        for (const f of CHECKPOINT_FILES) if (existsSync(path.join(sourceDir, f))) copyFileSync(path.join(sourceDir, f), path.join(tmp, f));
      } else if (sourceDir) {
        // Saving over the source folder: its small files are read before the old folder goes away.
        for (const f of CHECKPOINT_FILES) if (existsSync(path.join(sourceDir, f))) writeFileSync(path.join(tmp, f), readFileSync(path.join(sourceDir, f)));
      }
    });
  } finally { /* parameters() are the model's own views */ }
}

/** PEFT's prefix of saved adapter tensors. */
const PEFT_PREFIX = 'base_model.model.';

export interface AdapterInfo { rank: number; alpha: number; targets: string[]; tensors: Map<string, Tensor>; dispose(): void }

/** Writes the LoRA adapters as a PEFT adapter folder (adapter_config.json + adapter_model.safetensors). */
export function saveAdapter(net: SaveSource & { trainOptions: { lora?: { rank: number; alpha: number; targets: readonly string[] } } }, dir: string, baseModel = ''): void {
  const lora = net.trainOptions.lora;
  if (!lora) throw new TypeError('Expected a model with LoRA adapters (loadModel(dir, { train: { lora: { rank } } }))');
  const params = net.parameters();
  try {
    const out = new Map<string, Tensor>();
    for (const [n, t] of params) if (/\.lora_[AB]\.weight$/.test(n)) out.set(PEFT_PREFIX + n, t);
    writeFolderAtomic(dir, (tmp) => {
      writeSafetensors(path.join(tmp, 'adapter_model.safetensors'), out, { format: 'pt' });
      jsonFile(path.join(tmp, 'adapter_config.json'), {
        peft_type: 'LORA', task_type: 'CAUSAL_LM', base_model_name_or_path: baseModel, r: lora.rank, lora_alpha: lora.alpha, lora_dropout: 0,
        target_modules: [...lora.targets], bias: 'none', fan_in_fan_out: false, inference_mode: true, init_lora_weights: true,
        modules_to_save: null, use_rslora: false, use_dora: false,
      });
    });
  } finally { /* parameters() are the model's own views */ }
}

/** Reads a PEFT adapter folder: its rank, alpha, target modules and tensors (PEFT's prefix removed). */
export function readAdapter(dir: string): AdapterInfo {
  const cf = path.join(dir, 'adapter_config.json'), wf = path.join(dir, 'adapter_model.safetensors');
  if (!existsSync(cf) || !existsSync(wf)) throw new RangeError(`Expected a PEFT adapter folder with adapter_config.json and adapter_model.safetensors but ${dir} has not both`);
  let cfg: Record<string, unknown>;
  try { cfg = JSON.parse(readFileSync(cf, 'utf8')) as Record<string, unknown>; } catch (e) { throw new RangeError(`Invalid ${cf}: ${(e as Error).message}`); }
  if (cfg.peft_type !== undefined && cfg.peft_type !== 'LORA') throw new RangeError(`Expected peft_type 'LORA' in ${cf} but received ${String(cfg.peft_type)}`);
  const rank = checkInteger(`${cf}: r`, cfg.r, 1, 4096);
  const alpha = typeof cfg.lora_alpha === 'number' && cfg.lora_alpha > 0 ? cfg.lora_alpha : rank;
  if (typeof cfg.lora_dropout === 'number' && cfg.lora_dropout !== 0) { /* dropout is a training-time setting: the adapter's values do not depend on it */ }
  const tm = cfg.target_modules;
  const targets = Array.isArray(tm) ? tm.map(String) : typeof tm === 'string' ? [tm] : [];
  if (targets.length === 0) throw new RangeError(`Expected target_modules in ${cf}`);
  const file = readSafetensors(wf);
  const tensors = new Map<string, Tensor>();
  for (const [k, t] of file.tensors) tensors.set(k.startsWith(PEFT_PREFIX) ? k.slice(PEFT_PREFIX.length) : k, t);
  return { rank, alpha, targets, tensors, dispose: file.dispose };
}
