/**
 * A parameter-server shard as a gRPC service (`tensorfleet.v1.ParameterShard`, run by the
 * `parameter-server` program): the coordinator drives one VariableShard over the Control
 * stream (Init, Prepare, Commit, Abort, Snapshot); workers send their gradient slices and get
 * the shard's weights over exchange connections (length-prefixed frames on a port of their own,
 * shard.proto; exchange-connection.ts). Same rules as the coordinator: the job token on every call and connection, TLS
 * when configured, INVALID_ARGUMENT for bytes that do not parse, and grpc.health.v1 on the gRPC
 * port.
 */
import type * as net from 'node:net';
import * as grpc from '@grpc/grpc-js';
import { HealthImplementation } from 'grpc-health-check';
import { TokenVerifier } from '../rpc/auth.js';
import { ChunkAssembler, splitIntoChunks } from '../rpc/chunks.js';
import { createFrameServer } from '../rpc/frames.js';
import { loadProto, type ShardCommand__Output, type ShardDownload, type ShardReport, type ShardUpload__Output } from '../rpc/proto.js';
import { isGradDtype } from '../rpc/tensor-codec.js';
import { serverCredentials, type TlsFiles } from '../rpc/tls.js';
import { malformed, tolerantService } from '../rpc/tolerant.js';
import { shutdownServer } from '../rpc/shutdown.js';
import { silentLogger, type Logger } from '../telemetry/logger.js';
import type { SharedRegionReader } from '../rpc/shared-region.js';
import { serveExchange, type Downlink, type ExchangeHost } from './exchange-connection.js';
import { ShardStateError } from './errors.js';
import { createShardKernel } from './shard-kernel.js';
import { VariableShard } from './shard.js';
import { SliceCollector } from './slice-collector.js';
import { raiseServerWindows, serverOptions } from '../rpc/flow-control.js';

type ControlCall = grpc.ServerDuplexStream<ShardCommand__Output, ShardReport>;

/** A worker in this process exchanging with this shard without a connection (co-located shards). */
export interface LocalExchange {
  /** One gradient chunk, as the worker would send it on Exchange (taken synchronously: the bytes may be reused after). */
  send(msg: ShardUpload__Output): void;
  close(): void;
}
type Init = NonNullable<ShardCommand__Output['init']>;

export const SHARD_SERVICE = 'tensorfleet.v1.ParameterShard';
const TENSORS = ['WEIGHTS', 'ADAM_M', 'ADAM_V'] as const;

export interface ShardServerOptions {
  token: string | undefined;
  tls?: TlsFiles;
  /** The port of the exchange connections (default 0: any free port, reported in Ready). */
  exchangePort?: number;
}

function fail(call: ControlCall, code: grpc.status, details: string): void {
  call.emit('error', Object.assign(new Error(details), { code, details }));
}

export class ShardServer {
  private readonly server = new grpc.Server(serverOptions());
  private readonly verifier: TokenVerifier;
  private readonly health = new HealthImplementation({ '': 'SERVING', [SHARD_SERVICE]: 'SERVING', liveness: 'SERVING' });
  private control: ControlCall | undefined;
  private readonly workers = new Map<string, Downlink>();
  private shard: VariableShard | undefined;
  private collector: SliceCollector | undefined;
  private chunkBytes = 1 << 20;
  /** An Init whose state chunks are still arriving. */
  private loading: { init: Init; parts: ChunkAssembler[] } | undefined;
  port = 0;
  /** The port of the exchange connections (on every host the gRPC port is bound on). */
  exchangePort = 0;
  private readonly exchangeServers: net.Server[] = [];
  private readonly sockets = new Set<net.Socket>();
  private exchangeHost: ExchangeHost | undefined;
  private closed = false;
  /** Called whenever an Init completes (a co-located worker's layout is then stale). */
  onInit: (() => void) | undefined;
  /** Weights chunks written to exchange connections and not yet handed to the socket. */
  private unflushed = 0;
  private flushWaiters: Array<() => void> = [];

  constructor(private readonly options: ShardServerOptions, private readonly log: Logger = silentLogger) {
    this.verifier = new TokenVerifier(options.token);
    this.exchangePort = options.exchangePort ?? 0;
    const service = loadProto().tensorfleet.v1.ParameterShard.service;
    this.server.addService(tolerantService(service), {
      Control: (call: ControlCall) => this.onControl(call),
    });
    this.health.addToServer(this.server);
  }

  get version(): number {
    return this.shard?.version ?? -1;
  }

  async start(host: string, port: number): Promise<number> {
    raiseServerWindows(this.server, 'beforeBind');
    this.port = await new Promise<number>((resolve, reject) => {
      this.server.bindAsync(`${host.includes(':') ? `[${host}]` : host}:${port}`, serverCredentials(this.options.tls ?? {}), (err, bound) => (err ? reject(err) : resolve(bound)));
    });
    raiseServerWindows(this.server, 'afterBind');
    await this.listenExchange(host);
    return this.port;
  }

  /** Binds the exchange port on `host` (the same port on every host after the first). */
  private async listenExchange(host: string): Promise<void> {
    const server = createFrameServer(this.options.tls ?? {}, (socket) => this.onExchange(socket));
    server.on('tlsClientError', (err: Error) => this.log.warn({ err: err.message }, 'exchange connection refused during the TLS handshake'));
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(this.exchangePort, host, () => {
        server.off('error', reject);
        resolve();
      });
    });
    this.exchangePort = (server.address() as net.AddressInfo).port;
    this.exchangeServers.push(server);
  }

  /** Ends every stream and stops serving (idempotent). */
  async close(graceMs = 2000): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.health.setStatus('', 'NOT_SERVING');
    this.control?.end();
    for (const server of this.exchangeServers) server.close();
    for (const socket of this.sockets) socket.end();
    const lingering = setTimeout(() => {
      for (const socket of this.sockets) socket.destroy();
    }, graceMs);
    lingering.unref();
    await shutdownServer(this.server, graceMs);
  }

  private authorized(call: ControlCall): boolean {
    const denied = this.verifier.check(call.metadata);
    if (!denied) return true;
    this.log.warn({ peer: call.getPeer(), reason: denied }, 'unauthenticated call refused');
    fail(call, grpc.status.UNAUTHENTICATED, denied);
    return false;
  }

  private onControl(call: ControlCall): void {
    if (!this.authorized(call)) return;
    if (this.control) {
      this.log.warn('a new coordinator connection replaces the previous one');
      fail(this.control, grpc.status.ABORTED, 'replaced by a newer coordinator connection');
    }
    this.control = call;
    let dead = false;
    call.on('data', (msg: ShardCommand__Output) => {
      if (dead) return;
      try {
        const bad = malformed(msg);
        if (bad !== undefined) throw new ShardStateError(`malformed message: ${bad}`);
        this.command(call, msg);
      } catch (err) {
        dead = true;
        const code = err instanceof ShardStateError || err instanceof RangeError || (err as Error).name === 'ChunkError' ? grpc.status.INVALID_ARGUMENT : grpc.status.INTERNAL;
        this.log.warn({ err: (err as Error).message }, 'rejecting coordinator command');
        fail(call, code, (err as Error).message);
      }
    });
    const gone = () => {
      if (this.control === call) this.control = undefined;
    };
    call.on('end', () => {
      gone();
      if (!dead) call.end();
    });
    call.on('error', gone);
    call.on('close', gone);
  }

  private command(call: ControlCall, msg: ShardCommand__Output): void {
    switch (msg.kind) {
      case 'init':
        return this.beginInit(msg.init!);
      case 'state':
        return this.loadState(call, msg.state!);
      case 'prepare': {
        const { collector } = this.ready();
        const p = msg.prepare!;
        collector.expect(Number(p.step), Number(p.round), p.expected.map((e) => ({ workerId: e.workerId, rank: e.rank, sampleCount: e.sampleCount })));
        return this.tryPrepare();
      }
      case 'commit': {
        const { shard, collector } = this.ready();
        const round = Number(msg.commit!.round);
        const version = shard.commit(round);
        collector.close(round);
        call.write({ committed: { round, version } });
        for (const worker of this.workers.values()) this.sendWeights(worker);
        return;
      }
      case 'abort': {
        const { shard, collector } = this.ready();
        const round = Number(msg.abort!.round);
        shard.abort(round);
        collector.close(round);
        return;
      }
      case 'snapshot': {
        const { shard } = this.ready();
        const arrays = [shard.weights, shard.optimizer.m, shard.optimizer.v];
        TENSORS.forEach((tensor, i) => {
          for (const chunk of splitIntoChunks(arrays[i]!, this.chunkBytes)) call.write({ state: { tensor, version: shard.version, iterations: shard.optimizer.iterations, chunk } });
        });
        return;
      }
      default:
        throw new ShardStateError(`unexpected command '${msg.kind ?? 'empty'}'`);
    }
  }

  private ready(): { shard: VariableShard; collector: SliceCollector } {
    if (!this.shard || !this.collector || this.loading) throw new ShardStateError('the shard is not initialized (Init first)');
    return { shard: this.shard, collector: this.collector };
  }

  private beginInit(init: Init): void {
    const length = Number(init.length);
    if (!Number.isSafeInteger(length) || length < 1 || length > 1 << 28) throw new ShardStateError(`shard length ${init.length} out of range`);
    if (!isGradDtype(init.gradDtype)) throw new ShardStateError(`gradient encoding '${init.gradDtype}' is not supported`);
    if (!(init.lr > 0) || !(init.chunkBytes >= 4)) throw new ShardStateError('init needs lr > 0 and chunk_bytes >= 4');
    this.loading = { init, parts: TENSORS.map(() => new ChunkAssembler(length * 4)) };
  }

  private loadState(call: ControlCall, msg: NonNullable<ShardCommand__Output['state']>): void {
    const loading = this.loading;
    if (!loading) throw new ShardStateError('state chunks without an Init');
    const index = TENSORS.indexOf(msg.tensor as (typeof TENSORS)[number]);
    if (index < 0) throw new ShardStateError(`unknown tensor '${msg.tensor}'`);
    loading.parts[index]!.add(msg.chunk);
    if (!loading.parts.every((p) => p.complete)) return;
    const { init, parts } = loading;
    const range = { index: init.shardIndex, offset: Number(init.offset), length: Number(init.length) };
    const [weights, m, v] = parts.map((p) => p.values);
    // The weights live in the kernel's memory: Adam updates them in place, with no copy in or out.
    const kernel = createShardKernel(range.length);
    const shard = new VariableShard(range, kernel.w, { lr: init.lr, beta1: init.beta1, beta2: init.beta2, epsilon: init.epsilon }, kernel);
    shard.restore({ weights: weights!, m: m!, v: v!, iterations: Number(init.iterations), version: Number(init.version) });
    this.shard = shard;
    this.collector = new SliceCollector(range.length, init.gradDtype as 'float32');
    this.chunkBytes = init.chunkBytes;
    this.loading = undefined;
    this.log.info({ jobId: init.jobId, shard: range.index, offset: range.offset, length: range.length, version: shard.version }, 'shard initialized');
    call.write({ ready: { version: shard.version, exchangePort: this.exchangePort } });
    this.onInit?.();
    for (const worker of this.workers.values()) this.sendWeights(worker);
  }

  /** Answers Prepared once every expected slice of the current round is here. */
  private tryPrepare(): void {
    const done = this.collector?.complete();
    if (!done || !this.shard) return;
    const result = this.shard.prepare(done.round, done.contributions);
    this.control?.write({ prepared: { round: done.round, ok: result.ok, nonFiniteWorkerIds: result.nonFinite.map((i) => done.workerIds[i]!) } });
  }

  /**
   * Attaches worker `workerId` of this process: its gradient chunks are taken as from an
   * exchange connection and `deliver` gets this shard's weights (on attach and after every commit;
   * the chunks are views of the shard's memory, valid during the call only).
   */
  connectLocal(workerId: string, deliver: (msg: ShardDownload) => void): LocalExchange {
    const downlink: Downlink = {
      write: (msg, done) => {
        try {
          deliver(msg);
        } catch (err) {
          this.log.warn({ workerId, err: (err as Error).message }, 'the co-located worker refused weights');
        }
        done?.();
      },
    };
    this.workers.set(workerId, downlink);
    this.sendWeights(downlink);
    return {
      send: (msg) => this.onGradient(workerId, msg),
      close: () => {
        if (this.workers.get(workerId) === downlink) this.workers.delete(workerId);
      },
    };
  }

  /** A gradient chunk from `workerId`; throws on a malformed one. */
  private onGradient(workerId: string, msg: ShardUpload__Output): void {
    if (msg.kind !== 'gradient') throw new ShardStateError(`unexpected '${msg.kind ?? 'empty'}' message after hello`);
    if (!this.collector) throw new ShardStateError('gradient before the shard was initialized');
    const g = msg.gradient!;
    this.collector.add(workerId, Number(g.step), Number(g.round), g.chunk);
    this.tryPrepare();
  }

  /** A whole gradient slice in the worker's shared region; throws on a malformed one. */
  private onSharedGradient(workerId: string, msg: NonNullable<ShardUpload__Output['sharedGradient']>, region: SharedRegionReader | undefined): void {
    if (!region) throw new ShardStateError('shared gradient without an accepted shared region');
    if (!this.collector) throw new ShardStateError('gradient before the shard was initialized');
    const totalBytes = Number(msg.totalBytes);
    if (totalBytes > region.bytes) throw new ShardStateError(`shared gradient of ${totalBytes} bytes in a ${region.bytes}-byte region`);
    const sequence = Number(msg.sequence);
    this.collector.addWhole(workerId, Number(msg.step), Number(msg.round), totalBytes, (dst) => region.read(sequence, (read) => read(dst, 0)));
    this.tryPrepare();
  }

  private sendWeights(call: Downlink): void {
    const shard = this.shard;
    if (!shard || this.loading) return;
    this.unflushed++;
    if (call.writeShared?.(shard.version, new Uint8Array(shard.weights.buffer, shard.weights.byteOffset, shard.weights.byteLength), () => this.onFlushed())) return;
    this.unflushed--;
    for (const chunk of splitIntoChunks(shard.weights, this.chunkBytes)) {
      this.unflushed++;
      call.write({ weights: { version: shard.version, chunk } }, () => this.onFlushed());
    }
  }

  private onFlushed(): void {
    if (--this.unflushed > 0) return;
    const waiters = this.flushWaiters;
    this.flushWaiters = [];
    for (const resolve of waiters) resolve();
  }

  /**
   * Resolves once every weights chunk written so far has left this process. A worker serving a
   * co-located shard waits for it before computing: its computation blocks the event loop, and
   * the bytes still queued here would wait for the whole step, and the other members with them.
   */
  flushed(): Promise<void> {
    if (this.unflushed === 0) return Promise.resolve();
    return new Promise((resolve) => this.flushWaiters.push(resolve));
  }

  /** What the exchange connections (exchange-connection.ts) do with this server. */
  private exchangeHostOf(): ExchangeHost {
    return {
      log: this.log,
      checkToken: (token) => this.verifier.checkToken(token),
      attach: (workerId, downlink) => {
        this.workers.get(workerId)?.refuse?.(grpc.status.ABORTED, 'replaced by a newer connection of the same worker');
        this.workers.set(workerId, downlink);
      },
      sendWeights: (downlink) => this.sendWeights(downlink),
      detach: (workerId, downlink) => {
        if (this.workers.get(workerId) === downlink) this.workers.delete(workerId);
      },
      forget: (workerId) => this.collector?.forget(workerId),
      gradient: (workerId, msg) => this.onGradient(workerId, msg),
      sharedGradient: (workerId, msg, region) => this.onSharedGradient(workerId, msg, region),
    };
  }

  /** One worker's exchange connection (exchange-connection.ts). */
  private onExchange(socket: net.Socket): void {
    this.sockets.add(socket);
    socket.on('close', () => this.sockets.delete(socket));
    serveExchange(socket, (this.exchangeHost ??= this.exchangeHostOf()));
  }
}
