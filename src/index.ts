// videothinker: public API.
export { Tensor, DTYPES, DTYPE_SIZE, expectTensor, indexTensor } from './tensor.js';
export type { DType, Device, TypedArrayOf, AnyTypedArray, RandomOptions } from './tensor.js';
export { backend, memoryStats, resetPeakMemory, setNumThreads, setSimdLevel } from './backend.js';
export type { BackendInfo, CudaDevice, MemoryStats, SimdLevel } from './backend.js';
export { matmul, matmulSync } from './kernels/matmul.js';
export type { MatmulOptions } from './kernels/matmul.js';
export { attention, attentionSync, attentionBackward, attentionBackwardSync } from './kernels/attention.js';
export type { AttentionOptions, AttentionResult, AttentionGrads } from './kernels/attention.js';
export { gatherLogprobs, gatherLogprobsSync, gatherLogprobsBackward, gatherLogprobsBackwardSync, linearLogprobs, linearLogprobsSync,
  linearLogprobsBackward, linearLogprobsBackwardSync } from './kernels/gather.js';
export type { Targets, GatherOptions, GatherBackwardOptions, LogprobsResult, LinearLogprobsOptions, LinearBackwardOptions,
  LinearBackwardResult, LinearTile } from './kernels/gather.js';
export { cdpoLoss, cdpoLossSync, groupAdvantages, groupAdvantagesSync, linearCdpo, linearCdpoSync, type AdvantageScale, type CdpoInputs, type CdpoLossArgs, type CdpoLossResult, type CdpoLossType, type CdpoMetrics, type CdpoOptions, type GroupAdvantagesOptions, type ImportanceSampling, type LinearCdpoArgs, type LinearCdpoResult } from './kernels/cdpo.js';
export { QwenNetwork, QwenOutputs, DEFAULT_LORA_TARGETS, KVCache, qwenConfigFromHF, canonicalName, parameterShapes, ropeIndex, windowIndex, visionPositions,
  loadCheckpoint, readSafetensors, writeSafetensors, readCheckpointWeights, MAX_HEADER_BYTES } from './model/index.js';
export type { QwenInputs, BackwardOptions, NetworkOptions, TrainOptions, LoraOptions, QwenConfig, QwenVisionConfig, LinearModule, GridThw, Checkpoint,
  SafetensorsFile } from './model/index.js';
export { QwenModel, loadModel, generate, generateStream, sampleToken, samplerRng } from './infer/index.js';
export type { LoadOptions, GenerateOptions, GeneratedSample, GenerateEvent, ChatNetwork } from './infer/index.js';
export * from './inputs/index.js';
