// videothinker: public API.
export { Tensor, DTYPES, DTYPE_SIZE, expectTensor, indexTensor } from './tensor.js';
export type { DType, Device, TypedArrayOf, AnyTypedArray, RandomOptions } from './tensor.js';
export { backend, matmulPrecision, memoryStats, resetPeakMemory, setMatmulPrecision, setNumThreads, setSimdLevel } from './backend.js';
export type { BackendInfo, CudaDevice, MemoryStats, SimdLevel } from './backend.js';
export { matmul, matmulSync } from './kernels/matmul.js';
export type { MatmulOptions } from './kernels/matmul.js';
export { attention, attentionSync, attentionBackward, attentionBackwardSync } from './kernels/attention.js';
export type { AttentionOptions, AttentionResult, AttentionGrads } from './kernels/attention.js';
export { gatherLogprobs, gatherLogprobsSync, gatherLogprobsBackward, gatherLogprobsBackwardSync, linearLogprobs, linearLogprobsSync, linearLogprobsWithGrad, linearLogprobsWithGradSync,
  linearLogprobsBackward, linearLogprobsBackwardSync } from './kernels/gather.js';
export type { Targets, GatherOptions, GatherBackwardOptions, LogprobsResult, LinearLogprobsOptions, LinearBackwardOptions, LinearWithGradResult,
  LinearBackwardResult, LinearTile, Precision } from './kernels/gather.js';
export { cdpoLoss, cdpoLossSync, groupAdvantages, groupAdvantagesSync, linearCdpo, linearCdpoSync, type AdvantageScale, type CdpoInputs, type CdpoLossArgs, type CdpoLossResult, type CdpoLossType, type CdpoMetrics, type CdpoOptions, type GroupAdvantagesOptions, type ImportanceSampling, type LinearCdpoArgs, type LinearCdpoResult } from './kernels/cdpo.js';
export { QwenNetwork, QwenOutputs, DEFAULT_LORA_TARGETS, KVCache, qwenConfigFromHF, canonicalName, parameterShapes, ropeIndex, windowIndex, visionPositions,
  loadCheckpoint, loadCheckpointAsync, readSafetensors, readSafetensorsAsync, writeSafetensors, readCheckpointWeights, readCheckpointWeightsAsync,
  MAX_HEADER_BYTES } from './model/index.js';
export type { QwenInputs, BackwardOptions, NetworkOptions, TrainOptions, LoraOptions, QwenConfig, QwenVisionConfig, LinearModule, GridThw, Checkpoint,
  CheckpointOptions, ReadOptions, SafetensorsFile } from './model/index.js';
export { QwenModel, loadModel, generate, generateStream, rollout, rolloutSteps, sampleRows } from './infer/index.js';
export type { LoadOptions, GenerateOptions, GeneratedSample, GenerateEvent, ChatNetwork, Rollout, RolloutPrompt, RolloutOptions, RolloutToken, SamplingOptions } from './infer/index.js';
export * from './inputs/index.js';
export { synth, makeScene, makeQuestion, renderScene, raceOrder, checkScene, variantScene, splitTypes, synthVocabularyTexts, COLOURS, PALETTES, DEFAULT_SCENE, TEXT as SYNTH_TEXT, type SynthOptions, type SynthResult, type SynthRow, type SynthQuestion, type SynthSplitInfo, type Scene, type SceneObject, type SceneOptions, type QuestionType, type Colour } from './data/synth.js';
export { buildWordTokenizer, writeTokenizerFiles, wordPieces, QWEN_SPECIAL_TOKENS, REASONING_TOKENS, WORD_PATTERN, type WordTokenizer } from './data/tokenizer.js';
export { buildPrompt, PROMPT_SUFFIX, type PromptFields } from './data/prompt.js';
export { accuracyReward, formatReward, extractAnswer, answerSet, asSolution } from './data/answers.js';
export { readDataset, resolveMedia, rowSource, describeBadRows, formatRanges, type DatasetRow, type LoadedRow, type DatasetSkips, type ReadDatasetOptions, type BadRow, type BadRowReason } from './data/dataset.js';
export { evaluate, formatReport, writeReport, scoreItem, summarize, EVAL_VIDEO_OPTIONS, type EvalModel, type EvalRequest, type EvalSample, type EvaluateOptions, type EvalReport, type EvalItem, type GroupStats } from './data/evaluate.js';
export { initModel, PRESETS, hfConfig, weightSpecs, type InitOptions, type InitResult, type ModelShape } from './init.js';
export { decodeFrameBatch, type BatchSpec, type Frame } from './data/frames.js';
export * from './train/index.js';
export { saveCheckpoint, saveAdapter, readAdapter, configToHF, writeFolderAtomic, type SaveOptions } from './model/save.js';
