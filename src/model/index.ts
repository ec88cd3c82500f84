// loadModel(dir): a Qwen2.5-VL (or text-only Qwen2) checkpoint folder in Hugging Face layout as a
// QwenModel. The checkpoint loader (src/model/checkpoint.ts) maps config.json and the safetensors
// weights; qwenConfigFromHF normalises the config; a folder with only these two loads (the
// low-level forward needs nothing more). tokenizer.json (+ tokenizer_config.json, chat template,
// generation_config.json) gives model.tokenizer, and a vision model gets model.processor
// (preprocessor_config.json or the defaults): together they let generate() take a question.
import { typeError } from '../errors.js';
import { loadCheckpoint, type Checkpoint } from './checkpoint.js';
import { QwenProcessor } from './processor.js';
import { QwenModel, qwenConfigFromHF } from './qwen.js';
import { QwenTokenizer } from './tokenizer.js';

export { QwenModel, KVCache, qwenConfigFromHF, ropeIndex, windowIndex, visionPositions, canonicalName } from './qwen.js';
export type { QwenConfig, QwenVisionConfig, QwenInputs, QwenOutputs, GridThw } from './qwen.js';
export { generate, generateStream, sampleToken, samplerRng } from './generate.js';
export type { GenerateOptions, GeneratedSample, GenerateEvent } from './generate.js';
export { QwenTokenizer, DEFAULT_CHAT_TEMPLATE } from './tokenizer.js';
export type { ChatMessage, ChatContent, TokenizerFiles } from './tokenizer.js';
export { preparePrompt } from './prompt.js';
export { QwenProcessor, smartResize, videoPixelBounds, resizeBicubic, processorConfigFromHF, DEFAULT_PROCESSOR_CONFIG, VIDEO_MIN_PIXELS, VIDEO_MAX_PIXELS, VIDEO_TOTAL_PIXELS } from './processor.js';
export type { ProcessorConfig, RGBFrame, RGBImage, VisionInputs, VideoInputs, ImageOptions, VideoOptions } from './processor.js';
export { VIDEOTHINKER_VIDEO_OPTIONS, decodeVideo, decodeImage, probeVideo, planFrames, smartNframes, sampleFrameIndices } from './video.js';
export type { DecodeOptions, DecodedVideo, DecodeStart, VideoProbe, SampleOptions, FramePlan } from './video.js';
export type { ChatRequest, PreparedPrompt, VideoSource, ImageSource } from './prompt.js';

/**
 * Loads the checkpoint folder `dir` (config.json + *.safetensors, sharded or not; weights are
 * memory-mapped and stay in their stored dtype) as a QwenModel. The loader's result (config,
 * metadata, chat template) is kept as `model.checkpoint`; model.dispose() does not unmap the
 * weights, model.checkpoint.dispose() does. `model.tokenizer` is set when the folder has
 * tokenizer.json, `model.processor` when the model has a vision tower.
 */
export async function loadModel(dir: string): Promise<QwenModel & { checkpoint: Checkpoint }> {
  if (typeof dir !== 'string' || dir === '') throw typeError('dir', 'a checkpoint folder path', dir);
  const ck = loadCheckpoint(dir);
  try {
    const model = new QwenModel(qwenConfigFromHF(ck.config), ck.weights) as QwenModel & { checkpoint: Checkpoint };
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
