// What turns a question about a video into model inputs: tokenizer and chat template, the image /
// video processor, ffmpeg decoding, and the prompt that ties them together.
export { QwenTokenizer, DEFAULT_CHAT_TEMPLATE } from './tokenizer.js';
export type { ChatMessage, ChatContent, TokenizerFiles } from './tokenizer.js';
export { preparePrompt } from './prompt.js';
export type { ChatRequest, PreparedPrompt, VideoSource, ImageSource } from './prompt.js';
export { QwenProcessor, smartResize, videoPixelBounds, resizeBicubic, processorConfigFromHF, DEFAULT_PROCESSOR_CONFIG, VIDEO_MIN_PIXELS, VIDEO_MAX_PIXELS, VIDEO_TOTAL_PIXELS } from './processor.js';
export type { ProcessorConfig, RGBFrame, RGBImage, VisionInputs, VideoInputs, ImageOptions, VideoOptions } from './processor.js';
export { VIDEOTHINKER_VIDEO_OPTIONS, decodeVideo, decodeImage, probeVideo, planFrames, smartNframes, sampleFrameIndices } from './video.js';
export type { DecodeOptions, DecodedVideo, DecodeStart, VideoProbe, SampleOptions, FramePlan } from './video.js';
