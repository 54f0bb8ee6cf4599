/**
 * The coordinator's side of one worker's Attach stream: identity, the weights version it holds,
 * the gradient being received for its current round, and its counters for the report.
 */
import type * as grpc from '@grpc/grpc-js';
import { ChunkAssembler, splitIntoChunks } from '../rpc/chunks.js';
import { bytesPerElement, decodeGradient, type GradDtype } from '../rpc/tensor-codec.js';
import type { CoordinatorMessage, WorkerMessage__Output } from '../rpc/proto.js';
import type { RankedContribution } from '../ps/step-barrier.js';
import type { WorkerStepPhases } from '../telemetry/types.js';
import { ProtocolError } from './errors.js';
import { WARMUP_STEPS } from './steady-rate.js';

/** How many heartbeat timeouts a worker's first step may keep it silent (slow backends, large batches). */
export const FIRST_STEP_GRACE = 10;

export type AttachCall = grpc.ServerDuplexStream<WorkerMessage__Output, CoordinatorMessage>;
type GradientMessage = NonNullable<WorkerMessage__Output['gradient']>;

interface Expected {
  round: number;
  step: number;
  rank: number;
  sampleCount: number;
  deliver: (c: RankedContribution) => void;
}

export class WorkerSession {
  /** Weights version this worker holds (-1: none yet). */
  versionHeld = -1;
  steps = 0;
  samples = 0;
  computeMs = 0;
  maxRssBytes = 0;
  /** Gradients that arrived for a round that was no longer current (aborted steps). */
  staleGradients = 0;
  /** Tensor payload bytes (chunk data) sent to and received from this worker. */
  bytesSent = 0;
  bytesReceived = 0;
  closed = false;
  /** Co-located shards: where this worker's shard listens (set by its ShardListening). */
  shardAddress: string | undefined;
  /** Co-located shards: the shard list to send with this worker's next Step (the group changed). */
  pendingShards: { address: string; exchangePort: number; offset: number; length: number; workerId: string }[] | undefined;
  /** When the last message of any kind arrived (performance.now() ms). */
  lastSeenMs = performance.now();
  /** Summed step phases of this worker (ms), for the report's step split. */
  readonly phases = { compute: 0, encode: 0, transfer: 0, wait: 0, optimizer: 0, total: 0, steps: 0 };
  /** When this worker's gradient of the current round was complete (performance.now() ms). */
  deliveredAtMs = 0;
  /** When the current step was dispatched to this worker, and when its last heartbeat came. */
  private assignedAtMs = 0;
  private lastHeartbeatMs = 0;
  /** Straggler attribution: steps where this worker's gradient came last, the others' waiting it caused and the delay (ms). */
  stragglerSteps = 0;
  waitCausedMs = 0;
  delayCausedMs = 0;
  private lastComputeMs = 0;
  private lastEncodeMs = 0;
  /** CPU time its process reported for its steps after the first WARMUP_STEPS (ms), and how many steps reported it. */
  readonly cpu = { ms: 0, steps: 0 };
  /** Smoothed compute time of a step, to allow slow backends time before declaring silence. */
  computeMsAverage = 0;
  private readonly gradient: ChunkAssembler;
  /** float32 gradient decoded from a compressed payload (unused for float32). */
  private readonly decoded: Float32Array | undefined;
  private expected: Expected | undefined;

  constructor(
    readonly id: string,
    readonly pid: number,
    readonly hostname: string,
    readonly backend: string,
    /** What computes (BackendInfo.device), as the worker said in its hello. */
    readonly device: string,
    /** Order of admission; ranks follow it. */
    readonly joinSeq: number,
    private readonly call: AttachCall,
    modelSize: number,
    private readonly gradDtype: GradDtype = 'float32',
  ) {
    this.gradient = new ChunkAssembler(modelSize * bytesPerElement(gradDtype));
    this.decoded = gradDtype === 'float32' ? undefined : new Float32Array(modelSize);
  }

  send(message: CoordinatorMessage): void {
    if (!this.closed) this.call.write(message);
  }

  sendWeights(version: number, weights: Float32Array, chunkBytes: number): void {
    for (const chunk of splitIntoChunks(weights, chunkBytes)) {
      this.bytesSent += chunk.data.length;
      this.send({ weights: { version, chunk } });
    }
    this.versionHeld = version;
  }

  /** Dispatches a step to this worker; `deliver` is called once its whole gradient has arrived. */
  assign(expected: Expected, message: NonNullable<CoordinatorMessage['step']>): void {
    this.expected = expected;
    this.assignedAtMs = performance.now();
    this.gradient.reset();
    const shards = this.pendingShards;
    this.pendingShards = undefined;
    this.send({ step: shards ? { ...message, shards } : message });
  }

  /** Takes one gradient chunk; chunks of rounds that are no longer current are dropped. */
  onGradient(msg: GradientMessage): void {
    const expected = this.expected;
    if (!expected || Number(msg.round) !== expected.round) {
      if (Number(msg.chunk?.offset ?? 0) === 0) this.staleGradients++;
      return;
    }
    if (Number(msg.step) !== expected.step) throw new ProtocolError(`gradient for round ${msg.round} names step ${msg.step}; expected ${expected.step}`);
    if (!Number.isFinite(msg.computeMs) || msg.computeMs < 0 || !Number.isFinite(msg.loss)) {
      throw new ProtocolError(`gradient stats out of range (computeMs ${msg.computeMs}, loss ${msg.loss})`);
    }
    if (msg.sampleCount !== expected.sampleCount) {
      throw new ProtocolError(`gradient counts ${msg.sampleCount} samples; the step assigned ${expected.sampleCount}`);
    }
    this.bytesReceived += msg.chunk?.data.length ?? 0;
    if (!this.gradient.add(msg.chunk)) return;
    this.expected = undefined;
    this.steps++;
    this.samples += msg.sampleCount;
    this.computeMs += msg.computeMs;
    this.lastComputeMs = msg.computeMs;
    this.lastEncodeMs = Number.isFinite(msg.lastEncodeMs) && msg.lastEncodeMs >= 0 ? msg.lastEncodeMs : 0;
    this.deliveredAtMs = performance.now();
    this.computeMsAverage = this.steps === 1 ? msg.computeMs : 0.8 * this.computeMsAverage + 0.2 * msg.computeMs;
    this.maxRssBytes = Math.max(this.maxRssBytes, Number(msg.maxRssBytes));
    // Its first steps include joining and compiling the kernels (0: a worker that does not report it).
    if (this.steps > WARMUP_STEPS && Number.isFinite(msg.cpuMs) && msg.cpuMs > 0) {
      this.cpu.ms += msg.cpuMs;
      this.cpu.steps++;
    }
    // With shard processes the tensors bypass this stream; the worker reports their bytes.
    this.bytesReceived += Number(msg.shardBytesSent) || 0;
    this.bytesSent += Number(msg.shardBytesReceived) || 0;
    let values = this.gradient.values;
    if (this.decoded) {
      decodeGradient(this.gradient.uint16, this.gradDtype, this.decoded);
      values = this.decoded;
    }
    expected.deliver({ rank: expected.rank, sampleCount: msg.sampleCount, loss: msg.loss, values });
  }

  /** Books one committed step: its wall time from dispatch to commit, the optimizer's share, and when the last gradient came. Returns the step's phases. */
  recordPhases(totalMs: number, optimizerMs: number, lastDeliveredAtMs: number, rank = 0, samples = 0): WorkerStepPhases {
    const p = this.phases;
    const wait = lastDeliveredAtMs - this.deliveredAtMs;
    const transfer = Math.max(0, totalMs - this.lastComputeMs - this.lastEncodeMs - wait - optimizerMs);
    p.compute += this.lastComputeMs;
    p.encode += this.lastEncodeMs;
    p.wait += wait;
    p.optimizer += optimizerMs;
    p.transfer += transfer;
    p.total += totalMs;
    p.steps++;
    return { id: this.id, rank, samples, compute: this.lastComputeMs, encode: this.lastEncodeMs, transfer, wait, optimizer: optimizerMs, total: totalMs, deliveredAtMs: this.deliveredAtMs };
  }

  onHeartbeat(): void {
    this.lastHeartbeatMs = performance.now();
  }

  get busy(): boolean {
    return this.expected !== undefined;
  }

  /**
   * Silent for longer than allowed. A worker cannot send heartbeats while it computes (it sends
   * one as it starts a step, unless its steps are short: see startingHeartbeatNeeded in
   * worker/heartbeat.ts), so a busy one that said so gets room for three of its average steps, or
   * FIRST_STEP_GRACE timeouts while nothing is known of its speed.
   */
  isSilent(now: number, timeoutMs: number): boolean {
    // Room for computing only once the worker said it started this step (a heartbeat after dispatch).
    const started = this.busy && this.lastHeartbeatMs >= this.assignedAtMs;
    const room = started ? (this.steps === 0 ? FIRST_STEP_GRACE * timeoutMs : 3 * this.computeMsAverage) : 0;
    return now - this.lastSeenMs > timeoutMs + room;
  }

  /** Ends the stream with a final Stop message. */
  stop(reason: string, completed: boolean): void {
    if (this.closed) return;
    this.send({ stop: { reason, completed } });
    this.closed = true;
    this.call.end();
  }

  /** Ends the stream with an error status (protocol violations, silence, replacement). */
  fail(code: grpc.status, details: string): void {
    if (this.closed) return;
    this.closed = true;
    failCall(this.call, code, details);
  }
}

/** Ends a server stream with a gRPC status (grpc-js sends it as the stream's trailers). */
export function failCall(call: AttachCall, code: grpc.status, details: string): void {
  call.emit('error', Object.assign(new Error(details), { code, details }));
}
