/**
 * A worker's exchange connections to the parameter-server shards (frames over TCP or TLS,
 * shard.proto), one per shard: each shard pushes its weights slice (on connect and after every
 * commit), written straight into the worker's model at the shard's offset (weights-target.ts); the
 * worker's gradient is sent to every shard as that shard's slice. A dropped connection is
 * reopened with capped, jittered backoff; a refusal with a code that is not retryable fails the
 * waiters (the worker then ends).
 */
import type * as net from 'node:net';
import * as grpc from '@grpc/grpc-js';
import { Backoff, isRetryable, sleep } from '../rpc/backoff.js';
import { splitIntoChunks } from '../rpc/chunks.js';
import { connectFrames, FrameWriter, hostOf, readFrames } from '../rpc/frames.js';
import { exchangeCodecs, type ShardDownload__Output, type ShardUpload } from '../rpc/proto.js';
import { SharedRegionReader, SharedRegionWriter } from '../rpc/shared-region.js';
import type { TlsFiles } from '../rpc/tls.js';
import type { Logger } from '../telemetry/logger.js';
import { RejectedError, SupersededError, UnexpectedMessageError } from './errors.js';
import type { LocalExchange, ShardServer } from '../ps/shard-server.js';
import type { WeightsTarget } from '../model/weights-target.js';

export interface ShardEndpointInfo {
  address: string;
  /** The shard's exchange port, on the host of `address`. */
  exchangePort: number;
  offset: number;
  length: number;
  /** Co-located shards: the worker serving it. */
  workerId?: string;
}

/** What a link does with a shard's weights slice, over a connection or in-process. */
abstract class SliceLink {
  version = -1;
  protected received = 0;
  private readonly byteLength: number;

  constructor(readonly index: number, readonly endpoint: ShardEndpointInfo, private readonly weights: WeightsTarget) {
    this.byteLength = endpoint.length * 4;
  }

  /** Sends one gradient chunk to the shard (dropped while the link is down: the step is then redone). */
  abstract write(msg: ShardUpload): void;
  abstract close(): void;

  /** Sends a whole gradient slice through a shared region if the shard accepted one; false when not (nothing sent). */
  writeShared(_step: number, _round: number, _bytes: Uint8Array): boolean {
    return false;
  }

  /**
   * Takes a whole weights slice, message `sequence` of a shared region (SharedWeights), straight
   * into the target; returns true when the slice is complete and good.
   */
  protected takeWhole(version: number, totalBytes: number, region: SharedRegionReader, sequence: number): boolean {
    this.version = -1;
    if (totalBytes !== this.byteLength) {
      this.received = -1; // a stale layout, as in take()
      return false;
    }
    this.received = 0;
    if (!region.read(sequence, (read) => this.weights.writeFrom(this.endpoint.offset * 4, totalBytes, read))) return false;
    this.received = totalBytes;
    this.version = version;
    return true;
  }

  /** Takes one weights chunk; returns true when the slice is complete. */
  take(msg: NonNullable<ShardDownload__Output['weights']>): boolean {
    const chunk = msg.chunk;
    if (!chunk) throw new UnexpectedMessageError(`shard ${this.index} sent weights without a chunk`);
    const offset = Number(chunk.offset);
    if (Number(chunk.totalBytes) !== this.byteLength) {
      // The shard was given another range (co-located shards re-formed over other members):
      // this link's layout is stale, and the coordinator sends the new one with the next step.
      this.version = -1;
      this.received = -1;
      return false;
    }
    if (offset === 0) this.received = 0;
    else if (this.received < 0) return false; // the rest of a slice of another size
    if (offset !== this.received || offset + chunk.data.length > this.byteLength || chunk.data.length % 4 !== 0) throw new UnexpectedMessageError(`shard ${this.index}: weights chunk at ${offset} out of order`);
    this.version = -1;
    this.weights.write(this.endpoint.offset * 4 + offset, chunk.data);
    this.received += chunk.data.length;
    if (this.received < this.byteLength) return false;
    this.version = Number(msg.version);
    return true;
  }
}

class ShardLink extends SliceLink {
  socket: net.Socket | undefined;
  private writer: FrameWriter | undefined;
  /** This connection's gradient region (offered in the hello), and the shard's weights region. */
  private gradients: SharedRegionWriter | undefined;
  private gradientsAccepted = false;
  private weightsRegion: SharedRegionReader | undefined;

  constructor(index: number, endpoint: ShardEndpointInfo, weights: WeightsTarget, private readonly tls: TlsFiles) {
    super(index, endpoint, weights);
  }

  open(): net.Socket {
    this.closeRegions();
    this.version = -1;
    this.received = 0;
    this.socket = connectFrames(hostOf(this.endpoint.address), this.endpoint.exchangePort, this.tls);
    this.writer = new FrameWriter(this.socket);
    this.gradients = SharedRegionWriter.create(this.endpoint.length * 4);
    return this.socket;
  }

  /** The hello's offer of this connection's gradient region, if it has one. */
  get offer(): SharedRegionWriter['offer'] | undefined {
    return this.gradients?.offer;
  }

  /** The shard opened the gradient region and offers its weights region: opens it, and says so. */
  accept(weights: { address: string; probe: Uint8Array; bytes: number } | null): void {
    if (!this.gradients) throw new UnexpectedMessageError(`shard ${this.index} accepted a shared region this worker did not offer`);
    this.gradientsAccepted = true;
    this.weightsRegion?.close();
    this.weightsRegion = weights ? SharedRegionReader.open(weights) : undefined;
    if (this.weightsRegion) this.write({ sharedOpened: {} });
  }

  override writeShared(step: number, round: number, bytes: Uint8Array): boolean {
    if (!this.gradientsAccepted || !this.gradients || !this.socket?.writable) return false;
    const sequence = this.gradients.write(bytes);
    this.writer!.write(exchangeCodecs().upload.frame({ sharedGradient: { step, round, sequence, totalBytes: bytes.byteLength } }));
    return true;
  }

  /** A whole weights slice in the shard's region; true when complete. */
  takeShared(msg: NonNullable<ShardDownload__Output['sharedWeights']>): boolean {
    const region = this.weightsRegion;
    if (!region) throw new UnexpectedMessageError(`shard ${this.index} sent weights through a shared region this worker has not opened`);
    return this.takeWhole(Number(msg.version), Number(msg.totalBytes), region, Number(msg.sequence));
  }

  write(msg: ShardUpload): void {
    // The gradient's bytes go to the socket as they are (FrameWriter): the worker rewrites its
    // gradient buffer only for a later step, which needs every shard to have this one.
    if (this.socket?.writable) this.writer!.write(exchangeCodecs().upload.frame(msg));
  }

  close(): void {
    this.socket?.destroy();
    this.closeRegions();
  }

  closeRegions(): void {
    this.gradients?.close();
    this.weightsRegion?.close();
    this.gradients = this.weightsRegion = undefined;
    this.gradientsAccepted = false;
  }
}

/** The shard this worker serves itself (co-located shards): no connection, one copy each way. */
class LocalShardLink extends SliceLink {
  private exchange: LocalExchange | undefined;

  attach(server: ShardServer, workerId: string, onWeights: (msg: NonNullable<ShardDownload__Output['weights']>) => void): void {
    this.exchange = server.connectLocal(workerId, (msg) => {
      if (msg.weights) onWeights(msg.weights as NonNullable<ShardDownload__Output['weights']>);
    });
  }

  write(msg: ShardUpload): void {
    // The shape protobufjs would decode from the wire (its oneof names the kind).
    this.exchange?.send({ ...msg, kind: 'gradient' } as Parameters<LocalExchange['send']>[0]);
  }

  close(): void {
    this.exchange?.close();
    this.exchange = undefined;
  }
}

export class ShardLinks {
  private readonly links: SliceLink[];
  private readonly waiters = new Set<{ version: number; resolve: () => void; reject: (err: Error) => void }>();
  private failure: Error | undefined;
  private closed = false;
  /** Weight bytes received from the shards since the last call of takeBytesReceived(). */
  private bytesReceived = 0;

  constructor(
    endpoints: ShardEndpointInfo[],
    weights: WeightsTarget,
    private readonly workerId: string,
    private readonly token: string | undefined,
    tls: TlsFiles,
    private readonly log: Logger,
    /** The shard this worker serves (co-located shards): the endpoint naming this worker is reached in-process. */
    own?: ShardServer,
  ) {
    this.links = endpoints.map((e, i) => {
      if (e.offset + e.length > weights.size || e.length < 1) throw new UnexpectedMessageError(`shard ${i} (${e.offset}+${e.length}) does not fit the model's ${weights.size} parameters`);
      if (own && e.workerId === workerId) return new LocalShardLink(i, e, weights);
      if (!(e.exchangePort > 0 && e.exchangePort < 65536)) throw new UnexpectedMessageError(`shard ${i} at ${e.address} has no exchange port`);
      return new ShardLink(i, e, weights, tls);
    });
    for (const link of this.links) {
      if (link instanceof ShardLink) void this.keepOpen(link);
      else
        (link as LocalShardLink).attach(own!, workerId, (msg) => {
          if (link.take(msg)) this.settle();
        });
    }
  }

  /** Resolves once every shard's slice of `version` is written to the weights target. */
  waitForVersion(version: number): Promise<void> {
    if (this.failure) return Promise.reject(this.failure);
    if (this.links.every((l) => l.version === version)) return Promise.resolve();
    return new Promise((resolve, reject) => this.waiters.add({ version, resolve, reject }));
  }

  /** Sends every shard its slice of `payload` (float32 or 2-byte encoded); returns the bytes sent over connections. */
  send(step: number, round: number, payload: Float32Array | Uint16Array, chunkBytes: number): number {
    let bytes = 0;
    for (const link of this.links) {
      const { offset, length } = link.endpoint;
      const slice = payload.subarray(offset, offset + length);
      if (link.writeShared(step, round, new Uint8Array(slice.buffer, slice.byteOffset, slice.byteLength))) {
        bytes += slice.byteLength;
        continue;
      }
      for (const chunk of splitIntoChunks(slice, chunkBytes)) {
        if (link instanceof ShardLink) bytes += chunk.data.length;
        link.write({ gradient: { step, round, chunk } });
      }
    }
    return bytes;
  }

  /** Rejects the pending waits with SupersededError: the shards were re-formed, and the step waiting is void. */
  supersede(reason: string): void {
    this.rejectAll(new SupersededError(reason));
  }

  /** Rejects the pending waits as an UNAVAILABLE stream would (the coordinator's stream ended, or the worker leaves). */
  interrupt(reason: string): void {
    this.rejectAll(Object.assign(new Error(reason), { code: grpc.status.UNAVAILABLE, details: reason }));
  }

  takeBytesReceived(): number {
    const b = this.bytesReceived;
    this.bytesReceived = 0;
    return b;
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.rejectAll(new UnexpectedMessageError('shard links closed'));
    for (const link of this.links) link.close();
  }

  private rejectAll(err: Error): void {
    for (const w of this.waiters) w.reject(err);
    this.waiters.clear();
  }

  private settle(): void {
    for (const w of this.waiters) {
      if (this.links.every((l) => l.version === w.version)) {
        this.waiters.delete(w);
        w.resolve();
      }
    }
  }

  /** One shard's connection, reopened after retryable failures until closed. */
  private async keepOpen(link: ShardLink): Promise<void> {
    const backoff = new Backoff({ initialMs: 100, maxMs: 5000 });
    const { download } = exchangeCodecs();
    while (!this.closed) {
      const socket = link.open();
      link.write({ hello: { workerId: this.workerId, token: this.token ?? '', shared: link.offer ?? null } });
      const { code, details } = await new Promise<{ code: grpc.status; details: string }>((resolve) => {
        const end = (code: grpc.status, details: string) => {
          resolve({ code, details });
          socket.destroy();
        };
        const onFrame = (frame: Buffer): void => {
          const msg = download.decode(frame);
          if (msg.kind === 'refused') return end(msg.refused!.code, msg.refused!.details);
          if (msg.kind === 'sharedAccepted') return link.accept(msg.sharedAccepted!.weights);
          if (msg.kind === 'sharedWeights' && msg.sharedWeights) {
            this.bytesReceived += Number(msg.sharedWeights.totalBytes);
            backoff.reset();
            if (link.takeShared(msg.sharedWeights)) this.settle();
            return;
          }
          if (msg.kind !== 'weights' || !msg.weights) throw new UnexpectedMessageError(`unexpected message '${msg.kind ?? 'empty'}' from shard ${link.index}`);
          this.bytesReceived += msg.weights.chunk?.data.length ?? 0;
          backoff.reset();
          if (link.take(msg.weights)) this.settle();
        };
        readFrames(socket, onFrame, (err) => end(grpc.status.INVALID_ARGUMENT, err.message));
        socket.on('error', (err) => end(grpc.status.UNAVAILABLE, err.message));
        socket.on('close', () => end(grpc.status.UNAVAILABLE, 'the shard closed the connection'));
      });
      link.version = -1;
      link.closeRegions();
      if (this.closed) return;
      if (!isRetryable(code)) {
        this.failure = new RejectedError(code, `shard ${link.index} at ${link.endpoint.address} refused this worker (${grpc.status[code] ?? code}: ${details})`);
        this.rejectAll(this.failure);
        return;
      }
      this.log.warn({ shard: link.index, address: link.endpoint.address, code: grpc.status[code], details }, 'shard connection lost; reconnecting');
      await sleep(backoff.next()).catch(() => undefined);
    }
  }
}
