/**
 * A few inner loops in WebAssembly SIMD, running directly on the wasm backend's heap.
 *
 * The JS kernels of this folder (MaxPoolGrad, the bias-gradient Sum) work one float at a time,
 * about 3-5 ns per element; the same loops over f32x4 lanes are several times faster. The
 * module is assembled from its bytes (wasm-assembler.ts: no toolchain, no file to ship; the
 * multiply-add kernels are in simd-products.ts, the others below) and instantiated against the tfjs wasm backend's own `WebAssembly.Memory`, so it reads and writes tensors
 * where they live: pointers are the backend's memory offsets.
 *
 * `simdKernelsFor(backend)` is the one place this is chosen: undefined when the engine lacks
 * SIMD, the backend's memory is not reachable, or it is shared (threaded build); callers then
 * keep their JS loops. Results are bitwise those of the JS loops (same comparisons, same float64
 * summation order), except the products' multiply-adds where the engine has relaxed SIMD: there
 * they are fused (one rounding instead of two; about 1.7x the product rate on an FMA CPU), see
 * `simdTuning.fused`. Either way a given machine computes the same bits run after run.
 */
import type { BackendWasm } from '@tensorflow/tfjs-backend-wasm';
import { assembleModule, bump, countdown, guardedCountdown, I32, op, splatF32, V128, v, vectorsOf, type FunctionDef } from './wasm-assembler.js';
import { conv3x3RowDef, convFilterGrad3x3RowDef, copyRowsDef, gemmDef } from './simd-products.js';
import { biasReluPool2x2RowDef, poolReluBiasGradRowDef, poolReluGrad2x2RowDef } from './simd-conv-block.js';
import { allowRelaxedSimd, instantiate, wasmApi, type WasmMemory } from '../../common/wasm.js';

export interface SimdKernels {
  /**
   * One row of 2x2 stride-2 max-pool windows (see maxPoolGrad2x2Tiled in max-pool-grad.ts):
   * input rows at byte offsets x0, x1 (= x0 + rowBytes), their dx rows at dx0, dx1, the row's
   * dy at dy; `windows` windows of `channels` floats (a multiple of 4) each.
   */
  maxPoolGrad2x2Row(x0: number, x1: number, dx0: number, dx1: number, dy: number, windows: number, channels: number): void;
  /**
   * acc[j] += sum over rows i < n of x[i * strideBytes/4 + j] for j < 8, in row order, in
   * float64: x at byte offset `x`, the 8 float64 accumulators at byte offset `acc`.
   */
  sumColumns8(x: number, n: number, strideBytes: number, acc: number): void;
  /**
   * dst [cols, rows] = src [rows, cols] transposed, both float32 at byte offsets, rows = 4 *
   * rows4, cols = 4 * cols4; srcStrideBytes = cols * 4 and dstStrideBytes = rows * 4 (or larger).
   */
  transpose4x4(src: number, dst: number, rows4: number, cols4: number, srcStrideBytes: number, dstStrideBytes: number): void;
  /**
   * out = a + b, float32: `rows` rows of 4 * vecs floats of a and out, contiguous; b's row
   * starts move by bRowStrideBytes per row (0: one row broadcast to every row).
   */
  addRows(a: number, b: number, out: number, rows: number, vecs: number, bRowStrideBytes: number): void;
  /**
   * The filter gradient of a 3x3 single-channel conv, one output row: for every output column
   * c < ow and channel o < 4 * groups, acc[t][o] += x_fr[c * stride + fc] * dy[c][o] (t = 3 fr + fc),
   * in column order. x0..x2: the row's three input rows; dy: its dy row (pixelBytes apart);
   * acc: the [9, outC] float32 filter gradient (rows pixelBytes apart).
   */
  convFilterGrad3x3Row(x0: number, x1: number, x2: number, dy: number, acc: number, ow: number, groups: number, strideBytes: number, pixelBytes: number): void;
  /**
   * A 3x3 single-channel conv, one output row: out[c][o] = sum over t = 3 fr + fc, in that
   * order, of x_fr[c * stride + fc] * w[t][o], for c < ow and o < 4 * groups. x0..x2: the
   * row's three input rows; w: the [9, outC] filter; out: the output row (pixelBytes apart).
   */
  conv3x3Row(x0: number, x1: number, x2: number, w: number, out: number, ow: number, groups: number, strideBytes: number, pixelBytes: number): void;
  /**
   * `blocks` consecutive 2-row (gemm2x16) or 1-row (gemm1x16) by 16-column blocks of a matmul:
   * out[r][0..16) = sum over k < kCount, in k order, of a[r][k] * b[k][0..16). a[r][k] is at
   * byte offset a + r * aRowStrideBytes + k * aKStrideBytes (row-major a: k * 4 and 4; a stored
   * transposed, [K, M]: 4 and M * 4); out is row-major (row stride in bytes); b is a packed
   * panel: kCount rows of 16 floats, rows bStrideBytes apart.
   */
  gemm2x16(a: number, aRowStrideBytes: number, aKStrideBytes: number, b: number, bStrideBytes: number, out: number, outStrideBytes: number, kCount: number, blocks: number): void;
  gemm1x16(a: number, aRowStrideBytes: number, aKStrideBytes: number, b: number, bStrideBytes: number, out: number, outStrideBytes: number, kCount: number, blocks: number): void;
  /**
   * The same blocks, summed on top of what `out` holds (out[r][0..16) += ..., continuing the
   * k-ordered sum): a product cut into k ranges gives bitwise the uncut one.
   */
  gemm2x16Add(a: number, aRowStrideBytes: number, aKStrideBytes: number, b: number, bStrideBytes: number, out: number, outStrideBytes: number, kCount: number, blocks: number): void;
  gemm1x16Add(a: number, aRowStrideBytes: number, aKStrideBytes: number, b: number, bStrideBytes: number, out: number, outStrideBytes: number, kCount: number, blocks: number): void;
  /**
   * The ReLU gradient in one pass: out[i] = dy[i] * (x[i] > 0 ? 1 : x[i] is NaN ? NaN : 0), for
   * 4 * vecs floats (the stock mul(dy, cast(step(x))) takes three).
   */
  reluGrad(dy: number, x: number, out: number, vecs: number): void;
  /** Copies `rows` rows of 16 floats, src rows srcStrideBytes apart, into a contiguous dst (packs a gemm panel). */
  copyRows16(src: number, srcStrideBytes: number, dst: number, rows: number): void;
  /** The fused convolution block's kernels (simd-conv-block.ts, conv-relu-pool.ts). */
  biasReluPool2x2Row(top: number, bottom: number, bias: number, out: number, codes: number, windows: number, channels: number): void;
  poolReluGrad2x2Row(dy: number, pooled: number, codes: number, dtop: number, dbottom: number, windows: number, channels: number): void;
  poolReluBiasGradRow(dy: number, pooled: number, codes: number, acc: number, windows: number, channels: number): void;
}


function maxPoolGrad2x2RowDef(): FunctionDef {
  // params: x0 x1 dx0 dx1 dy windows channels
  const [X0, X1, DX0, DX1, DY, WIN, CH] = [0, 1, 2, 3, 4, 5, 6];
  // i32 locals: cBytes, vecs (channels / 4), inner counter
  const [CB, VECS, K] = [7, 8, 9];
  // v128 locals
  const [NEG, A, B, C, D, BEST, C0, C1, C2, C3, G, T] = [10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21];
  const gt = (val: number, flag: number) => [...op.get(val), ...op.get(BEST), ...v.f32x4Gt, ...op.set(flag)];
  const take = (val: number, flag: number) => [...op.get(val), ...op.get(BEST), ...op.get(flag), ...v.bitselect, ...op.set(BEST)];
  const storeMasked = (addr: number, extra: boolean, mask: number[]) => [
    ...op.get(addr), ...(extra ? [...op.get(CB), ...op.i32Add] : []),
    ...op.get(G), ...mask, ...v.and, ...v.store(),
  ];
  const load = (addr: number, extra: boolean, into: number) => [
    ...op.get(addr), ...(extra ? [...op.get(CB), ...op.i32Add] : []), ...v.load(), ...op.set(into),
  ];
  const vector = [
    ...load(X0, false, A), ...load(X0, true, B), ...load(X1, false, C), ...load(X1, true, D),
    ...op.get(DY), ...v.load(), ...op.set(G),
    // c0 = a > -inf; best = c0 ? a : -inf; then each later cell wins only when strictly greater.
    ...op.get(A), ...op.get(NEG), ...v.f32x4Gt, ...op.set(C0),
    ...op.get(A), ...op.get(NEG), ...op.get(C0), ...v.bitselect, ...op.set(BEST),
    ...gt(B, C1), ...take(B, C1),
    ...gt(C, C2), ...take(C, C2),
    ...gt(D, C3),
    // winners: d if c3; c if c2 & !c3; b if c1 & !(c2|c3); a if c0 & !(c1|c2|c3).
    ...storeMasked(DX1, true, op.get(C3)),
    ...storeMasked(DX1, false, [...op.get(C2), ...op.get(C3), ...v.andNot]),
    ...op.get(C2), ...op.get(C3), ...v.or, ...op.set(T),
    ...storeMasked(DX0, true, [...op.get(C1), ...op.get(T), ...v.andNot]),
    ...op.get(C1), ...op.get(T), ...v.or, ...op.set(T),
    ...storeMasked(DX0, false, [...op.get(C0), ...op.get(T), ...v.andNot]),
    ...bump(X0, { constant: 16 }), ...bump(X1, { constant: 16 }), ...bump(DX0, { constant: 16 }), ...bump(DX1, { constant: 16 }), ...bump(DY, { constant: 16 }),
  ];
  const window = [
    ...op.get(VECS), ...op.set(K),
    ...countdown(K, vector),
    // Skip each row's second cell of the window (already handled through +cBytes).
    ...bump(X0, { local: CB }), ...bump(X1, { local: CB }), ...bump(DX0, { local: CB }), ...bump(DX1, { local: CB }),
  ];
  const body = [
    ...splatF32(-Infinity, NEG),
    ...op.get(CH), ...op.get(CH), ...op.i32Add, ...op.get(CH), ...op.get(CH), ...op.i32Add, ...op.i32Add, ...op.set(CB), // channels * 4
    ...vectorsOf(CH, VECS),
    ...op.block, ...op.get(VECS), ...op.i32Eqz, ...op.brIf(0),
    ...guardedCountdown(WIN, window),
    ...op.end,
  ];
  return { name: 'maxPoolGrad2x2Row', params: 7, locals: [[3, I32], [12, V128]], body };
}

function sumColumns8Def(): FunctionDef {
  // params: x n strideBytes acc
  const [X, N, STRIDE, ACC] = [0, 1, 2, 3];
  const [S0, S1, S2, S3, LO, HI] = [4, 5, 6, 7, 8, 9];
  const high = [8, 9, 10, 11, 12, 13, 14, 15, 0, 1, 2, 3, 4, 5, 6, 7];
  const addHalf = (acc: number, vec: number, hi: boolean) => [
    ...op.get(acc), ...op.get(vec), ...(hi ? [...op.get(vec), ...v.shuffle(high)] : []), ...v.f64x2PromoteLow, ...v.f64x2Add, ...op.set(acc),
  ];
  const row = [
    ...op.get(X), ...v.load(0), ...op.set(LO),
    ...op.get(X), ...v.load(16), ...op.set(HI),
    ...addHalf(S0, LO, false), ...addHalf(S1, LO, true), ...addHalf(S2, HI, false), ...addHalf(S3, HI, true),
    ...bump(X, { local: STRIDE }),
  ];
  const body = [
    ...op.get(ACC), ...v.load(0), ...op.set(S0),
    ...op.get(ACC), ...v.load(16), ...op.set(S1),
    ...op.get(ACC), ...v.load(32), ...op.set(S2),
    ...op.get(ACC), ...v.load(48), ...op.set(S3),
    ...guardedCountdown(N, row),
    ...op.get(ACC), ...op.get(S0), ...v.store(0),
    ...op.get(ACC), ...op.get(S1), ...v.store(16),
    ...op.get(ACC), ...op.get(S2), ...v.store(32),
    ...op.get(ACC), ...op.get(S3), ...v.store(48),
  ];
  return { name: 'sumColumns8', params: 4, locals: [[6, V128]], body };
}

function transpose4x4Def(): FunctionDef {
  // params: src dst rows4 cols4 srcStride dstStride
  const [SRC, DST, ROWS4, COLS4, SS, DS] = [0, 1, 2, 3, 4, 5];
  // i32 locals: ps pd j s2 s3 d2 d3 d4
  const [PS, PD, J, S2, S3, D2, D3, D4] = [6, 7, 8, 9, 10, 11, 12, 13];
  // v128 locals
  const [R0, R1, R2, R3, T0, T1, T2, T3] = [14, 15, 16, 17, 18, 19, 20, 21];
  const range = (a: number, n: number) => Array.from({ length: n }, (_, i) => a + i);
  const interleaveLow = [...range(0, 4), ...range(16, 4), ...range(4, 4), ...range(20, 4)];
  const interleaveHigh = [...range(8, 4), ...range(24, 4), ...range(12, 4), ...range(28, 4)];
  const lowHalves = [...range(0, 8), ...range(16, 8)];
  const highHalves = [...range(8, 8), ...range(24, 8)];
  const plus = (base: number, delta: number | null) => [...op.get(base), ...(delta === null ? [] : [...op.get(delta), ...op.i32Add])];
  const mix = (a: number, b: number, lanes: number[], into: number | null) => [...op.get(a), ...op.get(b), ...v.shuffle(lanes), ...(into === null ? [] : op.set(into))];
  const block = [
    ...plus(PS, null), ...v.load(), ...op.set(R0),
    ...plus(PS, SS), ...v.load(), ...op.set(R1),
    ...plus(PS, S2), ...v.load(), ...op.set(R2),
    ...plus(PS, S3), ...v.load(), ...op.set(R3),
    ...mix(R0, R1, interleaveLow, T0), ...mix(R0, R1, interleaveHigh, T1),
    ...mix(R2, R3, interleaveLow, T2), ...mix(R2, R3, interleaveHigh, T3),
    ...plus(PD, null), ...mix(T0, T2, lowHalves, null), ...v.store(),
    ...plus(PD, DS), ...mix(T0, T2, highHalves, null), ...v.store(),
    ...plus(PD, D2), ...mix(T1, T3, lowHalves, null), ...v.store(),
    ...plus(PD, D3), ...mix(T1, T3, highHalves, null), ...v.store(),
    ...bump(PS, { constant: 16 }), ...bump(PD, { local: D4 }),
  ];
  const strip = [
    ...op.get(SRC), ...op.set(PS), ...op.get(DST), ...op.set(PD), ...op.get(COLS4), ...op.set(J),
    ...countdown(J, block),
    // Next strip: 4 source rows down, 4 destination columns right.
    ...op.get(SRC), ...op.get(S2), ...op.i32Add, ...op.get(S2), ...op.i32Add, ...op.set(SRC),
    ...bump(DST, { constant: 16 }),
  ];
  const body = [
    ...op.get(SS), ...op.get(SS), ...op.i32Add, ...op.set(S2),
    ...op.get(S2), ...op.get(SS), ...op.i32Add, ...op.set(S3),
    ...op.get(DS), ...op.get(DS), ...op.i32Add, ...op.set(D2),
    ...op.get(D2), ...op.get(DS), ...op.i32Add, ...op.set(D3),
    ...op.get(D2), ...op.get(D2), ...op.i32Add, ...op.set(D4),
    ...op.block, ...op.get(COLS4), ...op.i32Eqz, ...op.brIf(0),
    ...guardedCountdown(ROWS4, strip),
    ...op.end,
  ];
  return { name: 'transpose4x4', params: 6, locals: [[8, I32], [8, V128]], body };
}

function binaryRowsDef(name: string, opcode: number): FunctionDef {
  // params: a b out rows vecs bRowStride
  const [A, B, OUT, ROWS, VECS, BSTRIDE] = [0, 1, 2, 3, 4, 5];
  const [PB, J] = [6, 7];
  const inner = [
    ...op.get(OUT), ...op.get(A), ...v.load(), ...op.get(PB), ...v.load(), ...op.simd(opcode), ...v.store(),
    ...bump(A, { constant: 16 }), ...bump(PB, { constant: 16 }), ...bump(OUT, { constant: 16 }),
  ];
  const row = [
    ...op.get(B), ...op.set(PB), ...op.get(VECS), ...op.set(J),
    ...countdown(J, inner),
    ...bump(B, { local: BSTRIDE }),
  ];
  const body = [...op.block, ...op.get(VECS), ...op.i32Eqz, ...op.brIf(0), ...guardedCountdown(ROWS, row), ...op.end];
  return { name, params: 6, locals: [[2, I32]], body };
}

function reluGradDef(): FunctionDef {
  // params: dy x out vecs; v128 locals: 1, NaN, 0 (splats), x
  const [DY, X, OUT, VECS] = [0, 1, 2, 3];
  const [ONE, NAN, ZERO, XV] = [4, 5, 6, 7];
  const inner = [
    ...op.get(OUT),
    ...op.get(DY), ...v.load(),
    // factor = (x > 0 ? 1 : 0) | (x != x ? NaN : 0)
    ...op.get(X), ...v.load(), ...op.tee(XV), ...op.get(ZERO), ...v.f32x4Gt, ...op.get(ONE), ...v.and,
    ...op.get(XV), ...op.get(XV), ...v.f32x4Ne, ...op.get(NAN), ...v.and,
    ...v.or,
    ...v.f32x4Mul, ...v.store(),
    ...bump(DY, { constant: 16 }), ...bump(X, { constant: 16 }), ...bump(OUT, { constant: 16 }),
  ];
  return { name: 'reluGrad', params: 4, locals: [[4, V128]], body: [...splatF32(1, ONE), ...splatF32(NaN, NAN), ...splatF32(0, ZERO), ...guardedCountdown(VECS, inner)] };
}

/**
 * The module's bytes: imports env.memory, exports the functions (all i32 params, no results).
 * `fused`: the products' multiply-adds are relaxed_madd (one rounding where the CPU has FMA)
 * instead of a multiply and an add; it needs an engine with relaxed SIMD.
 */
export function assembleSimdModule(fused: boolean): Uint8Array {
  return assembleModule([
    maxPoolGrad2x2RowDef(), sumColumns8Def(), transpose4x4Def(),
    binaryRowsDef('addRows', 0xe4 /* f32x4.add */), convFilterGrad3x3RowDef(fused), conv3x3RowDef(fused),
    gemmDef('gemm2x16', 2, 4, fused, false), gemmDef('gemm1x16', 1, 4, fused, false),
    gemmDef('gemm2x16Add', 2, 4, fused, true), gemmDef('gemm1x16Add', 1, 4, fused, true),
    copyRowsDef('copyRows16', 4), reluGradDef(),
    biasReluPool2x2RowDef(), poolReluGrad2x2RowDef(), poolReluBiasGradRowDef(),
  ]);
}

// ---------------------------------------------------------------------------------------------


/** Instances per backend memory (a backend re-created by setBackend gets a new one), fused and not. */
const instances = new WeakMap<WasmMemory, Map<boolean, SimdKernels | null>>();

/**
 * Switches for tests, comparisons and users: `enabled: false` keeps every caller on its JS loops;
 * `fused: false` keeps the products' multiply and add apart (two roundings, bitwise what
 * XNNPACK and the JS loops compute, on every CPU). Fused multiply-adds are the default where the
 * engine has relaxed SIMD; TENSORFLEET_WASM_FMA=0 turns them off for a process.
 */
export const simdTuning = { enabled: true, fused: process.env.TENSORFLEET_WASM_FMA !== '0' };

function memoryOf(backend: BackendWasm): WasmMemory | undefined {
  const asm = (backend.wasm as unknown as { asm?: { memory?: unknown } }).asm;
  const memory = asm?.memory;
  return wasmApi !== undefined && memory instanceof wasmApi.Memory ? memory : undefined;
}

function tryInstantiate(memory: WasmMemory, fused: boolean): SimdKernels | null {
  if (fused) allowRelaxedSimd();
  try {
    return instantiate<SimdKernels>(new wasmApi!.Module(assembleSimdModule(fused)), { env: { memory } });
  } catch {
    return null; // no SIMD (or relaxed SIMD) in this engine
  }
}

function kernelsFor(memory: WasmMemory, fused: boolean): SimdKernels | null {
  let byKind = instances.get(memory);
  if (byKind === undefined) instances.set(memory, (byKind = new Map()));
  let kernels = byKind.get(fused);
  if (kernels === undefined) byKind.set(fused, (kernels = tryInstantiate(memory, fused)));
  return kernels;
}

/** The SIMD kernels bound to `backend`'s heap, or undefined (callers keep their JS loops). */
export function simdKernelsFor(backend: BackendWasm): SimdKernels | undefined {
  if (!simdTuning.enabled) return undefined;
  const memory = memoryOf(backend);
  if (memory === undefined || (typeof SharedArrayBuffer !== 'undefined' && memory.buffer instanceof SharedArrayBuffer)) return undefined;
  return (simdTuning.fused ? kernelsFor(memory, true) : null) ?? kernelsFor(memory, false) ?? undefined;
}

/** What the products of `backend` run on: 'fused' (relaxed_madd), 'separate' (mul, add), or 'js'. */
export function simdProductKind(backend: BackendWasm): 'fused' | 'separate' | 'js' {
  const kernels = simdKernelsFor(backend);
  if (kernels === undefined) return 'js';
  const memory = memoryOf(backend)!;
  return instances.get(memory)?.get(true) === kernels ? 'fused' : 'separate';
}
