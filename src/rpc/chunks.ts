/**
 * Tensor chunking: a flat float32 buffer travels as ~1 MiB slices of its raw little-endian
 * bytes. Splitting makes zero-copy views; reassembly copies each chunk once into a buffer that
 * is allocated once and reused for every step.
 */
import type { Chunk__Output } from './proto.js';

export interface ChunkOut {
  offset: number;
  totalBytes: number;
  data: Buffer;
}

/** Views of `values`' bytes, `chunkBytes` at a time (the last may be shorter; an empty buffer gives one empty chunk). */
export function splitIntoChunks(values: ArrayBufferView, chunkBytes: number): ChunkOut[] {
  const totalBytes = values.byteLength;
  const chunks: ChunkOut[] = [];
  let offset = 0;
  do {
    const length = Math.min(chunkBytes, totalBytes - offset);
    chunks.push({ offset, totalBytes, data: Buffer.from(values.buffer, values.byteOffset + offset, length) });
    offset += length;
  } while (offset < totalBytes);
  return chunks;
}

export class ChunkError extends Error {
  override readonly name = 'ChunkError';
}

/** Reassembles the chunks of one buffer of a fixed byte length (allocated once). */
export class ChunkAssembler {
  private readonly bytes: Uint8Array;
  private received = 0;

  constructor(byteLength: number) {
    this.bytes = new Uint8Array(byteLength);
  }

  /** The buffer as float32 values. */
  get values(): Float32Array {
    return new Float32Array(this.bytes.buffer, 0, this.bytes.byteLength >> 2);
  }

  /** The buffer as 16-bit elements (float16/bfloat16 payloads). */
  get uint16(): Uint16Array {
    return new Uint16Array(this.bytes.buffer, 0, this.bytes.byteLength >> 1);
  }

  get totalBytes(): number {
    return this.bytes.byteLength;
  }

  reset(): void {
    this.received = 0;
  }

  get complete(): boolean {
    return this.received === this.bytes.byteLength;
  }

  /** Adds the next chunk; returns true when the buffer is complete. Throws ChunkError on any inconsistency. */
  add(chunk: Chunk__Output | null | undefined): boolean {
    if (!chunk) throw new ChunkError('missing chunk');
    const offset = Number(chunk.offset);
    const total = Number(chunk.totalBytes);
    const data = chunk.data;
    if (total !== this.bytes.byteLength) {
      throw new ChunkError(`chunk says the buffer has ${total} bytes; expected ${this.bytes.byteLength}`);
    }
    if (offset !== this.received) {
      throw new ChunkError(`chunk at offset ${offset}; expected the next at ${this.received}`);
    }
    if (offset + data.length > total) {
      throw new ChunkError(`chunk of ${data.length} bytes at ${offset} overruns ${total} bytes`);
    }
    this.bytes.set(data, offset);
    this.received += data.length;
    return this.complete;
  }

  /**
   * Takes the whole buffer at once from `fill`, which writes it into the buffer it is given and
   * says whether the bytes are good (a shared region's read, shared-region.ts). Throws
   * ChunkError when the sizes disagree; an unusable read leaves the buffer incomplete.
   */
  fill(totalBytes: number, fill: (dst: Uint8Array) => boolean): boolean {
    if (totalBytes !== this.bytes.byteLength) throw new ChunkError(`the slice has ${totalBytes} bytes; expected ${this.bytes.byteLength}`);
    this.received = 0;
    if (fill(this.bytes)) this.received = totalBytes;
    return this.complete;
  }
}
