/** The JSON run report (DESIGN.md, Interfaces), written atomically. */
import { mkdirSync, renameSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { summarizeStraggler, type StragglerSummary } from '../telemetry/straggler.js';
import type { TelemetryEpoch } from '../telemetry/types.js';
import type { CompiledCoordinatorOptions } from './options.js';
import type { WorkerSession } from './worker-session.js';

/** One evaluated epoch of the run report (the telemetry's epoch record). */
export type EpochSummary = TelemetryEpoch;

export interface WorkerSummary {
  id: string;
  pid: number;
  hostname: string;
  backend: string;
  /** What computed, e.g. 'cpu (wasm, simd, fused multiply-add, 1 thread)'. */
  device: string;
  steps: number;
  samples: number;
  computeSeconds: number;
  peakRssBytes: number;
  /** Summed step phases of this worker (seconds; see stepPhasesMs), for the summary table. */
  phaseSeconds: { compute: number; encode: number; transfer: number; wait: number; optimizer: number; total: number };
  /** Steps in which its gradient came last, and the other workers' waiting that caused (worker-seconds). */
  stragglerSteps: number;
  waitCausedSeconds: number;
  /** CPU time (ms, user + system) its process used per step, over its steps after the first WARMUP_STEPS; null when none reported it. */
  cpuMsPerStep: number | null;
}

export interface RunReport {
  /** `stopped`: drained on SIGTERM, resumable from the last checkpoint. */
  status: 'completed' | 'failed' | 'stopped';
  error?: string;
  model: string;
  backend: string;
  workers: number;
  epochs: number;
  steps: number;
  batchSize: number;
  globalBatchSize: number;
  lr: number;
  seed: number;
  /** Parameter-server shards and where they ran. */
  psShards: number;
  psMode: string;
  trainSamples: number;
  testSamples: number;
  samplesPerEpoch: number[];
  testAccuracy: number | null;
  testLoss: number | null;
  /** Trained samples over training time (trainSeconds), every step included. */
  imagesPerSecond: number;
  /**
   * imagesPerSecond without the warm-up: over the window that opens when this run's
   * WARMUP_STEPS-th step completes (5, steady-rate.ts; the same as bench/peers/pytorch_ddp.py),
   * the samples of the steps completed since then and not rolled back, over the training time
   * since then (evaluation excluded; aborted and rolled-back steps' time included, as in
   * imagesPerSecond). A resumed run's window opens at the fifth step after the resume. null
   * when no step completed after the window opened: five steps or fewer (since the resume).
   */
  steadyImagesPerSecond: number | null;
  /**
   * CPU time (ms, user + system) per step over the same window (evaluation and the other pauses
   * between training segments left out): the coordinator's process (its
   * parameter server included, with --ps-mode in-process), and each worker's process summed over
   * the workers (their exchange and co-located shards included; per worker in perWorker). The
   * cores a step needs, whatever the waiting. null when not measured (five steps or fewer).
   */
  cpuMsPerStep: { coordinator: number | null; workers: number | null };
  trainSeconds: number;
  wallSeconds: number;
  membershipChanges: number;
  abortedSteps: number;
  /** Co-located shards: committed steps redone because a member left with its shard (0 otherwise). */
  rolledBackSteps: number;
  staleGradients: number;
  /** Gradients rejected for NaN/Inf values (their senders were disconnected and the step redone). */
  rejectedContributions: number;
  /** Workers removed because they went silent (no heartbeat). */
  heartbeatTimeouts: number;
  /** Set when the run continued from a checkpoint: the step it resumed at. */
  resumedFromStep?: number;
  lastCheckpoint?: string;
  bytesPerStepPerWorker: { sent: number; received: number };
  coordinatorPeakRssBytes: number;
  /**
   * Mean time of a step per worker (ms), split: compute (forward, backward, reading gradients),
   * encode (serializing and writing the gradient), wait (for the step's slowest gradient),
   * optimizer (averaging + Adam on the parameter server), transfer (the rest: weights out,
   * gradient in, decoding, scheduling).
   */
  stepPhasesMs: { compute: number; encode: number; transfer: number; wait: number; optimizer: number; total: number };
  /** The worker whose lateness made the others wait longest (null with one worker). */
  straggler: StragglerSummary | null;
  epochHistory: EpochSummary[];
  perWorker: WorkerSummary[];
  savedModel?: string;
}

export function writeReport(path: string, report: RunReport): void {
  mkdirSync(dirname(path), { recursive: true });
  const tmp = `${path}.tmp-${process.pid}`;
  writeFileSync(tmp, `${JSON.stringify(report, null, 2)}\n`);
  renameSync(tmp, path);
}

export interface ReportInputs {
  status: RunReport['status'];
  error?: string;
  options: CompiledCoordinatorOptions;
  backend: string;
  steps: number;
  trainSamples: number;
  testSamples: number;
  history: EpochSummary[];
  trainedSamples: number;
  trainMs: number;
  /** SteadyRate.rate() (steady-rate.ts). */
  steadyImagesPerSecond: number | null;
  /** SteadyRate.cpuMsPerStep() of the coordinator's process. */
  coordinatorCpuMsPerStep?: number | null;
  wallMs: number;
  membershipChanges: number;
  abortedSteps: number;
  rolledBackSteps?: number;
  rejectedContributions: number;
  heartbeatTimeouts: number;
  sessions: WorkerSession[];
  resumedFromStep?: number;
  lastCheckpoint?: string;
  savedModel?: string;
}

export function buildReport(r: ReportInputs): RunReport {
  const o = r.options;
  const last = r.history[r.history.length - 1];
  const workerSteps = r.sessions.reduce((a, s) => a + s.steps, 0);
  const perStep = (bytes: number) => (workerSteps > 0 ? Math.round(bytes / workerSteps) : 0);
  return {
    status: r.status,
    ...(r.error ? { error: r.error } : {}),
    model: o.model,
    backend: r.backend,
    workers: o.workers,
    epochs: o.epochs,
    steps: r.steps,
    batchSize: o.batchSize,
    globalBatchSize: o.workers * o.batchSize,
    lr: o.lr,
    seed: o.seed,
    psShards: o.psShards,
    psMode: o.psMode,
    trainSamples: r.trainSamples,
    testSamples: r.testSamples,
    samplesPerEpoch: r.history.map((h) => h.samples),
    testAccuracy: last?.testAccuracy ?? null,
    testLoss: last?.testLoss ?? null,
    imagesPerSecond: r.trainMs > 0 ? (r.trainedSamples * 1000) / r.trainMs : 0,
    steadyImagesPerSecond: r.steadyImagesPerSecond,
    cpuMsPerStep: { coordinator: r.coordinatorCpuMsPerStep ?? null, workers: workersCpuMsPerStep(r.sessions) },
    trainSeconds: r.trainMs / 1000,
    wallSeconds: r.wallMs / 1000,
    membershipChanges: r.membershipChanges,
    abortedSteps: r.abortedSteps,
    rolledBackSteps: r.rolledBackSteps ?? 0,
    staleGradients: r.sessions.reduce((a, s) => a + s.staleGradients, 0),
    rejectedContributions: r.rejectedContributions,
    heartbeatTimeouts: r.heartbeatTimeouts,
    // From a worker's point of view: gradient bytes it sent, weight bytes it received.
    bytesPerStepPerWorker: {
      sent: perStep(r.sessions.reduce((a, s) => a + s.bytesReceived, 0)),
      received: perStep(r.sessions.reduce((a, s) => a + s.bytesSent, 0)),
    },
    coordinatorPeakRssBytes: process.resourceUsage().maxRSS * 1024,
    stepPhasesMs: meanPhases(r.sessions),
    straggler: summarizeStraggler(r.sessions.map((s) => ({ id: s.id, steps: s.phases.steps, stragglerSteps: s.stragglerSteps, waitCausedMs: s.waitCausedMs, delayCausedMs: s.delayCausedMs, totalMs: s.phases.total, computeMs: s.phases.compute }))),
    epochHistory: r.history,
    perWorker: r.sessions.map((s) => ({
      id: s.id,
      pid: s.pid,
      hostname: s.hostname,
      backend: s.backend,
      device: s.device,
      steps: s.steps,
      samples: s.samples,
      computeSeconds: s.computeMs / 1000,
      peakRssBytes: s.maxRssBytes,
      phaseSeconds: { compute: s.phases.compute / 1000, encode: s.phases.encode / 1000, transfer: s.phases.transfer / 1000, wait: s.phases.wait / 1000, optimizer: s.phases.optimizer / 1000, total: s.phases.total / 1000 },
      stragglerSteps: s.stragglerSteps,
      waitCausedSeconds: s.waitCausedMs / 1000,
      cpuMsPerStep: s.cpu.steps > 0 ? s.cpu.ms / s.cpu.steps : null,
    })),
    ...(r.resumedFromStep !== undefined ? { resumedFromStep: r.resumedFromStep } : {}),
    ...(r.lastCheckpoint ? { lastCheckpoint: r.lastCheckpoint } : {}),
    ...(r.savedModel ? { savedModel: r.savedModel } : {}),
  };
}

/** The workers' CPU per step, summed over the workers that reported it (each over its own steady steps). */
function workersCpuMsPerStep(sessions: WorkerSession[]): number | null {
  const reporting = sessions.filter((s) => s.cpu.steps > 0);
  return reporting.length > 0 ? reporting.reduce((a, s) => a + s.cpu.ms / s.cpu.steps, 0) : null;
}

function meanPhases(sessions: WorkerSession[]): RunReport['stepPhasesMs'] {
  const sum = { compute: 0, encode: 0, transfer: 0, wait: 0, optimizer: 0, total: 0, steps: 0 };
  for (const s of sessions) for (const k of Object.keys(sum) as (keyof typeof sum)[]) sum[k] += s.phases[k];
  const mean = (v: number) => (sum.steps > 0 ? v / sum.steps : 0);
  return { compute: mean(sum.compute), encode: mean(sum.encode), transfer: mean(sum.transfer), wait: mean(sum.wait), optimizer: mean(sum.optimizer), total: mean(sum.total) };
}
