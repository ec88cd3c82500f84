// Training: the optimizer, schedules, the shared loop with checkpoints and resume, and the trainers.
export { AdamW, clipGradNorm, DEFAULT_NO_DECAY } from './optimizer.js';
export type { AdamWOptions, StepResult } from './optimizer.js';
export { schedule } from './schedule.js';
export type { ScheduleKind, ScheduleOptions } from './schedule.js';
export { trainLoop, latestCheckpoint } from './trainer.js';
export type { LoopOptions, LoopResult, StepMetrics, TrainTask } from './trainer.js';
export { trainSft, loadRows, readRows, reportBadRows, epochOrder } from './sft.js';
export type { SftOptions, SftResult, DataOptions, BadRowPolicy } from './sft.js';
export { trainGrpo, trainBias, trainCdpo, advantagesOf } from './rl.js';
export type { RlOptions } from './rl.js';
export { accuracyFor, rougeL, evalReward, rewardName } from './rewards.js';
export type { Reward, RewardFn, RewardContext, BuiltinReward } from './rewards.js';
export { plotRuns, readMetrics, renderSvg, writeTextAtomic, DEFAULT_PLOT_METRICS } from './plot.js';
export type { PlotOptions } from './plot.js';
export { evaluateBatched } from './evalbatch.js';
export type { BatchEvalOptions } from './evalbatch.js';
export { reproduce, readResults, formatTable, frontierSvg, REPRODUCE_RECIPES } from './reproduce.js';
export type { ReproduceOptions, ReproduceRecipe, ReproduceResult, ReproduceResults, MethodScores, Spread } from './reproduce.js';
