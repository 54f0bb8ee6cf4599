/**
 * What the dashboard shows, kept cheaply while training runs: per-step series in growable typed
 * arrays (decimated beyond a cap), the last steps' per-worker phases in a ring, per-worker totals,
 * epochs and membership events. JSON is only built for a connected client: a snapshot when it
 * connects, then whatever is new since its cursor.
 */
import type { MembershipChange, StepAborted, StepDetail, TelemetryEpoch, TelemetryStep } from './types.js';

export type RunStatus = 'starting' | 'waiting' | 'training' | 'draining' | 'completed' | 'stopped' | 'failed';

export interface FeedInfo {
  model: string;
  backend: string;
  workers: number;
  epochs: number;
  batchSize: number;
  trainSamples: number;
  testSamples: number;
}

const COLUMNS = ['step', 't', 'loss', 'ips', 'samples', 'world'] as const;
type Column = (typeof COLUMNS)[number];

/** Column-wise series of numbers; beyond `maxPoints` every other point is dropped and the stride doubles. */
export class Series {
  private cols: Record<Column, Float64Array>;
  length = 0;
  /** Every `stride`-th pushed point is kept. */
  stride = 1;
  private pushed = 0;
  /** Bumped when points were dropped: clients must start over. */
  generation = 0;

  constructor(
    private capacity = 1024,
    private readonly maxPoints = 100_000,
  ) {
    this.cols = Series.alloc(capacity);
  }

  private static alloc(n: number): Record<Column, Float64Array> {
    return Object.fromEntries(COLUMNS.map((c) => [c, new Float64Array(n)])) as Record<Column, Float64Array>;
  }

  push(step: number, t: number, loss: number, ips: number, samples: number, world: number): void {
    if (this.pushed++ % this.stride !== 0) return;
    if (this.length === this.capacity) {
      if (this.capacity < this.maxPoints) this.grow(Math.min(this.maxPoints, this.capacity * 2));
      else this.decimate();
    }
    const i = this.length++;
    const c = this.cols;
    c.step[i] = step;
    c.t[i] = t;
    c.loss[i] = loss;
    c.ips[i] = ips;
    c.samples[i] = samples;
    c.world[i] = world;
  }

  private grow(n: number): void {
    const next = Series.alloc(n);
    for (const c of COLUMNS) next[c].set(this.cols[c].subarray(0, this.length));
    this.cols = next;
    this.capacity = n;
  }

  private decimate(): void {
    const half = this.length >> 1;
    for (const c of COLUMNS) {
      const col = this.cols[c];
      for (let i = 0; i < half; i++) col[i] = col[2 * i]!;
    }
    this.length = half;
    this.stride *= 2;
    this.pushed = 1; // the point being pushed is kept: the next one kept is `stride` points later
    this.generation++;
  }

  /** Columns from index `from` on, as plain arrays (for JSON). */
  slice(from: number): Record<Column, number[]> {
    return Object.fromEntries(COLUMNS.map((c) => [c, Array.from(this.cols[c].subarray(from, this.length), round6)])) as Record<Column, number[]>;
  }
}

function round6(x: number): number {
  return Number.isFinite(x) ? Math.round(x * 1e6) / 1e6 : 0;
}

interface WorkerTotals {
  id: string;
  alive: boolean;
  steps: number;
  samples: number;
  compute: number;
  encode: number;
  transfer: number;
  wait: number;
  optimizer: number;
  total: number;
  stragglerSteps: number;
  waitCaused: number;
}

export interface FeedEvent {
  t: number;
  kind: 'joined' | 'left' | 'aborted' | 'epoch' | 'status';
  text: string;
}

export interface FeedCursor {
  generation: number;
  steps: number;
  epochs: number;
  lanes: number;
  events: number;
}

const LANE_STEPS = 40;
const MAX_EVENTS = 500;

export class LiveFeed {
  readonly series = new Series();
  status: RunStatus = 'starting';
  info: FeedInfo | undefined;
  private readonly startedAtMs = performance.now();
  private readonly startedAt = Date.now();
  private last: TelemetryStep | undefined;
  private readonly epochs: Array<TelemetryEpoch & { step: number }> = [];
  /** Ring of the last LANE_STEPS step details; `lanesPushed` counts all ever pushed. */
  private readonly lanes: Array<StepDetail | undefined> = new Array(LANE_STEPS);
  private lanesPushed = 0;
  private readonly workers = new Map<string, WorkerTotals>();
  private readonly events: FeedEvent[] = [];
  private eventsPushed = 0;

  constructor(private readonly epochsPlanned = 1) {}

  private now(): number {
    return (performance.now() - this.startedAtMs) / 1000;
  }

  setInfo(info: FeedInfo): void {
    this.info = info;
  }

  setStatus(status: RunStatus, detail?: string): void {
    if (this.status === status) return;
    this.status = status;
    this.event('status', detail ? `${status}: ${detail}` : status);
  }

  onStep(e: TelemetryStep): void {
    this.last = e;
    if (this.status === 'waiting' || this.status === 'starting') this.setStatus('training');
    this.series.push(e.step, this.now(), e.loss, e.imagesPerSecond, e.samples, e.worldSize);
  }

  onStepDetail(d: StepDetail): void {
    this.lanes[this.lanesPushed++ % LANE_STEPS] = d;
    for (let i = 0; i < d.workers.length; i++) {
      const w = d.workers[i]!;
      const t = this.worker(w.id);
      t.steps++;
      t.samples += w.samples;
      t.compute += w.compute;
      t.encode += w.encode;
      t.transfer += w.transfer;
      t.wait += w.wait;
      t.optimizer += w.optimizer;
      t.total += w.total;
      if (i === d.slowest) {
        t.stragglerSteps++;
        t.waitCaused += d.waitCausedMs;
      }
    }
  }

  onEpoch(e: TelemetryEpoch): void {
    this.epochs.push({ ...e, step: this.last?.step ?? 0 });
    this.event('epoch', `epoch ${e.epoch + 1} done: test accuracy ${(e.testAccuracy * 100).toFixed(2)}%, test loss ${e.testLoss.toFixed(4)}`);
  }

  onStepAborted(e: StepAborted): void {
    this.event('aborted', `step ${e.step} aborted and redone: ${e.reason}`);
  }

  onMembership(e: MembershipChange): void {
    this.worker(e.workerId).alive = e.kind === 'joined';
    const size = `${e.size} worker${e.size === 1 ? '' : 's'}`;
    this.event(e.kind, e.kind === 'joined' ? `${e.workerId} joined (${size})` : `${e.workerId} left: ${e.reason ?? 'gone'} (${size})`);
  }

  private worker(id: string): WorkerTotals {
    let t = this.workers.get(id);
    if (!t) {
      t = { id, alive: true, steps: 0, samples: 0, compute: 0, encode: 0, transfer: 0, wait: 0, optimizer: 0, total: 0, stragglerSteps: 0, waitCaused: 0 };
      this.workers.set(id, t);
    }
    return t;
  }

  private event(kind: FeedEvent['kind'], text: string): void {
    this.events.push({ t: round6(this.now()), kind, text });
    if (this.events.length > MAX_EVENTS) this.events.shift();
    this.eventsPushed++;
  }

  private progress() {
    const e = this.last;
    const elapsed = this.now();
    if (!e) return null;
    const done = (e.epoch + e.epochFraction) / this.epochsPlanned;
    return {
      epoch: e.epoch,
      epochs: this.epochsPlanned,
      step: e.step,
      stepInEpoch: e.stepInEpoch,
      stepsInEpoch: e.stepsInEpoch,
      worldSize: e.worldSize,
      loss: e.loss,
      imagesPerSecond: e.imagesPerSecond,
      fraction: done,
      elapsedSeconds: elapsed,
      etaSeconds: done > 0 && done < 1 ? (elapsed * (1 - done)) / done : done >= 1 ? 0 : null,
    };
  }

  private lanesSince(pushed: number): unknown[] {
    const out: unknown[] = [];
    const from = Math.max(pushed, this.lanesPushed - LANE_STEPS);
    const ms = (t: number) => Math.round((t - this.startedAtMs) * 1000) / 1000;
    for (let k = from; k < this.lanesPushed; k++) {
      const d = this.lanes[k % LANE_STEPS]!;
      out.push({
        step: d.step,
        dispatched: ms(d.dispatchedAtMs),
        optimizer: ms(d.optimizerStartMs),
        committed: ms(d.committedAtMs),
        slowest: d.slowest,
        workers: d.workers.map((w) => ({ id: w.id, compute: w.compute, encode: w.encode, transfer: w.transfer, wait: w.wait, delivered: ms(w.deliveredAtMs) })),
      });
    }
    return out;
  }

  cursor(): FeedCursor {
    return { generation: this.series.generation, steps: this.series.length, epochs: this.epochs.length, lanes: this.lanesPushed, events: this.eventsPushed };
  }

  /** The whole state, for a client that just connected (or fell behind a decimation). */
  snapshot(): { payload: Record<string, unknown>; cursor: FeedCursor } {
    const cursor = this.cursor();
    return {
      payload: {
        info: this.info ?? null,
        startedAt: this.startedAt,
        status: this.status,
        progress: this.progress(),
        steps: this.series.slice(0),
        epochs: this.epochs,
        lanes: this.lanesSince(0),
        workers: [...this.workers.values()],
        events: this.events,
      },
      cursor,
    };
  }

  /** What is new since `cursor`, or a snapshot when the series was decimated meanwhile. */
  since(cursor: FeedCursor): { payload: Record<string, unknown>; cursor: FeedCursor; snapshot: boolean } {
    if (cursor.generation !== this.series.generation) return { ...this.snapshot(), snapshot: true };
    const next = this.cursor();
    const newEvents = this.eventsPushed - cursor.events;
    return {
      payload: {
        status: this.status,
        progress: this.progress(),
        steps: this.series.slice(cursor.steps),
        epochs: this.epochs.slice(cursor.epochs),
        lanes: this.lanesSince(cursor.lanes),
        workers: [...this.workers.values()],
        events: newEvents > 0 ? this.events.slice(-Math.min(newEvents, this.events.length)) : [],
      },
      cursor: next,
      snapshot: false,
    };
  }
}
