import { fileURLToPath } from 'node:url';
import * as protoLoader from '@grpc/proto-loader';
import protobuf from 'protobufjs';
import { describe, expect, it } from 'vitest';
import { CHUNK_ROUTES, type MessageParts } from '../../src/rpc/chunk-serializer.js';
import { exchangeCodecs, loadProto } from '../../src/rpc/proto.js';

const files = ['training.proto', 'shard.proto'].map((f) => fileURLToPath(new URL(`../../proto/tensorfleet/v1/${f}`, import.meta.url)));
const plain = protoLoader.loadSync(files, { keepCase: false, longs: Number, enums: String, defaults: true, oneofs: true });

function bytes(n: number, seed: number): Buffer {
  const b = Buffer.allocUnsafe(n);
  for (let i = 0; i < n; i++) b[i] = (i * 31 + seed * 7) & 255;
  return b;
}

/** A message of each chunk-carrying kind, with the given payload size and chunk offset. */
function sample(member: string, n: number, offset: number): object {
  const chunk = { offset, totalBytes: offset + n + 5, data: bytes(n, offset % 97) };
  switch (member) {
    case 'gradient':
      return { gradient: { step: 7, round: 9, sampleCount: 32, loss: 0.25, computeMs: 31.5, maxRssBytes: 2 ** 33 + 5, lastEncodeMs: 0.5, shardBytesSent: 3, chunk } };
    case 'upload':
      return { gradient: { step: 2 ** 35 + 1, round: 9, chunk } };
    case 'weights':
      return { weights: { version: 2 ** 40 + 3, chunk } };
    case 'state':
      return { state: { tensor: 'ADAM_V', version: 12, iterations: 12, chunk } };
    default:
      throw new Error(member);
  }
}

/** The decoded message with its chunk's bytes replaced by their length and a checksum (deep-equal on 1 MiB buffers is slow). */
function summary(message: object): unknown {
  const decoded = message as Record<string, unknown>;
  const kind = decoded['kind'] as string;
  const inner = decoded[kind] as { chunk: { data: Buffer } };
  const data = inner.chunk.data;
  let sum = 0;
  for (let i = 0; i < data.length; i += 1) sum = (sum * 31 + data[i]!) % 1_000_000_007;
  return { ...decoded, [kind]: { ...inner, chunk: { ...inner.chunk, data: [data.length, sum] } } };
}

const cases = Object.entries(CHUNK_ROUTES).flatMap(([service, methods]) =>
  Object.entries(methods).flatMap(([method, routes]) =>
    (['request', 'response'] as const).map((direction) => ({ name: `${service}.${method} ${direction}`, service, method, direction, member: routes[direction][0]!.member })),
  ),
);

describe('chunk serializers', () => {
  it.each(cases)('$name ($member): decodes exactly as protobufjs encodes it', ({ service, method, direction, member }) => {
    const fast = (loadProto() as unknown as Record<string, Record<string, Record<string, { service: protoLoader.ServiceDefinition }>>>)['tensorfleet']!['v1']![service.split('.').at(-1)!]!.service[method]!;
    const reference = (plain[service] as protoLoader.ServiceDefinition)[method]!;
    const serialize = direction === 'request' ? fast.requestSerialize : fast.responseSerialize;
    const decode = direction === 'request' ? reference.requestDeserialize : reference.responseDeserialize;
    const encode = direction === 'request' ? reference.requestSerialize : reference.responseSerialize;
    for (const n of [0, 100, 4095, 4096, 70_000, (1 << 20) + 3]) {
      for (const offset of [0, 1, 300, 2 ** 32 + 17]) {
        const message = sample(member, n, offset);
        const ours = Buffer.from(serialize(message)); // copy: a reused response buffer is overwritten by the next call
        expect(summary(decode(ours))).toEqual(summary(decode(encode(message))));
        if (n >= 4096) expect(ours.length).toBeLessThanOrEqual(encode(message).length + 2);
      }
    }
  });

  it('leaves messages without a chunk to protobufjs', () => {
    const fast = loadProto().tensorfleet.v1.Coordinator.service.Attach;
    const reference = (plain['tensorfleet.v1.Coordinator'] as protoLoader.ServiceDefinition)['Attach']!;
    const hello = { hello: { workerId: 'w0', pid: 3, hostname: 'h', backend: 'wasm', protocolVersion: 1 } };
    expect(Buffer.from(fast.requestSerialize(hello)).equals(reference.requestSerialize(hello))).toBe(true);
    const stop = { stop: { reason: 'done', completed: true } };
    expect(Buffer.from(fast.responseSerialize(stop)).equals(reference.responseSerialize(stop))).toBe(true);
  });

  it.each([
    ['upload', 'ShardUpload', 'upload'],
    ['download', 'ShardDownload', 'weights'],
  ] as const)('exchange %s frames decode exactly as protobufjs encodes them, and back', (codecName, typeName, member) => {
    const type = protobuf.loadSync(files).lookupType(`tensorfleet.v1.${typeName}`);
    const codec = exchangeCodecs()[codecName] as { frame: (m: object) => Buffer | MessageParts; decode: (b: Uint8Array) => object };
    // A frame's bytes: the head, then the payload it left uncopied.
    const encode = (m: object) => {
      const f = codec.frame(m);
      return f instanceof Uint8Array ? f : Buffer.concat([f.head, f.payload]);
    };
    const options = { longs: Number, enums: String, defaults: true, oneofs: true };
    for (const n of [0, 100, 4096, (1 << 20) + 3]) {
      for (const offset of [0, 2 ** 32 + 17]) {
        const message = sample(member, n, offset);
        const reference = Buffer.from(type.encode(type.fromObject(message)).finish());
        expect(summary(codec.decode(reference))).toEqual(summary(type.toObject(type.decode(reference), options)));
        expect(summary(type.toObject(type.decode(encode(message)), options))).toEqual(summary(codec.decode(reference)));
        // From 4 KiB on, the payload is the caller's bytes themselves (FrameWriter sends them uncopied).
        const f = codec.frame(message);
        const data = (message as Record<string, { chunk: { data: Uint8Array } }>)[codecName === 'upload' ? 'gradient' : 'weights']!.chunk.data;
        if (n >= 4096) expect(f instanceof Uint8Array ? undefined : f.payload).toBe(data);
        else expect(f).toBeInstanceOf(Uint8Array);
      }
    }
    const refusal = { refused: { code: 16, details: 'wrong job token' } };
    if (codecName === 'download') expect(codec.decode(encode(refusal))).toEqual({ kind: 'refused', ...refusal });
  });
});
