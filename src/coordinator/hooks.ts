/** What the coordinator tells its embedder (CLI progress, telemetry) as a run goes. */
import type { Logger } from '../telemetry/logger.js';
import type { StepAborted, StepDetail } from '../telemetry/types.js';
import type { EpochSummary } from './report.js';

export interface StepEvent {
  epoch: number;
  step: number;
  stepInEpoch: number;
  stepsInEpoch: number;
  worldSize: number;
  samples: number;
  loss: number;
  /** Samples trained so far over training seconds so far. */
  imagesPerSecond: number;
  epochFraction: number;
}

export interface CoordinatorHooks {
  log?: Logger;
  onStep?: (e: StepEvent) => void;
  onEpoch?: (e: EpochSummary) => void;
  /** Every committed step, per worker (phases, straggler); emitted before onStep. */
  onStepDetail?: (d: StepDetail) => void;
  onStepAborted?: (e: StepAborted) => void;
}

