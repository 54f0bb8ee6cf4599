/**
 * The coordinator's run loop: serves the Attach stream, owns the data plan and the run's
 * progress, and runs synchronous steps (DESIGN.md, "Synchronous step protocol") against the
 * variables wherever they live (variable-host.ts) until the epochs are done, evaluating after
 * each one. A worker leaving mid-step aborts the step, which
 * is redone with the remaining members; the data cursor only moves on commit. Checkpoints
 * make a run resumable; drain() stops it cleanly at a step boundary.
 */
import { randomBytes } from 'node:crypto';
import type * as tf from '@tensorflow/tfjs';
import { loadMnist, type MnistData } from '../data/mnist.js';
import { selectBackend, type BackendInfo } from '../model/backend.js';
import { evaluateModel } from '../model/evaluate.js';
import { registerFileSystemRouter } from '../model/file-io.js';
import { assignWeights, layoutOf, type VariableLayout } from '../model/variables.js';
import { createModel } from '../model/zoo.js';
import type { ShardState } from '../ps/shard.js';
import { silentLogger, type Logger } from '../telemetry/logger.js';
import type { CoordinatorCounters } from '../telemetry/types.js';
import { readLatestCheckpoint, saveCheckpoint, type CheckpointHeader } from './checkpoint.js';
import { configHash, describeConfig } from './config-hash.js';
import { DataPlan } from './data-plan.js';
import { CheckpointMismatchError, DrainingError, MembershipChangedError } from './errors.js';
import { Membership } from './membership.js';
import { compileCoordinatorOptions, type CompiledCoordinatorOptions, type CoordinatorOptions } from './options.js';
import { buildReport, type EpochSummary, type RunReport } from './report.js';
import { CoordinatorServer } from './server.js';
import { processCpuMs, SteadyRate } from './steady-rate.js';
import { runSyncStep } from './sync-step.js';
import type { CoordinatorHooks } from './hooks.js';
import { ShardLostError } from '../ps/errors.js';
import { VariableHost } from './variable-host.js';

export type { CoordinatorHooks, StepEvent } from './hooks.js';

export class Coordinator {
  readonly options: CompiledCoordinatorOptions;
  readonly membership = new Membership();
  private readonly log: Logger;
  private server!: CoordinatorServer;
  /** Where the variables live (psMode) and their state. */
  private variables!: VariableHost;
  private plan!: DataPlan;
  private data!: MnistData;
  private evalModel!: tf.Sequential;
  private layout!: VariableLayout;
  private backend!: BackendInfo;
  private hash = '';
  private round = 0;
  private step = 0;
  private abortedSteps = 0;
  private rejectedContributions = 0;
  private membershipChanges = 0;
  private trainedSamples = 0;
  private trainMsBefore = 0;
  private segmentStart: number | undefined;
  /** Throughput after the warm-up steps (the report's steadyImagesPerSecond). */
  private readonly steady = new SteadyRate();
  private history: EpochSummary[] = [];
  /** Committed steps, samples and loss sum of the current epoch (carried by checkpoints). */
  private epoch = { steps: 0, samples: 0, lossSum: 0 };
  private resumedFromStep: number | undefined;
  private lastCheckpoint: string | undefined;
  private draining = false;
  /** Aborted when drain() is called: waits stop at once. */
  private readonly drainStarted = new AbortController();
  /** Aborted drainTimeoutMs after drain(): the step in flight is given up. */
  private readonly drainDeadline = new AbortController();
  private closed = false;

  constructor(options: CoordinatorOptions, private readonly hooks: CoordinatorHooks = {}) {
    this.options = compileCoordinatorOptions(options);
    this.log = (hooks.log ?? silentLogger).child({ component: 'coordinator' });
  }

  get port(): number {
    return this.server.port;
  }

  get backendInfo(): BackendInfo {
    return this.backend;
  }

  /** Training and test samples of the loaded data set (after start()). */
  get dataSizes(): { train: number; test: number } {
    return { train: this.data?.train.count ?? 0, test: this.data?.test.count ?? 0 };
  }

  /** Counters for telemetry, read when metrics are scraped. */
  get counters(): CoordinatorCounters {
    return {
      steps: this.step,
      trainedSamples: this.trainedSamples,
      epoch: this.plan?.epoch ?? 0,
      members: this.membership.size,
      membershipChanges: this.membershipChanges,
      abortedSteps: this.abortedSteps,
      rejectedContributions: this.rejectedContributions,
      heartbeatTimeouts: this.server?.timedOut ?? 0,
      rejectedCalls: this.server?.rejected ?? 0,
    };
  }

  /** The current weights (flat layout); with shards, as of the last snapshot (each epoch end). */
  get weights(): Float32Array {
    return this.variables?.weights ?? new Float32Array(0);
  }

  /**
   * Loads data, model and (with resume) the newest checkpoint, connects and initializes the
   * shard processes (psMode process: `psAddresses`, else options.psAddresses), then serves.
   * Returns the port.
   */
  async start(psAddresses: string[] = this.options.psAddresses): Promise<number> {
    const o = this.options;
    this.backend = await selectBackend(o.backend);
    this.log.info({ backend: this.backend.name, device: this.backend.device }, 'backend selected');
    this.data = loadMnist({ dataDir: o.dataDir, trainLimit: o.trainLimit, testLimit: o.testLimit });
    this.evalModel = createModel(o.model);
    this.layout = layoutOf(this.evalModel);
    const jobId = randomBytes(8).toString('hex');
    this.plan = new DataPlan(o.seed, this.data.train.count, o.batchSize);
    this.variables = new VariableHost(o, this.layout, this.membership, this.log, {
      get: () => ({ step: this.step, epoch: this.plan.epoch, cursor: this.plan.cursor, epochProgress: { ...this.epoch }, trainedSamples: this.trainedSamples }),
      set: (p) => {
        this.step = p.step;
        this.plan.restore(p.epoch, p.cursor);
        this.epoch = { ...p.epochProgress };
        this.trainedSamples = p.trainedSamples;
        this.steady.rolledBack(p.trainedSamples);
      },
    });
    const hashed = { model: o.model, batchSize: o.batchSize, lr: o.lr, seed: o.seed, gradDtype: o.gradDtype, parameters: this.layout.totalSize, train: this.data.train };
    this.hash = configHash(hashed);
    const resumed = o.resume ? this.restore(describeConfig(hashed)) : undefined;
    await this.variables.open(jobId, psAddresses, resumed);
    if (!o.token) this.log.warn('running without a job token (--insecure): anyone who can reach the port can join and send gradients');
    this.server = new CoordinatorServer(
      {
        jobId,
        jobConfig: {
          model: o.model,
          dataDir: o.dataDir ? this.data.dataDir : '',
          trainLimit: o.trainLimit,
          variables: this.layout.specs.map((s) => ({ name: s.name, shape: s.shape })),
          gradDtype: o.gradDtype,
        },
        ...this.variables.serverSettings,
        chunkBytes: o.chunkBytes,
        maxWorkers: o.maxWorkers,
        heartbeatTimeoutMs: o.heartbeatTimeoutMs,
        token: o.token,
        tls: o.tls,
        gradDtype: o.gradDtype,
      },
      this.membership,
      this.log,
    );
    const port = await this.server.start(o.host, o.port);
    this.log.info({ host: o.host, port, tls: Boolean(o.tls.cert), trainSamples: this.data.train.count, testSamples: this.data.test.count, parameters: this.layout.totalSize }, 'coordinator listening');
    return port;
  }

  private restore(expectedConfig: string): ShardState | undefined {
    const checkpoint = readLatestCheckpoint(this.options.checkpointDir!);
    if (!checkpoint) {
      this.log.info({ dir: this.options.checkpointDir }, 'no checkpoint to resume from; starting fresh');
      return undefined;
    }
    const h = checkpoint.header;
    if (h.configHash !== this.hash) {
      throw new CheckpointMismatchError(`checkpoint ${checkpoint.path} is from another job configuration (${h.config}); this run has ${expectedConfig}`);
    }
    this.plan.restore(h.epoch, h.cursor);
    this.step = h.step;
    this.trainedSamples = h.trainedSamples;
    this.trainMsBefore = h.trainMs;
    this.abortedSteps = h.abortedSteps;
    this.membershipChanges = h.membershipChanges;
    this.history = h.history;
    this.epoch = { ...h.epochProgress };
    this.resumedFromStep = h.step;
    this.lastCheckpoint = checkpoint.path;
    this.log.info({ path: checkpoint.path, step: h.step, epoch: h.epoch, cursor: h.cursor }, 'resumed from checkpoint');
    return { weights: checkpoint.weights, m: checkpoint.m, v: checkpoint.v, iterations: h.adamIterations, version: h.version };
  }

  /** Stops at the next step boundary (the step in flight gets drainTimeoutMs), checkpoints, and tells workers. */
  drain(): void {
    if (this.draining) return;
    this.draining = true;
    this.server?.setServing(false);
    this.log.warn({ step: this.step, drainTimeoutMs: this.options.drainTimeoutMs }, 'draining');
    this.drainStarted.abort(new DrainingError());
    setTimeout(() => this.drainDeadline.abort(new DrainingError()), this.options.drainTimeoutMs).unref();
  }

  /** Trains to completion (or until drained). Rejects with TrainingFailedError or the signal's reason otherwise. */
  async run(signal?: AbortSignal): Promise<RunReport> {
    const o = this.options;
    const wallStart = performance.now();
    const outer = signal ? [signal, this.variables.lost.signal] : [this.variables.lost.signal];
    const waits = AbortSignal.any([...outer, this.drainStarted.signal]);
    const stepSignal = AbortSignal.any([...outer, this.drainDeadline.signal]);
    this.log.info({ workers: o.workers }, 'waiting for workers');
    try {
      await this.membership.waitForAtLeast(o.workers, waits);
    } catch (err) {
      if (err instanceof DrainingError) return this.finish('stopped', wallStart);
      throw err;
    }
    const countChange = () => this.membershipChanges++;
    this.membership.on('joined', countChange).on('left', countChange);
    try {
      for (;;) {
        this.segmentStart = performance.now();
        this.steady.resume(processCpuMs());
        while (!this.plan.epochDone) {
          if (this.draining) return await this.stopDrained(wallStart);
          try {
            await this.waitForQuorum(waits);
            // A group formed from the rollback point may have moved the data cursor: look again.
            if (await this.variables.ensureGroup(waits)) continue;
            const world = this.membership.size;
            const result = await this.runStep(stepSignal);
            this.epoch.steps++;
            this.epoch.samples += result.samples;
            this.epoch.lossSum += result.loss * result.samples;
            this.trainedSamples += result.samples;
            this.steady.stepDone(this.trainedSamples, this.trainMs(), processCpuMs());
            this.emitStep(result, this.epoch.steps, world);
            if (this.step % o.checkpointEvery === 0) await this.checkpoint();
            else if (this.step % o.snapshotEvery === 0) await this.variables.snapshot();
          } catch (err) {
            if (err instanceof DrainingError) return await this.stopDrained(wallStart);
            if (!(err instanceof MembershipChangedError || (this.variables.shardsAreMembers && err instanceof ShardLostError))) throw err;
            const reason = err instanceof MembershipChangedError ? err.reason : err.message;
            this.abortedSteps++;
            this.log.warn({ step: this.step, reason }, 'step aborted; redoing it');
            this.hooks.onStepAborted?.({ step: this.step, reason });
          }
        }
        this.closeSegment();
        if (this.history.length <= this.plan.epoch) await this.endEpoch();
        if (this.plan.epoch + 1 >= o.epochs) break;
        this.plan.nextEpoch();
        this.epoch = { steps: 0, samples: 0, lossSum: 0 };
      }
    } finally {
      this.membership.off('joined', countChange).off('left', countChange);
    }
    let savedModel: string | undefined;
    if (o.saveModel) {
      assignWeights(this.evalModel, this.layout, (await this.variables.state()).weights);
      registerFileSystemRouter();
      await this.evalModel.save(`file://${o.saveModel}`);
      savedModel = o.saveModel;
      this.log.info({ dir: o.saveModel }, 'model saved');
    }
    this.variables.release();
    this.stopWorkers('training completed', true);
    return this.finish('completed', wallStart, savedModel);
  }

  /** A report for a run that did not complete. */
  failureReport(error: Error): RunReport {
    return this.report('failed', 0, undefined, error.message);
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    const steps: Array<() => unknown> = [
      () => this.stopWorkers('coordinator shutting down', false),
      () => this.server?.close(),
      () => this.variables?.close(),
      () => this.evalModel?.dispose(),
    ];
    for (const stepFn of steps) {
      try {
        await stepFn();
      } catch (err) {
        this.log.warn({ err: (err as Error).message }, 'cleanup step failed');
      }
    }
  }

  private async endEpoch(): Promise<void> {
    const state = await this.variables.state();
    assignWeights(this.evalModel, this.layout, state.weights);
    const evaluation = await evaluateModel(this.evalModel, this.data.test);
    const { steps, samples, lossSum } = this.epoch;
    const summary: EpochSummary = {
      epoch: this.plan.epoch,
      steps,
      samples,
      trainLoss: samples > 0 ? lossSum / samples : NaN,
      testAccuracy: evaluation.accuracy,
      testLoss: evaluation.loss,
      trainSeconds: this.trainMs() / 1000 - this.history.reduce((a, h) => a + h.trainSeconds, 0),
    };
    this.history.push(summary);
    this.log.info({ ...summary }, 'epoch done');
    this.hooks.onEpoch?.(summary);
    await this.checkpoint(state);
  }

  private async stopDrained(wallStart: number): Promise<RunReport> {
    this.closeSegment();
    await this.checkpoint();
    this.variables.release();
    this.stopWorkers('the coordinator is draining; reconnect when it is back', false);
    return this.finish('stopped', wallStart);
  }

  private finish(status: RunReport['status'], wallStart: number, savedModel?: string): RunReport {
    return this.report(status, performance.now() - wallStart, savedModel);
  }

  private trainMs(): number {
    return this.trainMsBefore + (this.segmentStart === undefined ? 0 : performance.now() - this.segmentStart);
  }

  private closeSegment(): void {
    this.trainMsBefore = this.trainMs();
    this.segmentStart = undefined;
    this.steady.pause();
  }

  /** `state`: one already taken at this step (the epoch end's), to save a second snapshot. */
  private async checkpoint(state?: ShardState): Promise<void> {
    const dir = this.options.checkpointDir;
    if (!dir) return;
    const { weights, m, v, iterations, version } = state ?? (await this.variables.state());
    const header: CheckpointHeader = {
      configHash: this.hash,
      config: describeConfig({ ...this.options, parameters: this.layout.totalSize, train: this.data.train }),
      step: this.step,
      epoch: this.plan.epoch,
      cursor: this.plan.cursor,
      version,
      adamIterations: iterations,
      seed: this.options.seed,
      trainedSamples: this.trainedSamples,
      trainMs: this.trainMs(),
      abortedSteps: this.abortedSteps,
      membershipChanges: this.membershipChanges,
      history: this.history,
      epochProgress: this.epoch,
      size: this.layout.totalSize,
      savedAt: new Date().toISOString(),
    };
    this.lastCheckpoint = saveCheckpoint(dir, header, weights, m, v);
    this.log.debug({ path: this.lastCheckpoint, step: this.step }, 'checkpoint written');
  }

  private emitStep(result: { samples: number; loss: number }, stepInEpoch: number, world: number): void {
    this.hooks.onStep?.({
      epoch: this.plan.epoch,
      step: this.step,
      stepInEpoch,
      stepsInEpoch: stepInEpoch + Math.ceil((this.plan.trainSize - this.plan.cursor) / (world * this.options.batchSize)),
      worldSize: world,
      samples: result.samples,
      loss: result.loss,
      imagesPerSecond: (this.trainedSamples * 1000) / this.trainMs(),
      epochFraction: this.plan.cursor / this.plan.trainSize,
    });
  }

  private stopWorkers(reason: string, completed: boolean): void {
    if (this.server) this.server.accepting = false;
    for (const s of this.membership.ranked()) s.stop(reason, completed);
  }

  private async waitForQuorum(signal: AbortSignal): Promise<void> {
    if (this.membership.size >= this.options.minWorkers) return;
    this.log.warn({ members: this.membership.size, minWorkers: this.options.minWorkers }, 'too few workers; pausing until enough join');
    await this.membership.waitForAtLeast(this.options.minWorkers, signal);
    this.log.info({ members: this.membership.size }, 'resuming');
  }

  private async runStep(signal: AbortSignal): Promise<{ samples: number; loss: number }> {
    return runSyncStep(
      {
        membership: this.membership,
        plan: this.plan,
        ps: this.variables.ps,
        shards: this.variables.group,
        chunkBytes: this.options.chunkBytes,
        log: this.log,
        onRejected: () => this.rejectedContributions++,
        onStepDetail: this.hooks.onStepDetail,
      },
      this.step,
      ++this.round,
      signal,
    ).then((result) => {
      this.step++;
      return result;
    });
  }

  private report(status: RunReport['status'], wallMs: number, savedModel?: string, error?: string): RunReport {
    return buildReport({
      status,
      error,
      options: this.options,
      backend: this.backend?.name ?? this.options.backend,
      steps: this.step,
      trainSamples: this.data?.train.count ?? 0,
      testSamples: this.data?.test.count ?? 0,
      history: status === 'failed' ? [] : this.history,
      trainedSamples: this.trainedSamples,
      trainMs: this.data ? this.trainMs() : 0,
      steadyImagesPerSecond: this.steady.rate(this.trainedSamples, this.trainMs()),
      coordinatorCpuMsPerStep: this.steady.cpuMsPerStep(),
      wallMs,
      membershipChanges: this.membershipChanges,
      abortedSteps: this.abortedSteps,
      rolledBackSteps: this.variables?.rolledBackSteps ?? 0,
      rejectedContributions: this.rejectedContributions,
      heartbeatTimeouts: this.server?.timedOut ?? 0,
      sessions: this.membership.history,
      resumedFromStep: this.resumedFromStep,
      lastCheckpoint: this.lastCheckpoint,
      savedModel,
    });
  }
}
