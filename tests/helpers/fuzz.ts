/** Fuzzing clients for the Attach RPC: raw byte streams and structured (typed) streams. */
import * as grpc from '@grpc/grpc-js';
import { tokenMetadata } from '../../src/rpc/auth.js';
import { loadProto, PROTOCOL_VERSION, type WorkerMessage } from '../../src/rpc/proto.js';

const ATTACH_PATH = '/tensorfleet.v1.Coordinator/Attach';
const identity = (b: Buffer) => b;
const RawClient = grpc.makeGenericClientConstructor(
  { Attach: { path: ATTACH_PATH, requestStream: true, responseStream: true, requestSerialize: identity, requestDeserialize: identity, responseSerialize: identity, responseDeserialize: identity } },
  'RawCoordinator',
);

/** Serializes a WorkerMessage exactly as a real worker would. */
export function encodeWorkerMessage(msg: WorkerMessage): Buffer {
  const service = loadProto().tensorfleet.v1.Coordinator.service;
  return service.Attach.requestSerialize(msg) as Buffer;
}

/** Deterministic PRNG for reproducible fuzzing. */
export function prng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = Math.imul(s ^ (s >>> 15), s | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export function randomBytes(rand: () => number, n: number): Buffer {
  const b = Buffer.alloc(n);
  for (let i = 0; i < n; i++) b[i] = Math.floor(rand() * 256);
  return b;
}

/** Flips, truncates, extends or splices a valid encoding. */
export function mutate(rand: () => number, valid: Buffer): Buffer {
  const b = Buffer.from(valid);
  switch (Math.floor(rand() * 4)) {
    case 0:
      for (let k = 0; k < 1 + rand() * 4; k++) if (b.length) b[Math.floor(rand() * b.length)]! ^= 1 << Math.floor(rand() * 8);
      return b;
    case 1:
      return b.subarray(0, Math.floor(rand() * b.length));
    case 2:
      return Buffer.concat([b, randomBytes(rand, 1 + Math.floor(rand() * 64))]);
    default: {
      const at = Math.floor(rand() * (b.length + 1));
      return Buffer.concat([b.subarray(0, at), randomBytes(rand, Math.floor(rand() * 16)), b.subarray(at)]);
    }
  }
}

/**
 * Opens one raw stream, writes `messages`, half-closes, and resolves with the final status code
 * (or 'ok'/'timeout'). Never rejects: the fuzzer only cares that the server survives.
 */
export function rawStream(port: number, token: string | undefined, messages: Buffer[], timeoutMs = 3000): Promise<string> {
  const client = new RawClient(`127.0.0.1:${port}`, grpc.credentials.createInsecure());
  const call = (client as unknown as { Attach(md: grpc.Metadata): grpc.ClientDuplexStream<Buffer, Buffer> }).Attach(tokenMetadata(token));
  return new Promise((resolve) => {
    const timer = setTimeout(() => finish('timeout'), timeoutMs);
    const finish = (result: string) => {
      clearTimeout(timer);
      call.cancel();
      client.close();
      resolve(result);
    };
    call.on('data', () => undefined);
    call.on('error', (e: grpc.ServiceError) => finish(grpc.status[e.code] ?? String(e.code)));
    call.on('end', () => finish('ok'));
    for (const m of messages) call.write(m);
    call.end();
  });
}

export function validHello(id: string): WorkerMessage {
  return { hello: { workerId: id, pid: 1, hostname: 'fuzz', backend: 'wasm', protocolVersion: PROTOCOL_VERSION } };
}
