/**
 * Serializers for the messages that carry tensor chunks (weights and gradients), which are
 * almost all of the bytes on the wire. protobufjs encodes a 1 MiB `bytes` field at ~2 GB/s
 * into a fresh buffer; these write the same protobuf encoding with one copy of the payload:
 * the message around the chunk is still encoded by protobufjs (it is small), the `Chunk` is
 * written by hand and appended (protobuf allows fields in any order).
 *
 * Server responses reuse one scratch buffer: grpc-js copies a serialized response into its own
 * frame buffer synchronously (server-interceptors' serializeMessage), so a weights broadcast
 * leaves no garbage of its own behind. Client requests get a fresh buffer each, since grpc-js
 * may serialize a queued request later.
 *
 * Decoding stays with protobufjs (it slices `bytes` without copying).
 */

/** Which oneof member of a message carries a chunk, and the chunk's field number inside it. */
export interface ChunkRoute {
  /** The oneof member's name in the outer message (e.g. `weights`). */
  member: string;
  /** Its field number in the outer message. */
  field: number;
  /** The field number of its `Chunk chunk`. */
  chunkField: number;
}

type Serialize = (value: object) => Buffer;
/** Gives the buffer a message of `size` bytes is encoded into (exactly `size` long). */
export type Allocate = (size: number) => Buffer;
/** A serializer that may be told where to put a chunk-carrying message (frames.ts FrameWriter). */
export type ChunkSerialize = (value: object, allocate?: Allocate) => Buffer;

/** Payloads below this go through protobufjs unchanged. */
const MIN_FAST_BYTES = 4096;
const LEN = 2;
const VARINT = 0;

function varintLength(n: number): number {
  let len = 1;
  while (n >= 128) {
    n = Math.floor(n / 128);
    len++;
  }
  return len;
}

function writeVarint(buf: Buffer, pos: number, n: number): number {
  while (n >= 128) {
    buf[pos++] = (n % 128) | 128;
    n = Math.floor(n / 128);
  }
  buf[pos++] = n;
  return pos;
}

function readVarint(buf: Buffer, pos: number): [value: number, next: number] {
  let value = 0;
  let scale = 1;
  for (;;) {
    const b = buf[pos++];
    if (b === undefined) throw new RangeError('truncated varint');
    value += (b & 127) * scale;
    if (b < 128) return [value, pos];
    scale *= 128;
  }
}

interface ChunkLike {
  offset?: number | string | Long | null;
  totalBytes?: number | string | Long | null;
  data?: Uint8Array | null;
}
type Long = { toNumber(): number };

const asNumber = (v: number | string | Long | null | undefined): number => (v == null ? 0 : typeof v === 'object' ? v.toNumber() : Number(v));

/**
 * Wraps `base` (the protobufjs serializer of the outer message) so that a message whose
 * `route.member` holds a chunk of at least 4 KiB is encoded with one payload copy. With
 * `reuse`, the returned buffer is overwritten by the next call (for grpc-js server responses);
 * an `allocate` given with the message decides where that one goes.
 */
export function chunkSerializer(base: Serialize, routes: readonly ChunkRoute[], reuse: boolean): ChunkSerialize {
  let scratch = Buffer.alloc(0);
  return (value: object, allocate?: Allocate) => {
    for (const route of routes) {
      const inner = (value as Record<string, unknown>)[route.member] as { chunk?: ChunkLike | null } | null | undefined;
      const data = inner?.chunk?.data;
      if (!inner || !data || data.byteLength < MIN_FAST_BYTES) continue;
      const chunk = inner.chunk!;
      // The outer message with everything but the chunk: tag, length, body.
      const head = base({ [route.member]: { ...inner, chunk: undefined } });
      const tag = (route.field << 3) | LEN;
      if (head[0] !== tag) throw new Error(`chunk serializer: expected field ${route.field} first in '${route.member}'`);
      const [bodyLength, bodyStart] = readVarint(head, 1);
      if (bodyStart + bodyLength !== head.length) throw new Error(`chunk serializer: '${route.member}' is not the only field encoded`);
      const offset = asNumber(chunk.offset);
      const total = asNumber(chunk.totalBytes);
      const n = data.byteLength;
      const chunkBody = 1 + varintLength(offset) + 1 + varintLength(total) + 1 + varintLength(n) + n;
      const chunkFieldTag = (route.chunkField << 3) | LEN;
      if (chunkFieldTag >= 128) throw new RangeError('chunk field numbers above 15 are not supported');
      const newBody = bodyLength + 1 + varintLength(chunkBody) + chunkBody;
      const size = 1 + varintLength(newBody) + newBody;
      let out: Buffer;
      if (allocate) {
        out = allocate(size);
      } else if (reuse) {
        if (scratch.length < size) scratch = Buffer.allocUnsafe(size);
        out = scratch.subarray(0, size);
      } else {
        out = Buffer.allocUnsafe(size);
      }
      let pos = 0;
      out[pos++] = tag;
      pos = writeVarint(out, pos, newBody);
      pos += head.copy(out, pos, bodyStart);
      out[pos++] = chunkFieldTag;
      pos = writeVarint(out, pos, chunkBody);
      out[pos++] = (1 << 3) | VARINT;
      pos = writeVarint(out, pos, offset);
      out[pos++] = (2 << 3) | VARINT;
      pos = writeVarint(out, pos, total);
      out[pos++] = (3 << 3) | LEN;
      pos = writeVarint(out, pos, n);
      out.set(data, pos);
      return out;
    }
    return base(value);
  };
}

/** The chunk-carrying messages of the wire contract, per service and method. */
export const CHUNK_ROUTES: Record<string, Record<string, { request: ChunkRoute[]; response: ChunkRoute[] }>> = {
  'tensorfleet.v1.Coordinator': {
    Attach: { request: [{ member: 'gradient', field: 2, chunkField: 7 }], response: [{ member: 'weights', field: 2, chunkField: 2 }] },
  },
  'tensorfleet.v1.ParameterShard': {
    Control: { request: [{ member: 'state', field: 2, chunkField: 4 }], response: [{ member: 'state', field: 4, chunkField: 4 }] },
  },
};

/** The chunk-carrying messages of the shard exchange connection (its frames, frames.ts). */
export const EXCHANGE_ROUTES = {
  upload: [{ member: 'gradient', field: 2, chunkField: 3 }],
  download: [{ member: 'weights', field: 1, chunkField: 2 }],
} satisfies Record<string, ChunkRoute[]>;
