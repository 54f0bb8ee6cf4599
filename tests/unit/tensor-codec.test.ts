import { describe, expect, it } from 'vitest';
import { decodeGradient, encodeGradient, toFloat16Bits } from '../../src/rpc/tensor-codec.js';
import { Random } from '../../src/data/random.js';

const roundTrip = (values: number[], dtype: 'float16' | 'bfloat16') => {
  const src = Float32Array.from(values);
  const enc = new Uint16Array(src.length);
  encodeGradient(src, dtype, enc);
  const dec = new Float32Array(src.length);
  decodeGradient(enc, dtype, dec);
  return Array.from(dec);
};

describe('gradient codecs', () => {
  it('float16: exact values, rounding to nearest even, overflow, subnormals, NaN and Inf', () => {
    expect(roundTrip([0, -0, 1, -2, 0.5, 65504, 2 ** -14, 2 ** -24], 'float16')).toEqual([0, -0, 1, -2, 0.5, 65504, 2 ** -14, 2 ** -24]);
    expect(toFloat16Bits(1 + 2 ** -11)).toBe(0x3c00); // tie: to even (down)
    expect(toFloat16Bits(1 + 3 * 2 ** -11)).toBe(0x3c02); // tie: to even (up)
    expect(toFloat16Bits(65520)).toBe(0x7c00); // rounds past the largest half: Inf
    const [nan, inf, ninf, tiny] = roundTrip([NaN, Infinity, -1e9, 2 ** -26], 'float16');
    expect(nan).toBeNaN();
    expect(inf).toBe(Infinity);
    expect(ninf).toBe(-Infinity);
    expect(tiny).toBe(0);
  });

  it('float16 relative error stays under 2^-11 for normal gradients', () => {
    const r = Random.fromSeed(3);
    const values = Array.from({ length: 20000 }, () => (r.next() * 2 - 1) * 10 ** (-1 - 4 * r.next()));
    const back = roundTrip(values, 'float16');
    values.forEach((v, i) => {
      if (Math.abs(v) >= 2 ** -14) expect(Math.abs(back[i]! - v) / Math.abs(v)).toBeLessThanOrEqual(2 ** -11);
    });
  });

  it('bfloat16: keeps the float32 range, 8 bits of mantissa, NaN and Inf', () => {
    const back = roundTrip([1e30, -3.14159, 1e-30, Infinity, NaN], 'bfloat16');
    expect(back[0]! / 1e30).toBeCloseTo(1, 2);
    expect(Math.abs(back[1]! + 3.14159)).toBeLessThan(3.14159 * 2 ** -8);
    expect(back[2]! / 1e-30).toBeCloseTo(1, 2);
    expect(back[3]).toBe(Infinity);
    expect(back[4]).toBeNaN();
  });
});

describe('gradient codecs in WebAssembly SIMD', () => {
  // Every sign, exponent and top 7 mantissa bits, each with low halves that sit on, beside and
  // between the rounding points of float16 (normal and subnormal) and bfloat16, plus random ones.
  function inputs(): Float32Array {
    const lows = [0x0001, 0x0fff, 0x1001, 0x1fff, 0x7fff, 0x8001, 0xffff];
    for (let k = 0; k < 16; k++) lows.push(k * 0x1000);
    let seed = 12345;
    for (let k = 0; k < 8; k++) {
      seed = (seed * 1103515245 + 12345) >>> 0;
      lows.push(seed >>> 16);
    }
    const bits = new Uint32Array(65536 * lows.length);
    let i = 0;
    for (let high = 0; high < 65536; high++) for (const low of lows) bits[i++] = ((high << 16) | low) >>> 0;
    return new Float32Array(bits.buffer);
  }

  it('halfCodec() is available here', async () => {
    const { halfCodec } = await import('../../src/rpc/half-codec.js');
    expect(halfCodec()).not.toBeNull();
  });

  for (const dtype of ['float16', 'bfloat16'] as const) {
    it(`${dtype}: encodes ${65536 * 30} float32 patterns to the same bits as the JavaScript loop`, () => {
      const src = inputs();
      const simd = new Uint16Array(src.length);
      const scalar = new Uint16Array(src.length);
      encodeGradient(src, dtype, simd);
      encodeGradient(src, dtype, scalar, false);
      let firstDiff = -1;
      for (let i = 0; i < src.length && firstDiff < 0; i++) if (simd[i] !== scalar[i]) firstDiff = i;
      const at = firstDiff < 0 ? '' : `0x${new Uint32Array(src.buffer)[firstDiff]!.toString(16)} -> simd 0x${simd[firstDiff]!.toString(16)}, js 0x${scalar[firstDiff]!.toString(16)}`;
      expect(at).toBe('');
    });

    it(`${dtype}: decodes all 65536 patterns to the same bits as the JavaScript path, and odd lengths too`, () => {
      const all = new Uint16Array(65536).map((_, i) => i);
      const simd = new Float32Array(all.length);
      const scalar = new Float32Array(all.length);
      decodeGradient(all, dtype, simd);
      decodeGradient(all, dtype, scalar, false);
      expect(Buffer.from(simd.buffer).equals(Buffer.from(scalar.buffer))).toBe(true);
      for (const n of [1, 7, 8, 9, 17]) {
        const src = Float32Array.from({ length: n }, (_, i) => (i - 4) * 0.37);
        const enc = new Uint16Array(n);
        const back = new Float32Array(n);
        encodeGradient(src, dtype, enc);
        decodeGradient(enc, dtype, back);
        const ref = new Float32Array(n);
        const refEnc = new Uint16Array(n);
        encodeGradient(src, dtype, refEnc, false);
        decodeGradient(refEnc, dtype, ref, false);
        expect([...enc]).toEqual([...refEnc]);
        expect(Buffer.from(back.buffer).equals(Buffer.from(ref.buffer))).toBe(true);
      }
    });
  }
});
