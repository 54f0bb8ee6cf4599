/**
 * `--trace FILE`: a Chrome trace-event JSON file (chrome://tracing, https://ui.perfetto.dev) of
 * the run. One lane (thread) for the parameter server, one per worker; per step the parameter
 * server shows the step, gathering the gradients and the optimizer, and each worker its transfer
 * out, compute, encode, transfer in, wait (for the last gradient) and optimizer (waiting for the
 * new weights). Steps are recorded as numbers in a growable Float64Array; JSON is written once,
 * at the end.
 *
 * The coordinator sees a worker's round trip (dispatch to complete gradient) and the compute and
 * encode times the worker reports; it cannot see how the remaining transfer time splits between
 * the weights going out and the gradient coming back (the clocks are not shared), so the trace
 * draws half before the compute and half after the encode.
 */
import { closeSync, mkdirSync, openSync, renameSync, writeSync } from 'node:fs';
import { dirname } from 'node:path';
import { stragglerLine, summarizeStraggler, type StragglerSummary, type StragglerTotals } from './straggler.js';
import type { MembershipChange, StepAborted, StepDetail, TelemetryEpoch } from './types.js';

const HEADER = 9; // step, epoch, dispatched, optimizerStart, committed, workers, slowest, waitCaused, delay
const PER_WORKER = 7; // lane, compute, encode, transfer, wait, delivered, samples

interface Mark {
  atMs: number;
  name: string;
  args: Record<string, unknown>;
  /** Set for spans. */
  durMs?: number;
}

export interface TraceEvent {
  name: string;
  cat?: string;
  ph: 'X' | 'i' | 'M' | 'C';
  ts?: number;
  dur?: number;
  pid: number;
  tid?: number;
  s?: 'g' | 'p' | 't';
  args?: Record<string, unknown>;
}

export class TraceRecorder {
  private data = new Float64Array(1 << 14);
  private used = 0;
  private steps = 0;
  private readonly lanes = new Map<string, number>();
  private readonly laneIds: string[] = [];
  private readonly marks: Mark[] = [];
  private readonly totals: StragglerTotals[] = [];
  private lastCommitMs: number | undefined;
  private readonly pid = process.pid;

  /** Trace time zero (performance.now() ms). */
  constructor(private readonly originMs = performance.now()) {}

  get stepCount(): number {
    return this.steps;
  }

  private lane(id: string): number {
    let lane = this.lanes.get(id);
    if (lane === undefined) {
      lane = this.laneIds.length + 1;
      this.lanes.set(id, lane);
      this.laneIds.push(id);
      this.totals.push({ id, steps: 0, stragglerSteps: 0, waitCausedMs: 0, delayCausedMs: 0, totalMs: 0, computeMs: 0 });
    }
    return lane;
  }

  onStepDetail(d: StepDetail): void {
    const need = HEADER + PER_WORKER * d.workers.length;
    if (this.used + need > this.data.length) {
      const next = new Float64Array(Math.max(this.data.length * 2, this.used + need));
      next.set(this.data.subarray(0, this.used));
      this.data = next;
    }
    const a = this.data;
    let i = this.used;
    a[i++] = d.step;
    a[i++] = d.epoch;
    a[i++] = d.dispatchedAtMs;
    a[i++] = d.optimizerStartMs;
    a[i++] = d.committedAtMs;
    a[i++] = d.workers.length;
    a[i++] = d.slowest;
    a[i++] = d.waitCausedMs;
    a[i++] = d.delayMs;
    for (let k = 0; k < d.workers.length; k++) {
      const w = d.workers[k]!;
      const lane = this.lane(w.id);
      a[i++] = lane;
      a[i++] = w.compute;
      a[i++] = w.encode;
      a[i++] = w.transfer;
      a[i++] = w.wait;
      a[i++] = w.deliveredAtMs;
      a[i++] = w.samples;
      const t = this.totals[lane - 1]!;
      t.steps++;
      t.totalMs += w.total;
      t.computeMs += w.compute;
      if (k === d.slowest) {
        t.stragglerSteps++;
        t.waitCausedMs += d.waitCausedMs;
        t.delayCausedMs += d.delayMs;
      }
    }
    this.used = i;
    this.steps++;
    this.lastCommitMs = d.committedAtMs;
  }

  onEpoch(e: TelemetryEpoch, atMs = performance.now()): void {
    const from = this.lastCommitMs ?? atMs;
    this.marks.push({ atMs: from, durMs: atMs - from, name: `evaluate (epoch ${e.epoch + 1})`, args: { testAccuracy: e.testAccuracy, testLoss: e.testLoss, trainLoss: e.trainLoss } });
  }

  onStepAborted(e: StepAborted, atMs = performance.now()): void {
    this.marks.push({ atMs, name: `step ${e.step} aborted`, args: { reason: e.reason } });
  }

  onMembership(e: MembershipChange, atMs = performance.now()): void {
    this.marks.push({ atMs, name: `${e.workerId} ${e.kind}`, args: { workers: e.size, ...(e.reason ? { reason: e.reason } : {}) } });
  }

  straggler(): StragglerSummary | null {
    return summarizeStraggler(this.totals);
  }

  /** Every trace event, in order: metadata, then per step, then marks. */
  *events(): Generator<TraceEvent> {
    const pid = this.pid;
    const us = (ms: number) => Math.round((ms - this.originMs) * 1000);
    const dur = (ms: number) => Math.max(0, Math.round(ms * 1000));
    yield { name: 'process_name', ph: 'M', pid, args: { name: `tensorfleet coordinator (pid ${pid})` } };
    yield { name: 'thread_name', ph: 'M', pid, tid: 0, args: { name: 'parameter server' } };
    yield { name: 'thread_sort_index', ph: 'M', pid, tid: 0, args: { sort_index: 0 } };
    const sorted = [...this.laneIds].sort(naturalCompare);
    for (let l = 0; l < this.laneIds.length; l++) {
      yield { name: 'thread_name', ph: 'M', pid, tid: l + 1, args: { name: `worker ${this.laneIds[l]}` } };
      yield { name: 'thread_sort_index', ph: 'M', pid, tid: l + 1, args: { sort_index: sorted.indexOf(this.laneIds[l]!) + 1 } };
    }
    const a = this.data;
    let i = 0;
    while (i < this.used) {
      const step = a[i]!;
      const epoch = a[i + 1]!;
      const dispatched = a[i + 2]!;
      const optimizerStart = a[i + 3]!;
      const committed = a[i + 4]!;
      const n = a[i + 5]!;
      const slowest = a[i + 6]!;
      const waitCaused = a[i + 7]!;
      const delay = a[i + 8]!;
      i += HEADER;
      const slowestId = slowest >= 0 ? this.laneIds[a[i + slowest * PER_WORKER]! - 1] : undefined;
      yield {
        name: `step ${step}`,
        cat: 'step',
        ph: 'X',
        ts: us(dispatched),
        dur: dur(committed - dispatched),
        pid,
        tid: 0,
        args: { step, epoch, workers: n, ...(slowestId ? { slowest: slowestId, waitCausedMs: round3(waitCaused), delayMs: round3(delay) } : {}) },
      };
      yield { name: 'gather gradients', cat: 'transfer', ph: 'X', ts: us(dispatched), dur: dur(optimizerStart - dispatched), pid, tid: 0, args: { step } };
      yield { name: 'optimizer', cat: 'optimizer', ph: 'X', ts: us(optimizerStart), dur: dur(committed - optimizerStart), pid, tid: 0, args: { step } };
      for (let k = 0; k < n; k++, i += PER_WORKER) {
        const tid = a[i]!;
        const delivered = a[i + 5]!;
        const wait = a[i + 4]!;
        const args = { step, samples: a[i + 6]! };
        const roundTrip = Math.max(0, delivered - dispatched);
        // Compute and encode as reported, shrunk to the round trip if they do not fit (encode is the previous step's).
        const compute = Math.min(a[i + 1]!, roundTrip);
        const encode = Math.min(a[i + 2]!, roundTrip - compute);
        const half = (roundTrip - compute - encode) / 2;
        const computeStart = dispatched + half;
        yield { name: 'transfer', cat: 'transfer', ph: 'X', ts: us(dispatched), dur: dur(half), pid, tid, args: { ...args, direction: 'weights and step out (half of the transfer time, estimated)' } };
        yield { name: 'compute', cat: 'compute', ph: 'X', ts: us(computeStart), dur: dur(compute), pid, tid, args };
        yield { name: 'encode', cat: 'encode', ph: 'X', ts: us(computeStart + compute), dur: dur(encode), pid, tid, args };
        yield { name: 'transfer', cat: 'transfer', ph: 'X', ts: us(computeStart + compute + encode), dur: dur(delivered - (computeStart + compute + encode)), pid, tid, args: { ...args, direction: 'gradient in (half of the transfer time, estimated)' } };
        if (wait > 0) yield { name: 'wait', cat: 'wait', ph: 'X', ts: us(delivered), dur: dur(wait), pid, tid, args: { ...args, waitingFor: slowestId ?? '' } };
        yield { name: 'optimizer', cat: 'optimizer', ph: 'X', ts: us(optimizerStart), dur: dur(committed - optimizerStart), pid, tid, args };
      }
    }
    for (const m of this.marks) {
      if (m.durMs !== undefined) yield { name: m.name, cat: 'evaluate', ph: 'X', ts: us(m.atMs), dur: dur(m.durMs), pid, tid: 0, args: m.args };
      else yield { name: m.name, cat: 'membership', ph: 'i', s: 'g', ts: us(m.atMs), pid, tid: 0, args: m.args };
    }
  }

  /** Writes the trace atomically to `path` (streamed in chunks). Returns the number of events. */
  write(path: string, extra: Record<string, unknown> = {}): number {
    mkdirSync(dirname(path), { recursive: true });
    const tmp = `${path}.tmp-${process.pid}`;
    const fd = openSync(tmp, 'w');
    let count = 0;
    try {
      let buf = '{"displayTimeUnit":"ms","traceEvents":[\n';
      for (const e of this.events()) {
        buf += (count++ === 0 ? '' : ',\n') + JSON.stringify(e);
        if (buf.length > 1 << 20) {
          writeSync(fd, buf);
          buf = '';
        }
      }
      const straggler = this.straggler();
      buf += `\n],"otherData":${JSON.stringify({ generator: 'tensorfleet', steps: this.steps, workers: this.laneIds, straggler, stragglerLine: stragglerLine(straggler), ...extra })}}\n`;
      writeSync(fd, buf);
    } finally {
      closeSync(fd);
    }
    renameSync(tmp, path);
    return count;
  }
}

/** w2 before w10. */
export function naturalCompare(a: string, b: string): number {
  return a.localeCompare(b, 'en', { numeric: true });
}

function round3(x: number): number {
  return Math.round(x * 1000) / 1000;
}
