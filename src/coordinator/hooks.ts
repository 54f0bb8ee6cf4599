/** What the coordinator tells its embedder (CLI progress, telemetry) as a run goes. */
import type { Logger } from '../telemetry/logger.js';
import type { StepAborted, StepDetail, TelemetryStep } from '../telemetry/types.js';
import type { EpochSummary } from './report.js';

/** A committed step, as the progress line and the telemetry see it. */
export type StepEvent = TelemetryStep;

export interface CoordinatorHooks {
  log?: Logger;
  onStep?: (e: StepEvent) => void;
  onEpoch?: (e: EpochSummary) => void;
  /** Every committed step, per worker (phases, straggler); emitted before onStep. */
  onStepDetail?: (d: StepDetail) => void;
  onStepAborted?: (e: StepAborted) => void;
}

