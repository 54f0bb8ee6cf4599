/** Loads the tensorfleet.v1 wire contract from proto/ (the same path from src/ and dist/). */
import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import protobuf from 'protobufjs';
import { CHUNK_ROUTES, EXCHANGE_ROUTES, chunkParts, chunkSerializer, type MessageParts } from './chunk-serializer.js';
// shard.proto imports training.proto, so its generated root type covers both files.
import type { ProtoGrpcType } from './generated/shard.js';
import type { ShardDownload, ShardDownload__Output } from './generated/tensorfleet/v1/ShardDownload.js';
import type { ShardUpload, ShardUpload__Output } from './generated/tensorfleet/v1/ShardUpload.js';

export const PROTOCOL_VERSION = 1;
/** Size of one tensor chunk on the wire: about 1 MiB, well under gRPC's 4 MiB receive limit. */
export const DEFAULT_CHUNK_BYTES = 1 << 20;

const PROTO_FILES = ['training.proto', 'shard.proto'].map((f) => fileURLToPath(new URL(`../../proto/tensorfleet/v1/${f}`, import.meta.url)));

/** How decoded messages look, for gRPC (proto-loader) and the exchange connection alike. */
const CONVERSION = { longs: Number, enums: String, defaults: true, oneofs: true };

let cached: ProtoGrpcType | undefined;

export function loadProto(): ProtoGrpcType {
  if (!cached) {
    const definition = protoLoader.loadSync(PROTO_FILES, { keepCase: false, ...CONVERSION });
    useChunkSerializers(definition);
    cached = grpc.loadPackageDefinition(definition) as unknown as ProtoGrpcType;
  }
  return cached;
}

/** Encodes and decodes one message type as gRPC would (the same CONVERSION). */
export interface MessageCodec<In, Out> {
  /** A frame's message: MessageParts for one carrying a large tensor chunk (its payload not copied), else the encoded bytes. */
  frame(message: In): MessageParts | Buffer;
  decode(bytes: Uint8Array): Out;
}

export interface ExchangeCodecs {
  upload: MessageCodec<ShardUpload, ShardUpload__Output>;
  download: MessageCodec<ShardDownload, ShardDownload__Output>;
}

let exchange: ExchangeCodecs | undefined;

/** The messages of the shard exchange connection (shard.proto), chunks written without a copy (FrameWriter). */
export function exchangeCodecs(): ExchangeCodecs {
  if (!exchange) {
    const root = protobuf.loadSync(PROTO_FILES);
    const codec = <In, Out>(name: string, routes: typeof EXCHANGE_ROUTES.upload): MessageCodec<In, Out> => {
      const type = root.lookupType(`tensorfleet.v1.${name}`);
      const base = (value: object): Buffer => {
        const bytes = type.encode(type.fromObject(value)).finish();
        return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
      };
      const parts = chunkParts(base, routes);
      return {
        frame: (message: In) => parts(message as object) ?? base(message as object),
        decode: (bytes) => type.toObject(type.decode(bytes), CONVERSION) as Out,
      };
    };
    exchange = { upload: codec('ShardUpload', EXCHANGE_ROUTES.upload), download: codec('ShardDownload', EXCHANGE_ROUTES.download) };
  }
  return exchange;
}

/** Chunk-carrying messages get the one-copy serializers (requests fresh, server responses in a reused buffer). */
function useChunkSerializers(definition: protoLoader.PackageDefinition): void {
  for (const [serviceName, methods] of Object.entries(CHUNK_ROUTES)) {
    const service = definition[serviceName] as protoLoader.ServiceDefinition | undefined;
    if (!service) throw new Error(`the wire contract has no service ${serviceName}`);
    for (const [methodName, routes] of Object.entries(methods)) {
      const method = service[methodName];
      if (!method) throw new Error(`the wire contract has no method ${serviceName}.${methodName}`);
      service[methodName] = {
        ...method,
        requestSerialize: chunkSerializer(method.requestSerialize as (v: object) => Buffer, routes.request, false),
        responseSerialize: chunkSerializer(method.responseSerialize as (v: object) => Buffer, routes.response, true),
      };
    }
  }
}

export type { CoordinatorClient } from './generated/tensorfleet/v1/Coordinator.js';
export type { WorkerMessage, WorkerMessage__Output } from './generated/tensorfleet/v1/WorkerMessage.js';
export type {
  CoordinatorMessage,
  CoordinatorMessage__Output,
} from './generated/tensorfleet/v1/CoordinatorMessage.js';
export type { JobConfig__Output } from './generated/tensorfleet/v1/JobConfig.js';
export type { Chunk__Output } from './generated/tensorfleet/v1/Chunk.js';
export type { ShardCommand, ShardCommand__Output } from './generated/tensorfleet/v1/ShardCommand.js';
export type { ShardReport, ShardReport__Output } from './generated/tensorfleet/v1/ShardReport.js';
export type { ShardUpload, ShardUpload__Output } from './generated/tensorfleet/v1/ShardUpload.js';
export type { ShardDownload, ShardDownload__Output } from './generated/tensorfleet/v1/ShardDownload.js';
export type { ShardEndpoint__Output } from './generated/tensorfleet/v1/ShardEndpoint.js';
