/**
 * The coordinator's end of one shard process: its Control stream. Init (or restore) sends the
 * shard's state and waits for Ready; prepare/commit resolve with the shard's answer for that
 * round; snapshot reassembles the shard's state. When the stream fails or ends, every pending
 * and later call rejects with ShardLostError and `lost` resolves with it.
 */
import * as grpc from '@grpc/grpc-js';
import { tokenMetadata } from '../rpc/auth.js';
import { ChunkAssembler, splitIntoChunks } from '../rpc/chunks.js';
import { loadProto, type ShardCommand, type ShardReport__Output } from '../rpc/proto.js';
import type { GradDtype } from '../rpc/tensor-codec.js';
import { channelCredentials, type TlsFiles } from '../rpc/tls.js';
import type { AdamOptions } from './adam.js';
import { ShardLostError } from './errors.js';
import type { ShardState } from './shard.js';
import type { ShardRange } from './shard-layout.js';
import type { ExpectedSlice } from './slice-collector.js';
import { clientChannelOptions } from '../rpc/flow-control.js';

export interface PreparedAnswer {
  ok: boolean;
  nonFiniteWorkerIds: string[];
}

export interface RemoteShardOptions {
  address: string;
  range: ShardRange;
  token: string | undefined;
  tls: TlsFiles;
  /** How long to wait for the shard to accept a connection. */
  connectTimeoutMs: number;
  /**
   * A shard process that does not answer HTTP/2 pings for this long is lost (a hung or stopped
   * process keeps its connection open; pings go every quarter of it). Undefined: no pings, for
   * shards served by workers, whose event loop a computation blocks for as long as it takes.
   */
  silenceTimeoutMs?: number;
}

interface Waiter<T> {
  resolve: (value: T) => void;
  reject: (err: Error) => void;
}

const TENSORS = ['WEIGHTS', 'ADAM_M', 'ADAM_V'] as const;

export class RemoteShard {
  private readonly client: grpc.Client & { Control: (md: grpc.Metadata) => grpc.ClientDuplexStream<ShardCommand, ShardReport__Output> };
  private call: grpc.ClientDuplexStream<ShardCommand, ShardReport__Output> | undefined;
  private error: ShardLostError | undefined;
  readonly lost: Promise<ShardLostError>;
  private markLost!: (err: ShardLostError) => void;
  private ready: Waiter<number> | undefined;
  private readonly prepared = new Map<number, Waiter<PreparedAnswer>>();
  private readonly committed = new Map<number, Waiter<number>>();
  private snapshotWaiter: { waiter: Waiter<ShardState>; parts: ChunkAssembler[]; version: number; iterations: number } | undefined;
  private closing = false;
  /** Where workers open their exchange connection (from the shard's Ready; 0 before). */
  exchangePort = 0;
  /** Tensor bytes sent to and received from the shard on the control stream (state, snapshots). */
  bytesSent = 0;
  bytesReceived = 0;

  constructor(private readonly options: RemoteShardOptions) {
    const Client = loadProto().tensorfleet.v1.ParameterShard;
    const keepalive = options.silenceTimeoutMs === undefined ? {} : { 'grpc.keepalive_time_ms': Math.max(250, Math.floor(options.silenceTimeoutMs / 4)), 'grpc.keepalive_timeout_ms': options.silenceTimeoutMs };
    this.client = new Client(options.address, channelCredentials(options.tls), { ...clientChannelOptions(), ...keepalive }) as unknown as RemoteShard['client'];
    this.lost = new Promise((resolve) => (this.markLost = resolve));
  }

  /** Why the shard was lost (undefined while it serves). */
  get failure(): ShardLostError | undefined {
    return this.error;
  }

  get range(): ShardRange {
    return this.options.range;
  }

  get address(): string {
    return this.options.address;
  }

  /** Connects, sends Init and the state slice, and resolves with the shard's version once it is Ready. */
  async init(base: { jobId: string; gradDtype: GradDtype; chunkBytes: number; adam: Required<Omit<AdamOptions, 'simd'>> }, state: ShardState): Promise<number> {
    if (!this.call) await this.connect();
    const { range } = this.options;
    const { adam } = base;
    const ready = new Promise<number>((resolve, reject) => (this.ready = { resolve, reject }));
    this.write({
      init: { jobId: base.jobId, shardIndex: range.index, offset: range.offset, length: range.length, version: state.version, iterations: state.iterations, lr: adam.lr, beta1: adam.beta1, beta2: adam.beta2, epsilon: adam.epsilon, gradDtype: base.gradDtype, chunkBytes: base.chunkBytes },
    });
    [state.weights, state.m, state.v].forEach((a, i) => {
      for (const chunk of splitIntoChunks(a, base.chunkBytes)) {
        this.bytesSent += chunk.data.length;
        this.write({ state: { tensor: TENSORS[i], chunk } });
      }
    });
    return ready;
  }

  prepare(step: number, round: number, expected: ExpectedSlice[]): Promise<PreparedAnswer> {
    const answer = new Promise<PreparedAnswer>((resolve, reject) => this.prepared.set(round, { resolve, reject }));
    this.write({ prepare: { step, round, expected } });
    return answer;
  }

  commit(round: number): Promise<number> {
    const answer = new Promise<number>((resolve, reject) => this.committed.set(round, { resolve, reject }));
    this.write({ commit: { round } });
    return answer;
  }

  abort(round: number): void {
    this.prepared.delete(round);
    if (!this.error) this.write({ abort: { round } });
  }

  snapshot(): Promise<ShardState> {
    if (this.snapshotWaiter) throw new RangeError('a snapshot is already in flight');
    const length = this.options.range.length;
    const answer = new Promise<ShardState>((resolve, reject) => {
      this.snapshotWaiter = { waiter: { resolve, reject }, parts: TENSORS.map(() => new ChunkAssembler(length * 4)), version: 0, iterations: 0 };
    });
    this.write({ snapshot: {} });
    return answer;
  }

  close(): void {
    if (this.closing) return;
    this.closing = true;
    this.fail('closed by the coordinator');
    this.call?.cancel();
    this.client.close();
  }

  private write(msg: ShardCommand): void {
    if (this.error) throw this.error;
    this.call!.write(msg);
  }

  private async connect(): Promise<void> {
    await new Promise<void>((resolve, reject) =>
      this.client.waitForReady(Date.now() + this.options.connectTimeoutMs, (err) => (err ? reject(new ShardLostError(this.options.range.index, this.options.address, `cannot connect (${err.message})`)) : resolve())),
    );
    const call = this.client.Control(tokenMetadata(this.options.token));
    this.call = call;
    call.on('data', (msg: ShardReport__Output) => {
      try {
        this.onReport(msg);
      } catch (err) {
        this.fail(`protocol error: ${(err as Error).message}`);
        call.cancel();
      }
    });
    call.on('error', (err: grpc.ServiceError) => this.fail(`${grpc.status[err.code] ?? err.code}: ${err.details || err.message}`));
    call.on('end', () => this.fail('the shard ended its stream'));
  }

  private onReport(msg: ShardReport__Output): void {
    switch (msg.kind) {
      case 'ready':
        this.exchangePort = msg.ready!.exchangePort;
        this.ready?.resolve(Number(msg.ready!.version));
        this.ready = undefined;
        return;
      case 'prepared': {
        const p = msg.prepared!;
        const waiter = this.prepared.get(Number(p.round));
        this.prepared.delete(Number(p.round));
        waiter?.resolve({ ok: p.ok, nonFiniteWorkerIds: p.nonFiniteWorkerIds });
        return;
      }
      case 'committed': {
        const c = msg.committed!;
        const waiter = this.committed.get(Number(c.round));
        this.committed.delete(Number(c.round));
        waiter?.resolve(Number(c.version));
        return;
      }
      case 'state': {
        const s = this.snapshotWaiter;
        if (!s) throw new RangeError('snapshot state without a request');
        const t = msg.state!;
        const index = TENSORS.indexOf(t.tensor as (typeof TENSORS)[number]);
        if (index < 0) throw new RangeError(`unknown tensor '${t.tensor}'`);
        this.bytesReceived += t.chunk?.data.length ?? 0;
        s.parts[index]!.add(t.chunk);
        s.version = Number(t.version);
        s.iterations = Number(t.iterations);
        if (!s.parts.every((p) => p.complete)) return;
        this.snapshotWaiter = undefined;
        const [weights, m, v] = s.parts.map((p) => Float32Array.from(p.values));
        s.waiter.resolve({ weights: weights!, m: m!, v: v!, version: s.version, iterations: s.iterations });
        return;
      }
      default:
        throw new RangeError(`unexpected report '${msg.kind ?? 'empty'}'`);
    }
  }

  private fail(reason: string): void {
    if (this.error) return;
    const err = new ShardLostError(this.options.range.index, this.options.address, reason);
    this.error = err;
    this.ready?.reject(err);
    for (const w of [...this.prepared.values(), ...this.committed.values()]) w.reject(err);
    this.snapshotWaiter?.waiter.reject(err);
    this.prepared.clear();
    this.committed.clear();
    this.snapshotWaiter = undefined;
    if (!this.closing) this.markLost(err);
  }
}
