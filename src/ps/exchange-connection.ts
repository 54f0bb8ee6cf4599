/**
 * A shard's side of one worker's exchange connection (frames over TCP or TLS, shard.proto): the
 * hello (worker id and job token), then gradient slices in; the shard's weights out. A worker
 * on this host may move the slices' bytes through shared regions: its gradient region is opened
 * here when its hello offers one, and the weights go through this connection's own region once
 * the worker says it opened it. Anything malformed ends the connection with a ShardRefusal.
 */
import type * as net from 'node:net';
import * as grpc from '@grpc/grpc-js';
import { FrameWriter, readFrames } from '../rpc/frames.js';
import { exchangeCodecs, type ShardDownload, type ShardUpload__Output } from '../rpc/proto.js';
import { SharedRegionReader, SharedRegionWriter } from '../rpc/shared-region.js';
import { malformed } from '../rpc/tolerant.js';
import type { Logger } from '../telemetry/logger.js';
import { ShardStateError } from './errors.js';

const WORKER_ID = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;

/** Where a worker's weights go: its exchange connection, or a worker in this process (co-located). */
export interface Downlink {
  write(msg: ShardDownload, done?: () => void): unknown;
  /** Sends the whole weights slice through a shared region when the worker opened one; false when it did not (nothing sent). */
  writeShared?(version: number, bytes: Uint8Array, done: () => void): boolean;
  /** Ends the connection with a ShardRefusal (a newer connection of the same worker replaced it). */
  refuse?(code: grpc.status, details: string): void;
}

/** What a connection needs of its shard server. */
export interface ExchangeHost {
  readonly log: Logger;
  /** Why `token` is refused, or undefined. */
  checkToken(token: string): string | undefined;
  /** The worker said a valid hello: `downlink` replaces any older connection of it. */
  attach(workerId: string, downlink: Downlink): void;
  /** Sends the shard's current weights (after the hello). */
  sendWeights(downlink: Downlink): void;
  /** The connection ended. */
  detach(workerId: string, downlink: Downlink): void;
  /** Drops the worker's partly received slice (its connection is refused). */
  forget(workerId: string): void;
  gradient(workerId: string, msg: ShardUpload__Output): void;
  sharedGradient(workerId: string, msg: NonNullable<ShardUpload__Output['sharedGradient']>, region: SharedRegionReader | undefined): void;
}

export function serveExchange(socket: net.Socket, host: ExchangeHost): void {
  socket.setNoDelay(true);
  const { upload, download } = exchangeCodecs();
  let workerId: string | undefined;
  let dead = false;
  const writer = new FrameWriter(socket);
  let gradients: SharedRegionReader | undefined;
  let weights: SharedRegionWriter | undefined;
  let weightsOpened = false;
  const downlink: Downlink = {
    // The weights' bytes go to the socket from the shard's memory (FrameWriter): the next commit
    // changes them only after every worker of the step received these.
    write: (msg, done) => writer.write(download.frame(msg), done ? () => done() : undefined),
    writeShared: (version, bytes, done) => {
      if (!weightsOpened || !weights || bytes.byteLength !== weights.offer.bytes) return false;
      const sequence = weights.write(bytes);
      writer.write(download.frame({ sharedWeights: { version, sequence, totalBytes: bytes.byteLength } }), () => done());
      return true;
    },
    refuse: (code, details) => {
      if (dead) return;
      dead = true;
      if (workerId !== undefined) host.forget(workerId);
      writer.write(download.frame({ refused: { code, details } }));
      socket.end();
    },
  };
  const onFrame = (frame: Buffer): void => {
    if (dead) return;
    const msg = upload.decode(frame);
    const bad = malformed(msg);
    if (bad !== undefined) throw new ShardStateError(`malformed message: ${bad}`);
    if (workerId !== undefined) {
      if (msg.kind === 'sharedGradient') return host.sharedGradient(workerId, msg.sharedGradient!, gradients);
      if (msg.kind === 'sharedOpened') {
        if (!weights) throw new ShardStateError('shared_opened without a shared region');
        weightsOpened = true;
        return;
      }
      return host.gradient(workerId, msg);
    }
    if (msg.kind !== 'hello' || !WORKER_ID.test(msg.hello?.workerId ?? '')) throw new ShardStateError('the first message must be hello with a valid worker id');
    const denied = host.checkToken(msg.hello!.token);
    if (denied) {
      host.log.warn({ peer: socket.remoteAddress, reason: denied }, 'unauthenticated exchange connection refused');
      return downlink.refuse!(grpc.status.UNAUTHENTICATED, denied);
    }
    workerId = msg.hello!.workerId;
    host.attach(workerId, downlink);
    const offer = msg.hello!.shared;
    if (offer?.address) {
      gradients = SharedRegionReader.open({ address: offer.address, probe: offer.probe, bytes: Number(offer.bytes) });
      weights = gradients ? SharedRegionWriter.create(Number(offer.bytes)) : undefined;
      if (gradients) writer.write(download.frame({ sharedAccepted: { weights: weights?.offer ?? null } }));
      host.log.debug({ workerId, gradients: gradients !== undefined, weights: weights !== undefined }, 'exchange connection on this host: shared regions');
    }
    host.sendWeights(downlink);
  };
  readFrames(socket, onFrame, (err) => {
    host.log.warn({ workerId, err: err.message }, 'rejecting worker connection');
    downlink.refuse!(grpc.status.INVALID_ARGUMENT, err.message);
  });
  socket.on('close', () => {
    dead = true;
    gradients?.close();
    weights?.close();
    if (workerId !== undefined) host.detach(workerId, downlink);
  });
  socket.on('error', (err) => host.log.debug({ workerId, err: err.message }, 'exchange connection error'));
}
