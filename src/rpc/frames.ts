/**
 * Length-prefixed frames over a byte stream: a 4-byte big-endian length, then that many bytes
 * (one protobuf message). The exchange connection between workers and shards (shard.proto)
 * carries them over plain TCP or TLS: the bytes of a step, without HTTP/2 and gRPC framing.
 */
import * as net from 'node:net';
import * as tls from 'node:tls';
import type { MessageParts } from './chunk-serializer.js';
import { tlsClientOptions, tlsEnabled, tlsServerOptions, type TlsFiles } from './tls.js';

/** The largest frame accepted: a ~1 MiB tensor chunk and its message, with room to spare. */
export const MAX_FRAME_BYTES = 8 << 20;

export class FrameError extends Error {
  override readonly name = 'FrameError';
}

/**
 * Cuts a byte stream into frames. `onFrame` gets each as a view that is valid during the call
 * only: a frame split over several chunks is gathered in one buffer, reused for the next.
 */
export class FrameReader {
  private readonly header = Buffer.alloc(4);
  private headerBytes = 0;
  private scratch = Buffer.alloc(0);
  private body: Buffer | undefined;
  private bodyBytes = 0;

  constructor(private readonly onFrame: (frame: Buffer) => void, private readonly maxBytes = MAX_FRAME_BYTES) {}

  /** Takes the next bytes of the stream; throws FrameError on a frame over the limit. */
  push(chunk: Buffer): void {
    let pos = 0;
    while (pos < chunk.length) {
      if (this.body === undefined) {
        const n = Math.min(4 - this.headerBytes, chunk.length - pos);
        chunk.copy(this.header, this.headerBytes, pos, pos + n);
        this.headerBytes += n;
        pos += n;
        if (this.headerBytes < 4) return;
        this.headerBytes = 0;
        const length = this.header.readUInt32BE(0);
        if (length > this.maxBytes) throw new FrameError(`a frame of ${length} bytes exceeds the ${this.maxBytes}-byte limit`);
        if (chunk.length - pos >= length) {
          // The whole frame is in this chunk: no copy.
          this.onFrame(chunk.subarray(pos, pos + length));
          pos += length;
          continue;
        }
        if (this.scratch.length < length) this.scratch = Buffer.allocUnsafe(length);
        this.body = this.scratch.subarray(0, length);
        this.bodyBytes = 0;
      }
      const n = Math.min(this.body.length - this.bodyBytes, chunk.length - pos);
      chunk.copy(this.body, this.bodyBytes, pos, pos + n);
      this.bodyBytes += n;
      pos += n;
      if (this.bodyBytes === this.body.length) {
        const frame = this.body;
        this.body = undefined;
        this.onFrame(frame);
      }
    }
  }
}

/**
 * Feeds `socket`'s bytes to a FrameReader: `onFrame` gets each frame; a frame over the limit, or
 * anything `onFrame` throws, goes to `onBadBytes` (the connection should then end).
 */
export function readFrames(socket: net.Socket, onFrame: (frame: Buffer) => void, onBadBytes: (err: Error) => void): void {
  const reader = new FrameReader(onFrame);
  socket.on('data', (chunk: Buffer) => {
    try {
      reader.push(chunk);
    } catch (err) {
      onBadBytes(err as Error);
    }
  });
}

/** Writes one frame (prefix and message in one writev); `done` runs once it is handed to the OS. */
export function writeFrame(socket: net.Socket, message: Uint8Array, done?: (err?: Error | null) => void): boolean {
  const prefix = Buffer.allocUnsafe(4);
  prefix.writeUInt32BE(message.byteLength, 0);
  socket.cork();
  socket.write(prefix);
  const ok = socket.write(message, done);
  socket.uncork();
  return ok;
}

/**
 * Writes one frame per message to a socket. A message carrying a large tensor chunk comes as
 * MessageParts: its length prefix and head go out in one small buffer and its payload is handed
 * to the socket as it is, with no copy in this process (one writev). The payload's bytes are
 * read when the socket sends them, so the caller must leave them unchanged until the peer has
 * them: the exchange's protocol guarantees it (a worker's next gradient, and a shard's next
 * weights, come only after every participant received the previous ones; frames of a round or
 * version left behind are stale by their labels and dropped).
 */
export class FrameWriter {
  constructor(private readonly socket: net.Socket) {}

  /** `done` runs once the frame is handed to the OS (or the socket failed). */
  write(message: Uint8Array | MessageParts, done?: (err?: Error | null) => void): void {
    if (message instanceof Uint8Array) {
      writeFrame(this.socket, message, done);
      return;
    }
    const { head, payload } = message;
    const first = Buffer.allocUnsafe(4 + head.length);
    first.writeUInt32BE(head.length + payload.byteLength, 0);
    head.copy(first, 4);
    this.socket.cork();
    this.socket.write(first);
    this.socket.write(payload, done);
    this.socket.uncork();
  }
}

/** A frame server: TLS with the job's certificate when it has one (client certificates under mutual TLS), else TCP. */
export function createFrameServer(files: TlsFiles, onSocket: (socket: net.Socket) => void): net.Server {
  return tlsEnabled(files) ? tls.createServer(tlsServerOptions(files), onSocket) : net.createServer(onSocket);
}

/** Connects to a frame server; with TLS, verifies it as the job's gRPC channels do. */
export function connectFrames(host: string, port: number, files: TlsFiles): net.Socket {
  const socket = tlsEnabled(files) ? tls.connect({ host, port, ...tlsClientOptions(files), servername: net.isIP(host) ? undefined : host }) : net.connect({ host, port });
  socket.setNoDelay(true);
  return socket;
}

/** The host of a `host:port` address (`[v6]:port` included). */
export function hostOf(address: string): string {
  const bracketed = /^\[([^\]]+)\](?::\d+)?$/.exec(address);
  if (bracketed) return bracketed[1]!;
  const colon = address.lastIndexOf(':');
  return colon > 0 && address.indexOf(':') === colon ? address.slice(0, colon) : address;
}
