// Running a model: loading a checkpoint folder, sampling, streaming.
export { QwenModel } from './model.js';
export { loadModel } from './load.js';
export type { LoadOptions } from './load.js';
export { generate, generateStream, sampleToken, samplerRng } from './generate.js';
export type { GenerateOptions, GeneratedSample, GenerateEvent, ChatNetwork } from './generate.js';
