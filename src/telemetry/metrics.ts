/**
 * Prometheus metrics of a run (prom-client, a registry of its own). Per step only a few gauges
 * are set and the step-phase histograms observed; counters the coordinator keeps anyway (steps,
 * samples, bytes, aborted steps, ...) are read when /metrics is scraped.
 */
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { StepDetail, TelemetryEpoch, TelemetrySource, TelemetryStep } from './types.js';

const PREFIX = 'tensorfleet_';
/** Seconds: 0.5 ms to 30 s. */
const PHASE_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];
export const STEP_PHASES = ['compute', 'encode', 'transfer', 'wait'] as const;

export interface RunInfo {
  model: string;
  backend: string;
  batchSize: number;
  epochs: number;
}

export class RunMetrics {
  readonly registry = new Registry();
  private source: TelemetrySource | undefined;
  private readonly trainLoss: Gauge;
  private readonly testAccuracy: Gauge;
  private readonly testLoss: Gauge;
  private readonly imagesPerSecond: Gauge;
  private readonly stepSeconds: Histogram;
  private readonly optimizerSeconds: Histogram;
  private readonly phaseSeconds: Histogram<'worker' | 'phase'>;
  private readonly info: Gauge<'model' | 'backend' | 'batch_size' | 'epochs'>;

  constructor(options: { processMetrics?: boolean } = {}) {
    const registers = [this.registry];
    if (options.processMetrics ?? true) collectDefaultMetrics({ register: this.registry });
    const self = this;
    const lazyCounter = (name: string, help: string, read: (s: TelemetrySource) => number) =>
      new Counter({
        name: PREFIX + name,
        help,
        registers,
        collect() {
          this.reset();
          if (self.source) this.inc(read(self.source));
        },
      });
    const perWorkerCounter = (name: string, help: string, read: (s: TelemetrySource) => Map<string, number>) =>
      new Counter({
        name: PREFIX + name,
        help,
        labelNames: ['worker'],
        registers,
        collect() {
          this.reset();
          if (!self.source) return;
          for (const [worker, v] of read(self.source)) this.inc({ worker }, v);
        },
      });
    const bySession = (pick: (s: ReturnType<TelemetrySource['sessions']>[number]) => number) => (src: TelemetrySource) => {
      const out = new Map<string, number>();
      for (const s of src.sessions()) out.set(s.id, (out.get(s.id) ?? 0) + pick(s));
      return out;
    };

    this.info = new Gauge({ name: `${PREFIX}info`, help: 'The run: model, backend, batch size per worker, epochs (value 1)', labelNames: ['model', 'backend', 'batch_size', 'epochs'], registers });
    lazyCounter('steps_total', 'Committed training steps', (s) => s.counters().steps);
    lazyCounter('samples_total', 'Training samples in committed steps', (s) => s.counters().trainedSamples);
    new Gauge({
      name: `${PREFIX}epoch`,
      help: 'Epoch being trained, counted from 1',
      registers,
      collect() {
        if (self.source) this.set(self.source.counters().epoch + 1);
      },
    });
    this.trainLoss = new Gauge({ name: `${PREFIX}train_loss`, help: 'Mean cross-entropy of the last committed step', registers });
    this.testAccuracy = new Gauge({ name: `${PREFIX}test_accuracy`, help: 'Test-set accuracy after the last epoch (0..1)', registers });
    this.testLoss = new Gauge({ name: `${PREFIX}test_loss`, help: 'Test-set cross-entropy after the last epoch', registers });
    this.imagesPerSecond = new Gauge({ name: `${PREFIX}images_per_second`, help: 'Trained samples over training time so far (evaluation excluded)', registers });
    this.stepSeconds = new Histogram({ name: `${PREFIX}step_seconds`, help: 'Wall time of a committed step, dispatch to commit', buckets: PHASE_BUCKETS, registers });
    this.optimizerSeconds = new Histogram({ name: `${PREFIX}optimizer_seconds`, help: 'Averaging and Adam on the parameter server, per step', buckets: PHASE_BUCKETS, registers });
    this.phaseSeconds = new Histogram({
      name: `${PREFIX}step_phase_seconds`,
      help: "A worker's share of a step by phase: compute, encode, transfer (weights out, gradient in, decoding), wait (for the step's last gradient)",
      labelNames: ['worker', 'phase'],
      buckets: PHASE_BUCKETS,
      registers,
    });
    perWorkerCounter('worker_steps_total', 'Steps a worker computed a gradient for', bySession((s) => s.steps));
    perWorkerCounter('worker_samples_total', 'Samples a worker computed gradients for', bySession((s) => s.samples));
    perWorkerCounter('bytes_sent_total', 'Tensor bytes the coordinator sent to a worker (weights)', bySession((s) => s.bytesSent));
    perWorkerCounter('bytes_received_total', 'Tensor bytes the coordinator received from a worker (gradients)', bySession((s) => s.bytesReceived));
    perWorkerCounter('straggler_steps_total', "Steps in which a worker's gradient came last", bySession((s) => s.stragglerSteps));
    perWorkerCounter('straggler_wait_seconds_total', 'Waiting of the other workers a late worker caused (worker-seconds)', bySession((s) => s.waitCausedMs / 1000));
    new Gauge({
      name: `${PREFIX}workers`,
      help: 'Workers in the job (membership size)',
      registers,
      collect() {
        if (self.source) this.set(self.source.counters().members);
      },
    });
    lazyCounter('membership_changes_total', 'Workers joining or leaving during training', (s) => s.counters().membershipChanges);
    lazyCounter('aborted_steps_total', 'Steps aborted (a worker left) and redone', (s) => s.counters().abortedSteps);
    lazyCounter('rejected_contributions_total', 'Gradients rejected for NaN or Inf values', (s) => s.counters().rejectedContributions);
    lazyCounter('heartbeat_timeouts_total', 'Workers removed for silence', (s) => s.counters().heartbeatTimeouts);
    lazyCounter('rejected_calls_total', 'Attach calls ended for protocol violations or refused admission', (s) => s.counters().rejectedCalls);
    lazyCounter('stale_gradients_total', 'Gradients of aborted steps, dropped on arrival', (s) => s.sessions().reduce((a, x) => a + x.staleGradients, 0));
  }

  /** Where the lazily read counters come from (set once the coordinator has started). */
  setSource(source: TelemetrySource, info: RunInfo): void {
    this.source = source;
    this.info.set({ model: info.model, backend: info.backend, batch_size: String(info.batchSize), epochs: String(info.epochs) }, 1);
  }

  onStep(e: TelemetryStep): void {
    this.trainLoss.set(e.loss);
    this.imagesPerSecond.set(e.imagesPerSecond);
  }

  onStepDetail(d: StepDetail): void {
    this.stepSeconds.observe((d.committedAtMs - d.dispatchedAtMs) / 1000);
    this.optimizerSeconds.observe((d.committedAtMs - d.optimizerStartMs) / 1000);
    const h = this.phaseSeconds;
    for (const w of d.workers) {
      h.observe({ worker: w.id, phase: 'compute' }, w.compute / 1000);
      h.observe({ worker: w.id, phase: 'encode' }, w.encode / 1000);
      h.observe({ worker: w.id, phase: 'transfer' }, w.transfer / 1000);
      h.observe({ worker: w.id, phase: 'wait' }, w.wait / 1000);
    }
  }

  onEpoch(e: TelemetryEpoch): void {
    this.testAccuracy.set(e.testAccuracy);
    this.testLoss.set(e.testLoss);
  }

  /** The text exposition format (version 0.0.4). */
  metrics(): Promise<string> {
    return this.registry.metrics();
  }

  get contentType(): string {
    return this.registry.contentType;
  }
}
