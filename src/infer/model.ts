// QwenModel: the network (src/model) with the checkpoint's tokenizer and processor, so that it
// can answer a question about a video. The network knows nothing of sampling or prompts; this
// layer adds them.
import type { QwenProcessor } from '../inputs/processor.js';
import type { QwenTokenizer } from '../inputs/tokenizer.js';
import type { Checkpoint } from '../model/checkpoint.js';
import { QwenNetwork } from '../model/qwen.js';
import { saveCheckpoint, type SaveOptions } from '../model/save.js';
import { generate, generateStream, type GenerateEvent, type GenerateOptions, type GeneratedSample } from './generate.js';

export class QwenModel extends QwenNetwork {
  /** The checkpoint's tokenizer and chat template (set by loadModel when the folder has tokenizer.json). */
  tokenizer?: QwenTokenizer;
  /** The image / video processor (loadModel: from preprocessor_config.json, or the defaults). */
  processor?: QwenProcessor;
  /** The folder the model was loaded from (loadModel sets it). */
  checkpoint?: Checkpoint;

  /**
   * Writes a Hugging Face checkpoint folder: config.json, model.safetensors (sharded with an index
   * above maxShardBytes), and the source folder's tokenizer, chat template and processor files;
   * built beside `dir` and renamed into place. LoRA adapters are saved with saveAdapter (or
   * folded in first with mergeAdapter).
   */
  async save(dir: string, opts: SaveOptions = {}): Promise<void> {
    saveCheckpoint(this, dir, opts, this.checkpoint?.dir);
  }

  /**
   * Samples tokens for a prompt: token ids with pixel tensors, or a question (`prompt` /
   * `messages` with `video` / `images`) when the model has a tokenizer. n samples share one
   * prefill; off the event loop; AbortSignal.
   */
  generate(opts: GenerateOptions): Promise<GeneratedSample[]> {
    return generate(this, opts);
  }
  /** The streaming form of generate(): one event per token as it is produced. */
  generateStream(opts: GenerateOptions): AsyncGenerator<GenerateEvent, void, undefined> {
    return generateStream(this, opts);
  }
}
