// The network and its checkpoint files.
export { QwenNetwork, QwenOutputs, DEFAULT_LORA_TARGETS } from './qwen.js';
export type { QwenInputs, BackwardOptions, NetworkOptions, TrainOptions, LoraOptions } from './qwen.js';
export { KVCache } from './cache.js';
export { qwenConfigFromHF, canonicalName, parameterShapes } from './config.js';
export type { QwenConfig, QwenVisionConfig, LinearModule } from './config.js';
export { ropeIndex, windowIndex, visionPositions, toGrids } from './positions.js';
export type { GridThw } from './positions.js';
export { loadCheckpoint, loadCheckpointAsync, type CheckpointOptions } from './checkpoint.js';
export type { Checkpoint } from './checkpoint.js';
export { readSafetensors, readSafetensorsAsync, writeSafetensors, readCheckpointWeights, readCheckpointWeightsAsync, MAX_HEADER_BYTES, type ReadOptions } from './safetensors.js';
export type { SafetensorsFile } from './safetensors.js';
