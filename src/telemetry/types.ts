/**
 * What the coordinator tells its observers (progress line, metrics, dashboard, trace). The
 * coordinator imports these types; telemetry never imports the coordinator.
 */

/** One worker's share of one committed step (ms; times are performance.now() of the coordinator). */
export interface WorkerStepPhases {
  id: string;
  rank: number;
  samples: number;
  /** Forward, backward and reading the gradients, as the worker measured it. */
  compute: number;
  /** Serializing and writing the gradient (the worker's previous step: it reports before it encodes). */
  encode: number;
  /** The rest of the worker's round trip: weights and step out, gradient in, decoding, scheduling. */
  transfer: number;
  /** From this worker's gradient being complete to the step's last gradient being complete. */
  wait: number;
  /** Averaging + Adam on the parameter server. */
  optimizer: number;
  /** Dispatch to commit. */
  total: number;
  /** When this worker's gradient was complete. */
  deliveredAtMs: number;
}

/** A committed step, per worker: emitted by the coordinator after every commit. */
export interface StepDetail {
  step: number;
  epoch: number;
  round: number;
  dispatchedAtMs: number;
  optimizerStartMs: number;
  committedAtMs: number;
  workers: WorkerStepPhases[];
  /** Index in `workers` of the step's last gradient (the straggler), -1 with fewer than two workers. */
  slowest: number;
  /** Waiting the slowest caused: the other workers' waits summed (worker-ms). */
  waitCausedMs: number;
  /** How much sooner the step would have ended had the slowest been as fast as the next slowest (ms). */
  delayMs: number;
}

/** A step as the progress line sees it. */
export interface TelemetryStep {
  epoch: number;
  step: number;
  stepInEpoch: number;
  stepsInEpoch: number;
  worldSize: number;
  samples: number;
  loss: number;
  imagesPerSecond: number;
  epochFraction: number;
}

export interface TelemetryEpoch {
  epoch: number;
  steps: number;
  samples: number;
  trainLoss: number;
  testAccuracy: number;
  testLoss: number;
  trainSeconds: number;
}

export interface StepAborted {
  step: number;
  reason: string;
}

export interface MembershipChange {
  kind: 'joined' | 'left';
  workerId: string;
  reason?: string;
  size: number;
}

/** Counters read when metrics are scraped (nothing is done per step for them). */
export interface CoordinatorCounters {
  steps: number;
  trainedSamples: number;
  epoch: number;
  members: number;
  membershipChanges: number;
  abortedSteps: number;
  rejectedContributions: number;
  heartbeatTimeouts: number;
  rejectedCalls: number;
}

/** A worker session as the metrics read it (every session ever admitted). */
export interface SessionCounters {
  id: string;
  steps: number;
  samples: number;
  bytesSent: number;
  bytesReceived: number;
  staleGradients: number;
  stragglerSteps: number;
  waitCausedMs: number;
}

export interface TelemetrySource {
  counters(): CoordinatorCounters;
  sessions(): readonly SessionCounters[];
}
