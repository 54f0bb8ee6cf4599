/**
 * Gradient compression on the wire: float32 as is, or float16 / bfloat16 (2 bytes an element,
 * round to nearest even). One pass to encode on the worker, one to decode on the parameter
 * server, which averages in float32: in WebAssembly SIMD (half-codec.ts) where available, else
 * in the JavaScript below (a table lookup per element to decode float16), with the same bits.
 * NaN and ±Inf survive the round trip, so the parameter server still rejects them.
 */
import { halfCodec } from './half-codec.js';


export const GRAD_DTYPES = ['float32', 'float16', 'bfloat16'] as const;
export type GradDtype = (typeof GRAD_DTYPES)[number];

export function isGradDtype(s: string): s is GradDtype {
  return (GRAD_DTYPES as readonly string[]).includes(s);
}

export function bytesPerElement(dtype: GradDtype): number {
  return dtype === 'float32' ? 4 : 2;
}

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

/** float32 -> IEEE half, round to nearest even, overflow to ±Inf, NaN kept NaN. */
export function toFloat16Bits(value: number): number {
  f32[0] = value;
  return float16FromFloat32Bits(u32[0]!);
}

/** The half of a float32 given by its bit pattern (the encoder reads bits, not numbers: no scratch round trip per element). */
function float16FromFloat32Bits(x: number): number {
  const sign = (x >>> 16) & 0x8000;
  const exp = (x >>> 23) & 0xff;
  let mant = x & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant ? 0x200 : 0); // Inf or NaN
  let e = exp - 127 + 15;
  if (e >= 0x1f) return sign | 0x7c00; // overflow
  if (e <= 0) {
    // subnormal half (or zero): shift the implicit 1 in, round to nearest even
    if (e < -10) return sign;
    mant |= 0x800000;
    const shift = 14 - e;
    const half = 1 << (shift - 1);
    const rest = mant & ((1 << shift) - 1);
    let m = mant >>> shift;
    if (rest > half || (rest === half && (m & 1))) m++;
    return sign | m;
  }
  const rest = mant & 0x1fff;
  mant >>>= 13;
  if (rest > 0x1000 || (rest === 0x1000 && (mant & 1))) {
    mant++;
    if (mant === 0x400) {
      mant = 0;
      e++;
      if (e >= 0x1f) return sign | 0x7c00;
    }
  }
  return sign | (e << 10) | mant;
}

function halfToFloat(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const e = (h >>> 10) & 0x1f;
  const m = h & 0x3ff;
  if (e === 0) return sign * m * 2 ** -24;
  if (e === 0x1f) return m ? NaN : sign * Infinity;
  return sign * (1 + m / 1024) * 2 ** (e - 15);
}

let halfTable: Float32Array | undefined;
function table(): Float32Array {
  if (!halfTable) {
    halfTable = new Float32Array(65536);
    for (let h = 0; h < 65536; h++) halfTable[h] = halfToFloat(h);
  }
  return halfTable;
}

/** bfloat16 bits of a float32 bit pattern, round to nearest even, NaN kept NaN. */
function toBfloat16Bits(bits: number): number {
  if ((bits & 0x7f800000) === 0x7f800000 && bits & 0x7fffff) return (bits >>> 16) | 0x40;
  return ((bits + 0x7fff + ((bits >>> 16) & 1)) >>> 16) & 0xffff;
}

/** Encodes `src` into `dst` (a view of dst's bytes is what travels); `simd` false: the JavaScript loops. */
export function encodeGradient(src: Float32Array, dtype: GradDtype, dst: Uint16Array, simd = true): void {
  if (dtype === 'float32') throw new RangeError('float32 travels as is');
  if (dst.length !== src.length) throw new RangeError(`encode buffer has ${dst.length} elements; expected ${src.length}`);
  const codec = simd ? halfCodec() : null;
  if (codec) return codec.encode(src, dtype, dst);
  const bits = new Uint32Array(src.buffer, src.byteOffset, src.length);
  if (dtype === 'float16') {
    for (let i = 0; i < src.length; i++) dst[i] = float16FromFloat32Bits(bits[i]!);
  } else {
    for (let i = 0; i < src.length; i++) dst[i] = toBfloat16Bits(bits[i]!);
  }
}

/** Decodes 2-byte elements into float32; `simd` false: the JavaScript loops. */
export function decodeGradient(src: Uint16Array, dtype: GradDtype, dst: Float32Array, simd = true): void {
  if (dtype === 'float32') throw new RangeError('float32 travels as is');
  if (dst.length !== src.length) throw new RangeError(`decode buffer has ${dst.length} elements; expected ${src.length}`);
  const codec = simd ? halfCodec() : null;
  if (codec) return codec.decode(src, dtype, dst);
  if (dtype === 'float16') {
    const t = table();
    for (let i = 0; i < src.length; i++) dst[i] = t[src[i]!]!;
  } else {
    const out = new Uint32Array(dst.buffer, dst.byteOffset, dst.length);
    for (let i = 0; i < src.length; i++) out[i] = src[i]! << 16;
  }
}
