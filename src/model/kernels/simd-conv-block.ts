/**
 * The kernels of simd.ts's module behind the fused convolution block (conv-relu-pool.ts): a
 * 3x3 convolution's output rows followed by bias, ReLU and 2x2 stride-2 max pooling, and the
 * two halves of that block's gradient. Each works on one row of pooling windows, `channels`
 * floats (a multiple of 4) per pixel, four channels per vector.
 *
 * The pooling winner of a window is kept as a code per channel: 0 and 1 the top row's left and
 * right cells, 2 and 3 the bottom row's, -1 none (every cell NaN). It is the first maximum in
 * that order with a strict comparison, the rule of the MaxPoolGrad kernels (max-pool-grad.ts).
 */
import { bump, countdown, guardedCountdown, I32, op, splatF32, splatI32, V128, v, vectorsOf, type FunctionDef } from './wasm-assembler.js';

/** local = channels * 4 (the bytes of one pixel), from the `channels` param. */
const pixelBytes = (channels: number, local: number) => [...op.get(channels), ...op.i32(2), ...op.i32Shl, ...op.set(local)];
/** Pushes the value of `pointer` (+ the local `extra` when given). */
const address = (pointer: number, extra?: number) => [...op.get(pointer), ...(extra === undefined ? [] : [...op.get(extra), ...op.i32Add])];

/**
 * biasReluPool2x2Row(top, bottom, bias, out, codes, windows, channels): top and bottom are two
 * consecutive conv output rows (2 * windows pixels each); for every window and channel, the four
 * cells get bias added and ReLU (max with 0; NaN stays NaN) applied, and out gets their maximum
 * (NaN when all four are NaN), codes (int32) the winner's code.
 */
export function biasReluPool2x2RowDef(): FunctionDef {
  const [TOP, BOT, BIAS, OUT, CODES, WIN, CH] = [0, 1, 2, 3, 4, 5, 6];
  const [CB, VECS, K, PB] = [7, 8, 9, 10];
  const [NEG, ZERO, NONE, BV, BEST, CODE, M] = [11, 12, 13, 14, 15, 16, 17];
  const CELL = [18, 19, 20, 21];
  const KS = [22, 23, 24, 25];
  const cell = (i: number, pointer: number, extra?: number) => [
    ...address(pointer, extra), ...v.load(), ...op.get(BV), ...v.f32x4Add, ...op.get(ZERO), ...v.f32x4Max, ...op.set(CELL[i]!),
  ];
  const challenge = (i: number) => [
    ...op.get(CELL[i]!), ...op.get(BEST), ...v.f32x4Gt, ...op.set(M),
    ...op.get(CELL[i]!), ...op.get(BEST), ...op.get(M), ...v.bitselect, ...op.set(BEST),
    ...op.get(KS[i]!), ...op.get(CODE), ...op.get(M), ...v.bitselect, ...op.set(CODE),
  ];
  const vector = [
    ...op.get(PB), ...v.load(), ...op.set(BV),
    ...cell(0, TOP), ...cell(1, TOP, CB), ...cell(2, BOT), ...cell(3, BOT, CB),
    ...op.get(NEG), ...op.set(BEST), ...op.get(NONE), ...op.set(CODE),
    ...challenge(0), ...challenge(1), ...challenge(2), ...challenge(3),
    // out = no winner ? the (NaN) first cell : best
    ...op.get(OUT), ...op.get(CELL[0]!), ...op.get(BEST), ...op.get(CODE), ...op.get(NONE), ...v.i32x4Eq, ...v.bitselect, ...v.store(),
    ...op.get(CODES), ...op.get(CODE), ...v.store(),
    ...bump(TOP, { constant: 16 }), ...bump(BOT, { constant: 16 }), ...bump(PB, { constant: 16 }),
    ...bump(OUT, { constant: 16 }), ...bump(CODES, { constant: 16 }),
  ];
  const window = [
    ...op.get(BIAS), ...op.set(PB), ...op.get(VECS), ...op.set(K),
    ...countdown(K, vector),
    // Past the window's right-hand cells (the vectors walked its left-hand ones).
    ...bump(TOP, { local: CB }), ...bump(BOT, { local: CB }),
  ];
  const body = [
    ...pixelBytes(CH, CB), ...vectorsOf(CH, VECS),
    ...splatF32(-Infinity, NEG), ...splatF32(0, ZERO), ...splatI32(-1, NONE),
    ...KS.flatMap((local, code) => splatI32(code, local)),
    ...op.block, ...op.get(VECS), ...op.i32Eqz, ...op.brIf(0),
    ...guardedCountdown(WIN, window),
    ...op.end,
  ];
  return { name: 'biasReluPool2x2Row', params: 7, locals: [[4, I32], [15, V128]], body };
}

/** g = dy * (pooled > 0 ? 1 : 0) into G (the ReLU gradient at the window's winner), code into CODE. */
function routedGradient(DY: number, POOLED: number, CODES: number, ONE: number, ZERO: number, G: number, CODE: number): number[] {
  return [
    ...op.get(DY), ...v.load(),
    ...op.get(POOLED), ...v.load(), ...op.get(ZERO), ...v.f32x4Gt, ...op.get(ONE), ...v.and,
    ...v.f32x4Mul, ...op.set(G),
    ...op.get(CODES), ...v.load(), ...op.set(CODE),
  ];
}

/**
 * poolReluGrad2x2Row(dy, pooled, codes, dtop, dbottom, windows, channels): the gradient of the
 * block's pre-activation for one row of windows: g = dy * (pooled > 0 ? 1 : 0) goes to the
 * winner's cell of the two rows dtop and dbottom (2 * windows pixels each), 0 to the other three.
 */
export function poolReluGrad2x2RowDef(): FunctionDef {
  const [DY, POOLED, CODES, DTOP, DBOT, WIN, CH] = [0, 1, 2, 3, 4, 5, 6];
  const [CB, VECS, K] = [7, 8, 9];
  const [ONE, ZERO, G, CODE] = [10, 11, 12, 13];
  const KS = [14, 15, 16, 17];
  const put = (code: number, pointer: number, extra?: number) => [
    ...address(pointer, extra), ...op.get(G), ...op.get(CODE), ...op.get(KS[code]!), ...v.i32x4Eq, ...v.and, ...v.store(),
  ];
  const vector = [
    ...routedGradient(DY, POOLED, CODES, ONE, ZERO, G, CODE),
    ...put(0, DTOP), ...put(1, DTOP, CB), ...put(2, DBOT), ...put(3, DBOT, CB),
    ...bump(DY, { constant: 16 }), ...bump(POOLED, { constant: 16 }), ...bump(CODES, { constant: 16 }),
    ...bump(DTOP, { constant: 16 }), ...bump(DBOT, { constant: 16 }),
  ];
  const window = [
    ...op.get(VECS), ...op.set(K),
    ...countdown(K, vector),
    ...bump(DTOP, { local: CB }), ...bump(DBOT, { local: CB }),
  ];
  const body = [
    ...pixelBytes(CH, CB), ...vectorsOf(CH, VECS),
    ...splatF32(1, ONE), ...splatF32(0, ZERO),
    ...KS.flatMap((local, code) => splatI32(code, local)),
    ...op.block, ...op.get(VECS), ...op.i32Eqz, ...op.brIf(0),
    ...guardedCountdown(WIN, window),
    ...op.end,
  ];
  return { name: 'poolReluGrad2x2Row', params: 7, locals: [[3, I32], [8, V128]], body };
}

/**
 * poolReluBiasGradRow(dy, pooled, codes, acc, windows, channels): adds one row of windows to the
 * bias gradient, acc[c] (float64 per channel): first the g of every window whose winner is in the
 * top row, in window order, then those in the bottom row; the order in which a column sum over
 * the dense pre-activation gradient (Sum, sum.ts) meets them, so the same float64 sums.
 */
export function poolReluBiasGradRowDef(): FunctionDef {
  const [DY, POOLED, CODES, ACC, WIN, CH] = [0, 1, 2, 3, 4, 5];
  const [VECS, K, PD, PP, PC, PA, W] = [6, 7, 8, 9, 10, 11, 12];
  const [ONE, ZERO, G, CODE, T] = [13, 14, 15, 16, 17];
  const KS = [18, 19, 20, 21];
  const high = [8, 9, 10, 11, 12, 13, 14, 15, 0, 1, 2, 3, 4, 5, 6, 7];
  const addHalf = (offset: number, hi: boolean) => [
    ...op.get(PA), ...op.get(PA), ...v.load(offset),
    ...op.get(T), ...(hi ? [...op.get(T), ...v.shuffle(high)] : []), ...v.f64x2PromoteLow, ...v.f64x2Add,
    ...v.store(offset),
  ];
  const sweep = (codes: [number, number]) => {
    const vector = [
      ...routedGradient(PD, PP, PC, ONE, ZERO, G, CODE),
      ...op.get(G),
      ...op.get(CODE), ...op.get(KS[codes[0]]!), ...v.i32x4Eq, ...op.get(CODE), ...op.get(KS[codes[1]]!), ...v.i32x4Eq, ...v.or,
      ...v.and, ...op.set(T),
      ...addHalf(0, false), ...addHalf(16, true),
      ...bump(PD, { constant: 16 }), ...bump(PP, { constant: 16 }), ...bump(PC, { constant: 16 }), ...bump(PA, { constant: 32 }),
    ];
    const window = [...op.get(ACC), ...op.set(PA), ...op.get(VECS), ...op.set(K), ...countdown(K, vector)];
    return [
      ...op.get(DY), ...op.set(PD), ...op.get(POOLED), ...op.set(PP), ...op.get(CODES), ...op.set(PC), ...op.get(WIN), ...op.set(W),
      ...guardedCountdown(W, window),
    ];
  };
  const body = [
    ...vectorsOf(CH, VECS),
    ...splatF32(1, ONE), ...splatF32(0, ZERO),
    ...KS.flatMap((local, code) => splatI32(code, local)),
    ...op.block, ...op.get(VECS), ...op.i32Eqz, ...op.brIf(0),
    ...sweep([0, 1]), ...sweep([2, 3]),
    ...op.end,
  ];
  return { name: 'poolReluBiasGradRow', params: 6, locals: [[7, I32], [9, V128]], body };
}
