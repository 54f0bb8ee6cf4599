/**
 * The run report's `steadyImagesPerSecond`: training throughput once the first steps, slow
 * while V8 compiles the wasm kernels, are behind (the first step takes about ten times a later
 * one). The window opens when the WARMUP_STEPS-th step of this process's run completes (of a
 * resumed run: the WARMUP_STEPS-th after the resume) and takes the same accounting as
 * `imagesPerSecond`: training time (trainMs, evaluation excluded; aborted and rolled-back steps'
 * time included) and the samples of the committed steps that were kept (trainedSamples, which a
 * rollback moves back).
 */

/**
 * Steps left out of the steady throughput: the same as WARMUP_STEPS in
 * bench/peers/pytorch_ddp.py, whose imagesPerSecond the benchmark compares with ours.
 */
export const WARMUP_STEPS = 5;

/** CPU time (user + system) this process has used, in ms. */
export function processCpuMs(): number {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1000;
}

export class SteadyRate {
  /** Steps completed since the run (or the resume) started, rolled-back ones included. */
  private completed = 0;
  /** trainedSamples and trainMs when the warm-up ended; samples only go down, with a rollback. */
  private start: { samples: number; ms: number } | undefined;
  /** This process's CPU ms in the window: summed from `mark` (the last step's end, or a resume) to each step's end; training paused: no mark. */
  private readonly cpu: { ms: number; mark: number | undefined } = { ms: 0, mark: undefined };

  constructor(private readonly warmupSteps = WARMUP_STEPS) {}

  /** A step completed: the run's trainedSamples and trainMs right after it, and the CPU time this process has used (ms). */
  stepDone(trainedSamples: number, trainMs: number, cpuMs = 0): void {
    if (this.completed++ === this.warmupSteps - 1) this.start = { samples: trainedSamples, ms: trainMs };
    if (this.start && this.cpu.mark !== undefined && this.completed > this.warmupSteps) this.cpu.ms += cpuMs - this.cpu.mark;
    this.cpu.mark = cpuMs;
  }

  /** Training paused (evaluation, a checkpoint, the end of the run): CPU used from now on is not a step's. */
  pause(): void {
    this.cpu.mark = undefined;
  }

  /** Training resumed with this process's CPU time at `cpuMs`. */
  resume(cpuMs: number): void {
    this.cpu.mark = cpuMs;
  }

  /**
   * The run went back to a rollback point with `trainedSamples` (co-located shards): steps
   * before the window's start that were undone and redone inside it are counted in it, as
   * their time is.
   */
  rolledBack(trainedSamples: number): void {
    if (this.start && trainedSamples < this.start.samples) this.start.samples = trainedSamples;
  }

  /**
   * Images per second over the window: kept samples trained since its start over the training
   * time since then. null until a step has completed after the warm-up (runs of WARMUP_STEPS
   * steps or fewer, resumed runs with that few steps since the resume).
   */
  rate(trainedSamples: number, trainMs: number): number | null {
    if (!this.start || this.completed <= this.warmupSteps) return null;
    const ms = trainMs - this.start.ms;
    return ms > 0 ? ((trainedSamples - this.start.samples) * 1000) / ms : null;
  }

  /**
   * CPU ms per step over the window: every step completed in it (rolled-back ones included),
   * the pauses between training segments (evaluation, checkpoints) left out; null as for rate().
   */
  cpuMsPerStep(): number | null {
    if (!this.start || this.completed <= this.warmupSteps) return null;
    return this.cpu.ms / (this.completed - this.warmupSteps);
  }
}
