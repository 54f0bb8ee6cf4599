/**
 * Straggler attribution. In a synchronous step everybody waits for the last gradient: the worker
 * that delivered it is the step's straggler, and it is charged with the waiting of the others
 * (worker-ms) and with the delay it added to the step (how much sooner the step would have ended
 * had it been as fast as the next slowest).
 */
import type { WorkerStepPhases } from './types.js';

export interface StepStraggler {
  /** Index of the last gradient, -1 with fewer than two workers. */
  slowest: number;
  waitCausedMs: number;
  delayMs: number;
}

export function attributeSlowest(workers: readonly Pick<WorkerStepPhases, 'deliveredAtMs'>[]): StepStraggler {
  if (workers.length < 2) return { slowest: -1, waitCausedMs: 0, delayMs: 0 };
  let slowest = 0;
  for (let i = 1; i < workers.length; i++) if (workers[i]!.deliveredAtMs > workers[slowest]!.deliveredAtMs) slowest = i;
  const last = workers[slowest]!.deliveredAtMs;
  let waitCausedMs = 0;
  let second = -Infinity;
  for (let i = 0; i < workers.length; i++) {
    if (i === slowest) continue;
    waitCausedMs += last - workers[i]!.deliveredAtMs;
    second = Math.max(second, workers[i]!.deliveredAtMs);
  }
  return { slowest, waitCausedMs, delayMs: last - second };
}

/** Totals of one worker over a run, as the report and the trace keep them. */
export interface StragglerTotals {
  id: string;
  steps: number;
  stragglerSteps: number;
  waitCausedMs: number;
  delayCausedMs: number;
  /** Sum of this worker's step times (dispatch to commit), ms. */
  totalMs: number;
  computeMs: number;
}

/** The run's straggler: the worker whose lateness made the others wait longest. */
export interface StragglerSummary {
  workerId: string;
  /** Steps in which its gradient came last, and their share of the steps it took part in. */
  slowestInSteps: number;
  slowestShare: number;
  /** The other workers' waiting it caused, in worker-seconds, and as a share of their step time. */
  waitCausedSeconds: number;
  waitCausedShare: number;
  /** How much shorter the run's steps would have been without its lateness (seconds). */
  delaySeconds: number;
  /** Its mean compute time per step against the other workers' mean (ms). */
  meanComputeMs: number;
  othersMeanComputeMs: number;
}

export function summarizeStraggler(workers: readonly StragglerTotals[]): StragglerSummary | null {
  const ranked = workers.filter((w) => w.steps > 0);
  if (ranked.length < 2) return null;
  let worst = ranked[0]!;
  for (const w of ranked) if (w.waitCausedMs > worst.waitCausedMs) worst = w;
  if (worst.waitCausedMs <= 0) return null;
  const others = ranked.filter((w) => w !== worst);
  const othersTotal = others.reduce((a, w) => a + w.totalMs, 0);
  const othersSteps = others.reduce((a, w) => a + w.steps, 0);
  return {
    workerId: worst.id,
    slowestInSteps: worst.stragglerSteps,
    slowestShare: worst.stragglerSteps / worst.steps,
    waitCausedSeconds: worst.waitCausedMs / 1000,
    waitCausedShare: othersTotal > 0 ? worst.waitCausedMs / othersTotal : 0,
    delaySeconds: worst.delayCausedMs / 1000,
    meanComputeMs: worst.computeMs / worst.steps,
    othersMeanComputeMs: othersSteps > 0 ? others.reduce((a, w) => a + w.computeMs, 0) / othersSteps : 0,
  };
}

/** One line for people: who was slowest and what it cost. */
export function stragglerLine(s: StragglerSummary | null | undefined): string {
  if (!s) return 'straggler: none (fewer than two workers, or nobody waited)';
  return (
    `straggler: ${s.workerId} delivered last in ${s.slowestInSteps} steps (${pct(s.slowestShare)} of its steps); ` +
    `the other workers waited ${s.waitCausedSeconds.toFixed(2)} s for it (${pct(s.waitCausedShare)} of their step time), ` +
    `steps would have ended ${s.delaySeconds.toFixed(2)} s sooner in all; ` +
    `its compute ${s.meanComputeMs.toFixed(1)} ms/step vs ${s.othersMeanComputeMs.toFixed(1)} ms for the others`
  );
}

function pct(x: number): string {
  return `${(x * 100).toFixed(1)}%`;
}
