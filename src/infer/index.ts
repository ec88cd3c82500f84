// Running a model: loading a checkpoint folder, sampling, streaming.
export { QwenModel } from './model.js';
export { loadModel } from './load.js';
export type { LoadOptions } from './load.js';
export { generate, generateStream } from './generate.js';
export { rollout, rolloutSteps, sampleRows } from './rollout.js';
export type { Rollout, RolloutPrompt, RolloutOptions, RolloutToken, SamplingOptions } from './rollout.js';
export type { GenerateOptions, GeneratedSample, GenerateEvent, ChatNetwork } from './generate.js';
