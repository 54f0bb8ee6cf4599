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
