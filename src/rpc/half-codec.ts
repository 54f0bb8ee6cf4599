/**
 * The WebAssembly SIMD form of the 2-byte gradient encodings (src/rpc/wasm/half-codec.wat):
 * eight elements a step instead of one, ~20x the JavaScript loops of tensor-codec.ts, with the
 * same bits (tested). Buffers are copied into the module's memory and back, which costs less
 * than the conversion it replaces. `halfCodec()` is null where WebAssembly SIMD is missing.
 */
import { compileBase64, instantiate } from '../common/wasm.js';
import { WASM_BASE64 } from './generated/half-codec-wasm.js';

interface CodecExports {
  memory: { readonly buffer: ArrayBuffer; grow(pages: number): number };
  encode: (n: number, src: number, dst: number, kind: number) => void;
  decode: (n: number, src: number, dst: number, kind: number) => void;
}

export type HalfKind = 'float16' | 'bfloat16';

export class HalfCodec {
  /** Elements the memory holds: `wide` float32 from byte 0, then `narrow` 16-bit ones. */
  private capacity = 0;
  private wide = new Float32Array(0);
  private narrow = new Uint16Array(0);

  constructor(private readonly exports: CodecExports) {}

  encode(src: Float32Array, kind: HalfKind, dst: Uint16Array): void {
    const n = this.stage(src, () => this.wide);
    this.exports.encode(n, this.wide.byteOffset, this.narrow.byteOffset, kind === 'bfloat16' ? 1 : 0);
    dst.set(this.narrow.subarray(0, src.length));
  }

  decode(src: Uint16Array, kind: HalfKind, dst: Float32Array): void {
    const n = this.stage(src, () => this.narrow);
    this.exports.decode(n, this.narrow.byteOffset, this.wide.byteOffset, kind === 'bfloat16' ? 1 : 0);
    dst.set(this.wide.subarray(0, src.length));
  }

  /** Copies `src` into the region `region()` names (once there is room), zero-padded to whole steps; returns the padded count. */
  private stage(src: ArrayLike<number>, region: () => Float32Array | Uint16Array): number {
    const padded = this.reserve(src.length);
    const into = region() as Float32Array;
    into.set(src);
    into.fill(0, src.length, padded);
    return padded;
  }

  /** Makes room for n elements (rounded up to whole steps of 8); returns the rounded count. */
  private reserve(n: number): number {
    const padded = Math.ceil(n / 8) * 8;
    if (padded > this.capacity) {
      const bytes = padded * 6;
      const have = this.exports.memory.buffer.byteLength;
      if (bytes > have) this.exports.memory.grow(Math.ceil((bytes - have) / 65536));
      this.capacity = padded;
    }
    // Growing detaches the old views: take them again from the current buffer.
    if (this.wide.buffer !== this.exports.memory.buffer || this.wide.length !== this.capacity) {
      this.wide = new Float32Array(this.exports.memory.buffer, 0, this.capacity);
      this.narrow = new Uint16Array(this.exports.memory.buffer, this.capacity * 4, this.capacity);
    }
    return padded;
  }
}

let codec: HalfCodec | null | undefined;

/** The process's codec, or null where WebAssembly SIMD is unavailable. */
export function halfCodec(): HalfCodec | null {
  if (codec === undefined) {
    const module = compileBase64(WASM_BASE64);
    codec = module ? new HalfCodec(instantiate<CodecExports>(module)) : null;
  }
  return codec;
}
