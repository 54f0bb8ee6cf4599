/**
 * The multiply-add kernels of simd.ts's module: the 3x3 single-channel convolution and its
 * filter gradient, the matmul blocks and the panel copy that feeds them. Each is assembled
 * with its multiply-adds fused (`fused`: relaxed_madd, one rounding where the CPU has FMA) or
 * as a multiply and an add (two roundings, bitwise the JS loops and XNNPACK); see
 * assembleSimdModule and simdTuning.fused.
 */
import { bump, guardedCountdown, I32, multiplyAdd, op, V128, v, type FunctionDef } from './wasm-assembler.js';

export function convFilterGrad3x3RowDef(fused: boolean): FunctionDef {
  // params: x0 x1 x2 dy acc ow groups strideBytes pixelBytes
  const [X0, X1, X2, DY, ACC, OW, GROUPS, SX, PIX] = [0, 1, 2, 3, 4, 5, 6, 7, 8];
  // i32 locals: p0 p1 p2 pdy c addr
  const [P0, P1, P2, PDY, C, ADDR] = [9, 10, 11, 12, 13, 14];
  // v128 locals: 9 accumulators, dy
  const A = 15;
  const DYV = 24;
  const mulAdd = (acc: number, ptr: number, offset: number) => [...multiplyAdd(fused, op.get(acc), [...op.get(ptr), ...v.load32Splat(offset)], op.get(DYV)), ...op.set(acc)];
  const column = [
    ...op.get(PDY), ...v.load(), ...op.set(DYV),
    ...mulAdd(A, P0, 0), ...mulAdd(A + 1, P0, 4), ...mulAdd(A + 2, P0, 8),
    ...mulAdd(A + 3, P1, 0), ...mulAdd(A + 4, P1, 4), ...mulAdd(A + 5, P1, 8),
    ...mulAdd(A + 6, P2, 0), ...mulAdd(A + 7, P2, 4), ...mulAdd(A + 8, P2, 8),
    ...bump(P0, { local: SX }), ...bump(P1, { local: SX }), ...bump(P2, { local: SX }), ...bump(PDY, { local: PIX }),
  ];
  const accAt = (t: number) => (t === 0 ? [...op.get(ACC), ...op.set(ADDR)] : bump(ADDR, { local: PIX }));
  const loadAccs = Array.from({ length: 9 }, (_, t) => [...accAt(t), ...op.get(ADDR), ...v.load(), ...op.set(A + t)]).flat();
  const storeAccs = Array.from({ length: 9 }, (_, t) => [...accAt(t), ...op.get(ADDR), ...op.get(A + t), ...v.store()]).flat();
  const group = [
    ...loadAccs,
    ...op.get(X0), ...op.set(P0), ...op.get(X1), ...op.set(P1), ...op.get(X2), ...op.set(P2), ...op.get(DY), ...op.set(PDY),
    ...op.get(OW), ...op.set(C),
    ...guardedCountdown(C, column),
    ...storeAccs,
    // Next 4 channels.
    ...bump(ACC, { constant: 16 }), ...bump(DY, { constant: 16 }),
  ];
  return { name: 'convFilterGrad3x3Row', params: 9, locals: [[6, I32], [10, V128]], body: guardedCountdown(GROUPS, group) };
}

export function conv3x3RowDef(fused: boolean): FunctionDef {
  // params: x0 x1 x2 w out ow groups strideBytes pixelBytes
  const [X0, X1, X2, WP, OUT, OW, GROUPS, SX, PIX] = [0, 1, 2, 3, 4, 5, 6, 7, 8];
  // i32 locals: p0 p1 p2 pout c addr
  const [P0, P1, P2, POUT, C, ADDR] = [9, 10, 11, 12, 13, 14];
  // v128 locals: 9 filter vectors, the accumulator
  const WV = 15;
  const ACCV = 24;
  const product = (t: number, ptr: number, offset: number) => [...op.get(ptr), ...v.load32Splat(offset), ...op.get(WV + t), ...v.f32x4Mul];
  const addProduct = (t: number, ptr: number, offset: number) => [
    ...multiplyAdd(fused, op.get(ACCV), [...op.get(ptr), ...v.load32Splat(offset)], op.get(WV + t)), ...op.set(ACCV),
  ];
  const column = [
    ...product(0, P0, 0), ...op.set(ACCV),
    ...addProduct(1, P0, 4), ...addProduct(2, P0, 8),
    ...addProduct(3, P1, 0), ...addProduct(4, P1, 4), ...addProduct(5, P1, 8),
    ...addProduct(6, P2, 0), ...addProduct(7, P2, 4), ...addProduct(8, P2, 8),
    ...op.get(POUT), ...op.get(ACCV), ...v.store(),
    ...bump(P0, { local: SX }), ...bump(P1, { local: SX }), ...bump(P2, { local: SX }), ...bump(POUT, { local: PIX }),
  ];
  const wAt = (t: number) => (t === 0 ? [...op.get(WP), ...op.set(ADDR)] : bump(ADDR, { local: PIX }));
  const loadW = Array.from({ length: 9 }, (_, t) => [...wAt(t), ...op.get(ADDR), ...v.load(), ...op.set(WV + t)]).flat();
  const group = [
    ...loadW,
    ...op.get(X0), ...op.set(P0), ...op.get(X1), ...op.set(P1), ...op.get(X2), ...op.set(P2), ...op.get(OUT), ...op.set(POUT),
    ...op.get(OW), ...op.set(C),
    ...guardedCountdown(C, column),
    // Next 4 channels.
    ...bump(WP, { constant: 16 }), ...bump(OUT, { constant: 16 }),
  ];
  return { name: 'conv3x3Row', params: 9, locals: [[6, I32], [10, V128]], body: guardedCountdown(GROUPS, group) };
}

export function gemmDef(name: string, rows: number, vecs: number, fused: boolean, accumulate: boolean): FunctionDef {
  // params: a aRowStride aKStride b bStride out outStride k blocks
  const [AP, AS, AK, BP, BS, OUT, OS, K, BLOCKS] = [0, 1, 2, 3, 4, 5, 6, 7, 8];
  const range = (n: number) => Array.from({ length: n }, (_, i) => i);
  // i32 locals: the block's row pointers, the b cursor, the k counter
  const rowPtr = range(rows).map((i) => 9 + i);
  const BC = 9 + rows;
  const KC = BC + 1;
  // v128 locals: accumulators (row r, vector h: ACC + vecs * r + h), b vectors, splat
  const ACC = KC + 1;
  const BV = ACC + rows * vecs;
  const S = BV + vecs;
  const step = [
    ...range(vecs).flatMap((h) => [...op.get(BC), ...v.load(16 * h), ...op.set(BV + h)]),
    ...range(rows).flatMap((r) => [
      ...op.get(rowPtr[r]!), ...v.load32Splat(), ...op.set(S),
      ...range(vecs).flatMap((h) => [...multiplyAdd(fused, op.get(ACC + vecs * r + h), op.get(S), op.get(BV + h)), ...op.set(ACC + vecs * r + h)]),
      ...bump(rowPtr[r]!, { local: AK }),
    ]),
    ...bump(BC, { local: BS }),
  ];
  const store = range(rows).flatMap((r) => [
    ...range(vecs).flatMap((h) => [...op.get(OUT), ...op.get(ACC + vecs * r + h), ...v.store(16 * h)]),
    ...bump(OUT, { local: OS }),
  ]);
  const block = [
    ...range(rows).flatMap((r) => [...(r === 0 ? op.get(AP) : [...op.get(rowPtr[r - 1]!), ...op.get(AS), ...op.i32Add]), ...op.set(rowPtr[r]!)]),
    ...(accumulate
      ? range(rows).flatMap((r) => [
        ...range(vecs).flatMap((h) => [...op.get(OUT), ...(r === 0 ? [] : range(r).flatMap(() => [...op.get(OS), ...op.i32Add])), ...v.load(16 * h), ...op.set(ACC + vecs * r + h)]),
      ])
      : range(rows * vecs).flatMap((i) => [...op.f32(0), ...v.f32x4Splat, ...op.set(ACC + i)])),
    ...op.get(BP), ...op.set(BC), ...op.get(K), ...op.set(KC),
    ...guardedCountdown(KC, step),
    ...store,
    // Next block: `rows` rows of a further down.
    ...range(rows).flatMap(() => bump(AP, { local: AS })),
  ];
  return { name, params: 9, locals: [[rows + 2, I32], [rows * vecs + vecs + 1, V128]], body: guardedCountdown(BLOCKS, block) };
}

export function copyRowsDef(name: string, vecs: number): FunctionDef {
  // params: src srcStride dst rows: copies `rows` rows of 16 * vecs bytes, src rows srcStride apart, dst contiguous
  const [SRC, SS, DST, ROWS] = [0, 1, 2, 3];
  const range = (n: number) => Array.from({ length: n }, (_, i) => i);
  const row = [
    ...range(vecs).flatMap((h) => [...op.get(DST), ...op.get(SRC), ...v.load(16 * h), ...v.store(16 * h)]),
    ...bump(SRC, { local: SS }), ...bump(DST, { constant: 16 * vecs }),
  ];
  return { name, params: 4, locals: [], body: guardedCountdown(ROWS, row) };
}
