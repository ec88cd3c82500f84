// Learning-rate schedules as transformers defines them (get_*_schedule_with_warmup): a factor of
// the base rate for optimizer step s (0-based). Warm-up rises linearly from 0; cosine and linear
// decay run from the end of the warm-up to totalSteps and level off at minLrRatio.
import { checkInteger, checkNumber, checkOneOf, checkOptions } from '../errors.js';

export type ScheduleKind = 'cosine' | 'linear' | 'constant';
export interface ScheduleOptions {
  warmupSteps?: number;
  /** Steps of the whole run (needed by cosine and linear). */
  totalSteps?: number;
  /** The floor of the decay as a fraction of the base rate (default 0). */
  minLrRatio?: number;
}

export function schedule(kind: ScheduleKind, opts: ScheduleOptions = {}): (step: number) => number {
  checkOneOf('kind', kind, ['cosine', 'linear', 'constant']);
  const o = checkOptions('options', opts);
  const warm = checkInteger('warmupSteps', o.warmupSteps ?? 0, 0);
  const min = checkNumber('minLrRatio', o.minLrRatio ?? 0, 0, 1);
  const total = kind === 'constant' ? Infinity : checkInteger('totalSteps', o.totalSteps, 1);
  return (step: number) => {
    checkInteger('step', step, 0);
    if (step < warm) return step / Math.max(1, warm);
    if (kind === 'constant') return 1;
    const progress = Math.min(1, (step - warm) / Math.max(1, total - warm));
    const f = kind === 'cosine' ? 0.5 * (1 + Math.cos(Math.PI * progress)) : 1 - progress;
    return Math.max(0, min + (1 - min) * f);
  };
}
