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
 * On the exchange connection (frames.ts) there is no copy at all: `chunkParts` gives the head
 * and leaves the payload to be written as it is.
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
 * A chunk-carrying message in two pieces: `head`, every byte before the chunk's payload (the
 * outer message, the chunk's offset and total, the payload's tag and length), and `payload`,
 * the caller's bytes themselves, not copied. Written one after the other they are the message.
 */
export interface MessageParts {
  head: Buffer;
  payload: Uint8Array;
}

/**
 * Splits a message whose `route.member` holds a chunk of at least 4 KiB into MessageParts;
 * undefined for any other message (encode those with `base`).
 */
export function chunkParts(base: Serialize, routes: readonly ChunkRoute[]): (value: object) => MessageParts | undefined {
  return (value: object) => {
    for (const route of routes) {
      const inner = (value as Record<string, unknown>)[route.member] as { chunk?: ChunkLike | null } | null | undefined;
      const data = inner?.chunk?.data;
      if (!inner || !data || data.byteLength < MIN_FAST_BYTES) continue;
      const chunk = inner.chunk!;
      // The outer message with everything but the chunk: tag, length, body.
      const outer = base({ [route.member]: { ...inner, chunk: undefined } });
      const tag = (route.field << 3) | LEN;
      if (outer[0] !== tag) throw new Error(`chunk serializer: expected field ${route.field} first in '${route.member}'`);
      const [bodyLength, bodyStart] = readVarint(outer, 1);
      if (bodyStart + bodyLength !== outer.length) throw new Error(`chunk serializer: '${route.member}' is not the only field encoded`);
      const offset = asNumber(chunk.offset);
      const total = asNumber(chunk.totalBytes);
      const n = data.byteLength;
      const chunkBody = 1 + varintLength(offset) + 1 + varintLength(total) + 1 + varintLength(n) + n;
      const chunkFieldTag = (route.chunkField << 3) | LEN;
      if (chunkFieldTag >= 128) throw new RangeError('chunk field numbers above 15 are not supported');
      const newBody = bodyLength + 1 + varintLength(chunkBody) + chunkBody;
      const head = Buffer.allocUnsafe(1 + varintLength(newBody) + newBody - n);
      let pos = 0;
      head[pos++] = tag;
      pos = writeVarint(head, pos, newBody);
      pos += outer.copy(head, pos, bodyStart);
      head[pos++] = chunkFieldTag;
      pos = writeVarint(head, pos, chunkBody);
      head[pos++] = (1 << 3) | VARINT;
      pos = writeVarint(head, pos, offset);
      head[pos++] = (2 << 3) | VARINT;
      pos = writeVarint(head, pos, total);
      head[pos++] = (3 << 3) | LEN;
      writeVarint(head, pos, n);
      return { head, payload: data };
    }
    return undefined;
  };
}

/**
 * Wraps `base` (the protobufjs serializer of the outer message) so that a message whose
 * `route.member` holds a chunk of at least 4 KiB is encoded with one payload copy. With
 * `reuse`, the returned buffer is overwritten by the next call (for grpc-js server responses).
 */
export function chunkSerializer(base: Serialize, routes: readonly ChunkRoute[], reuse: boolean): Serialize {
  let scratch = Buffer.alloc(0);
  const split = chunkParts(base, routes);
  return (value: object) => {
    const parts = split(value);
    if (!parts) return base(value);
    const size = parts.head.length + parts.payload.byteLength;
    let out: Buffer;
    if (reuse) {
      if (scratch.length < size) scratch = Buffer.allocUnsafe(size);
      out = scratch.subarray(0, size);
    } else {
      out = Buffer.allocUnsafe(size);
    }
    parts.head.copy(out, 0);
    out.set(parts.payload, parts.head.length);
    return out;
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
