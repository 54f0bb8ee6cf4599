/**
 * The coordinator: serves the Attach stream, owns the data plan and the in-process parameter
 * server, and runs synchronous steps (DESIGN.md, "Synchronous step protocol") until the
 * epochs are done, evaluating after each one. A worker leaving mid-step aborts the step, which
 * is redone with the remaining members; the data cursor only moves on commit.
 */
import { randomBytes } from 'node:crypto';
import type * as tf from '@tensorflow/tfjs';
import { loadMnist, type MnistData } from '../data/mnist.js';
import { selectBackend, type BackendInfo } from '../model/backend.js';
import { evaluateModel } from '../model/evaluate.js';
import { registerFileSystemRouter } from '../model/file-io.js';
import { initialWeights } from '../model/init.js';
import { assignWeights, layoutOf, type VariableLayout } from '../model/variables.js';
import { createModel } from '../model/zoo.js';
import { ParameterServer } from '../ps/parameter-server.js';
import { StepBarrier } from '../ps/step-barrier.js';
import { silentLogger, type Logger } from '../telemetry/logger.js';
import { DataPlan } from './data-plan.js';
import { MembershipChangedError, TrainingFailedError } from './errors.js';
import { Membership } from './membership.js';
import { compileCoordinatorOptions, type CompiledCoordinatorOptions, type CoordinatorOptions } from './options.js';
import type { EpochSummary, RunReport } from './report.js';
import { CoordinatorServer } from './server.js';

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
}

export class Coordinator {
  readonly options: CompiledCoordinatorOptions;
  readonly membership = new Membership();
  private readonly log: Logger;
  private server!: CoordinatorServer;
  private ps!: ParameterServer;
  private plan!: DataPlan;
  private data!: MnistData;
  private evalModel!: tf.Sequential;
  private layout!: VariableLayout;
  private backend!: BackendInfo;
  private round = 0;
  private step = 0;
  private abortedSteps = 0;
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

  /** Loads data and model, initializes the parameter server and starts serving. Returns the port. */
  async start(): Promise<number> {
    const o = this.options;
    this.backend = await selectBackend(o.backend);
    this.log.info({ backend: this.backend.name, device: this.backend.device }, 'backend selected');
    this.data = loadMnist({ dataDir: o.dataDir, trainLimit: o.trainLimit, testLimit: o.testLimit });
    this.evalModel = createModel(o.model);
    this.layout = layoutOf(this.evalModel);
    this.ps = new ParameterServer(initialWeights(this.layout, o.seed), { lr: o.lr });
    this.plan = new DataPlan(o.seed, this.data.train.count, o.batchSize);
    this.server = new CoordinatorServer(
      {
        jobId: randomBytes(8).toString('hex'),
        jobConfig: {
          model: o.model,
          dataDir: o.dataDir ? this.data.dataDir : '',
          trainLimit: o.trainLimit,
          variables: this.layout.specs.map((s) => ({ name: s.name, shape: s.shape })),
          gradDtype: 'float32',
        },
        modelSize: this.layout.totalSize,
        chunkBytes: o.chunkBytes,
        maxWorkers: o.workers,
      },
      this.membership,
      this.log,
    );
    const port = await this.server.start(o.host, o.port);
    this.log.info({ host: o.host, port, trainSamples: this.data.train.count, testSamples: this.data.test.count, parameters: this.layout.totalSize }, 'coordinator listening');
    return port;
  }

  /** The parameter server's current weights (flat layout). */
  get weights(): Float32Array {
    return this.ps.weights;
  }

  /** Trains to completion. Rejects with TrainingFailedError (or the signal's reason) otherwise. */
  async run(signal?: AbortSignal): Promise<RunReport> {
    const o = this.options;
    const wallStart = performance.now();
    this.log.info({ workers: o.workers }, 'waiting for workers');
    await this.membership.waitForAtLeast(o.workers, signal);
    const history: EpochSummary[] = [];
    let trainMs = 0;
    let trainedSamples = 0;
    for (let epoch = 0; epoch < o.epochs; epoch++) {
      if (epoch > 0) this.plan.nextEpoch();
      const epochStart = performance.now();
      let epochSamples = 0;
      let epochSteps = 0;
      let lossSum = 0;
      while (!this.plan.epochDone) {
        await this.waitForQuorum(signal);
        const world = this.membership.size;
        let result: { samples: number; loss: number };
        try {
          result = await this.runStep(signal);
        } catch (err) {
          if (!(err instanceof MembershipChangedError)) throw err;
          this.abortedSteps++;
          this.log.warn({ step: this.step, reason: err.reason }, 'step aborted; redoing it');
          continue;
        }
        epochSamples += result.samples;
        epochSteps++;
        lossSum += result.loss * result.samples;
        const elapsed = trainMs + (performance.now() - epochStart);
        this.hooks.onStep?.({
          epoch,
          step: this.step,
          stepInEpoch: epochSteps,
          stepsInEpoch: epochSteps + Math.ceil((this.plan.trainSize - this.plan.cursor) / (world * o.batchSize)),
          worldSize: world,
          samples: result.samples,
          loss: result.loss,
          imagesPerSecond: ((trainedSamples + epochSamples) * 1000) / elapsed,
          epochFraction: this.plan.cursor / this.plan.trainSize,
        });
      }
      const epochMs = performance.now() - epochStart;
      trainMs += epochMs;
      trainedSamples += epochSamples;
      const evaluation = await this.evaluate();
      const summary: EpochSummary = {
        epoch,
        steps: epochSteps,
        samples: epochSamples,
        trainLoss: lossSum / epochSamples,
        testAccuracy: evaluation.accuracy,
        testLoss: evaluation.loss,
        trainSeconds: epochMs / 1000,
      };
      history.push(summary);
      this.log.info({ ...summary }, 'epoch done');
      this.hooks.onEpoch?.(summary);
    }
    let savedModel: string | undefined;
    if (o.saveModel) {
      registerFileSystemRouter();
      await this.evalModel.save(`file://${o.saveModel}`);
      savedModel = o.saveModel;
      this.log.info({ dir: o.saveModel }, 'model saved');
    }
    this.stopWorkers('training completed', true);
    const last = history[history.length - 1];
    return this.buildReport('completed', {
      history,
      trainMs,
      trainedSamples,
      wallMs: performance.now() - wallStart,
      testAccuracy: last?.testAccuracy ?? null,
      testLoss: last?.testLoss ?? null,
      savedModel,
    });
  }

  /** A report for a run that did not complete. */
  failureReport(error: Error): RunReport {
    return this.buildReport('failed', { history: [], trainMs: 0, trainedSamples: 0, wallMs: 0, testAccuracy: null, testLoss: null, error: error.message });
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    const steps: Array<() => unknown> = [
      () => this.stopWorkers('coordinator shutting down', false),
      () => this.server?.close(),
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

  private stopWorkers(reason: string, completed: boolean): void {
    if (this.server) this.server.accepting = false;
    for (const s of this.membership.ranked()) s.stop(reason, completed);
  }

  private async waitForQuorum(signal?: AbortSignal): Promise<void> {
    if (this.membership.size >= this.options.minWorkers) return;
    this.log.warn({ members: this.membership.size, minWorkers: this.options.minWorkers }, 'too few workers; pausing until enough join');
    await this.membership.waitForAtLeast(this.options.minWorkers, signal);
    this.log.info({ members: this.membership.size }, 'resuming');
  }

  private async runStep(signal?: AbortSignal): Promise<{ samples: number; loss: number }> {
    signal?.throwIfAborted();
    const members = this.membership.ranked();
    const plan = this.plan.plan(members.length);
    const round = ++this.round;
    const step = this.step;
    const ranks = members.map((_, r) => r).filter((r) => plan.slices[r]!.length > 0);
    const barrier = new StepBarrier(ranks);
    const onLeft = (session: unknown, reason: string) => {
      const s = members.find((m) => m === session);
      if (s) barrier.abort(new MembershipChangedError(step, `worker ${s.id} left (${reason})`));
    };
    const onAbort = () => barrier.abort(signal!.reason instanceof Error ? signal!.reason : new TrainingFailedError('training was stopped'));
    this.membership.on('left', onLeft);
    signal?.addEventListener('abort', onAbort, { once: true });
    try {
      for (const r of ranks) {
        const session = members[r]!;
        const slice = plan.slices[r]!;
        if (session.versionHeld !== this.ps.version) session.sendWeights(this.ps.version, this.ps.weights, this.options.chunkBytes);
        session.assign(
          { round, step, rank: r, sampleCount: slice.length, deliver: (c) => barrier.deliver(c) },
          { step, round, version: this.ps.version, epoch: plan.epoch, indices: Array.from(slice) },
        );
      }
      const contributions = await barrier.done;
      this.ps.commit(contributions);
      this.plan.commit(plan);
      this.step++;
      let loss = 0;
      for (const c of contributions) loss += c.loss * c.sampleCount;
      return { samples: plan.sampleCount, loss: loss / plan.sampleCount };
    } finally {
      this.membership.off('left', onLeft);
      signal?.removeEventListener('abort', onAbort);
    }
  }

  private async evaluate() {
    assignWeights(this.evalModel, this.layout, this.ps.weights);
    return evaluateModel(this.evalModel, this.data.test);
  }

  private buildReport(
    status: RunReport['status'],
    r: { history: EpochSummary[]; trainMs: number; trainedSamples: number; wallMs: number; testAccuracy: number | null; testLoss: number | null; savedModel?: string; error?: string },
  ): RunReport {
    const o = this.options;
    const sessions = this.membership.history;
    const workerSteps = sessions.reduce((a, s) => a + s.steps, 0);
    const perStep = (bytes: number) => (workerSteps > 0 ? Math.round(bytes / workerSteps) : 0);
    return {
      status,
      ...(r.error ? { error: r.error } : {}),
      model: o.model,
      backend: this.backend?.name ?? o.backend,
      workers: o.workers,
      epochs: o.epochs,
      steps: this.step,
      batchSize: o.batchSize,
      globalBatchSize: o.workers * o.batchSize,
      lr: o.lr,
      seed: o.seed,
      trainSamples: this.data?.train.count ?? 0,
      testSamples: this.data?.test.count ?? 0,
      samplesPerEpoch: r.history.map((h) => h.samples),
      testAccuracy: r.testAccuracy,
      testLoss: r.testLoss,
      imagesPerSecond: r.trainMs > 0 ? (r.trainedSamples * 1000) / r.trainMs : 0,
      trainSeconds: r.trainMs / 1000,
      wallSeconds: r.wallMs / 1000,
      // The initial admissions are not changes of a running job.
      membershipChanges: Math.max(0, this.membership.changes - Math.min(sessions.length, o.workers)),
      abortedSteps: this.abortedSteps,
      staleGradients: sessions.reduce((a, s) => a + s.staleGradients, 0),
      // From a worker's point of view: gradient bytes it sent, weight bytes it received.
      bytesPerStepPerWorker: {
        sent: perStep(sessions.reduce((a, s) => a + s.bytesReceived, 0)),
        received: perStep(sessions.reduce((a, s) => a + s.bytesSent, 0)),
      },
      coordinatorPeakRssBytes: process.resourceUsage().maxRSS * 1024,
      epochHistory: r.history,
      perWorker: sessions.map((s) => ({
        id: s.id,
        pid: s.pid,
        hostname: s.hostname,
        backend: s.backend,
        steps: s.steps,
        samples: s.samples,
        computeSeconds: s.computeMs / 1000,
        peakRssBytes: s.maxRssBytes,
      })),
      ...(r.savedModel ? { savedModel: r.savedModel } : {}),
    };
  }
}
