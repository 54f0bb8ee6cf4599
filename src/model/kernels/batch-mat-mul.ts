/**
 * Replacement wasm `BatchMatMul` / `_FusedMatMul` kernels that avoid the stock
 * kernels' slow transposed code path. A transposed operand is materialised
 * (a cheap O(n) copy: see transpose.ts) and the ORIGINAL stock matmul kernel
 * is then called with both transpose flags false.
 *
 * The stock C++ only has a fast (XNNPACK) path for an untransposed matmul
 * whose batch dimensions are all 1; anything else runs a naive blocked loop
 * whether or not we transpose first. So batched (batch > 1) calls are passed
 * through unchanged: an explicit transpose there costs time and gains nothing.
 *
 * When only b is transposed and b is the big operand (dense-layer input
 * gradients dy @ W^T), plain BatchMatMul instead computes (b @ a^T)^T, so the
 * large W is streamed as the left operand instead of transposed AND packed.
 *
 * The originals are captured by `createNoTransposeMatMulConfig` before the
 * stock registration is replaced (see register-wasm-kernels.ts); their
 * `setupFunc` is kept so `tf.setBackend('wasm')` still initialises them.
 */
import * as tf from '@tensorflow/tfjs';
import type { BackendWasm } from '@tensorflow/tfjs-backend-wasm';
import { simdKernelsFor } from './simd.js';
import { transposeInnerMatrix } from './transpose.js';

interface MatMulArgs {
  /** `a`, `b`, plus `bias` / `preluActivationWeights` for _FusedMatMul. */
  inputs: { a: tf.TensorInfo; b: tf.TensorInfo; [extra: string]: tf.TensorInfo | undefined };
  backend: BackendWasm;
  attrs: tf.NamedAttrMap & { transposeA: boolean; transposeB: boolean };
}

/** An operand prepared for the matmul, plus how to release it afterwards. */
interface Operand {
  info: tf.TensorInfo;
  release: () => void;
}

const noop = (): void => {};

/**
 * A zero-copy view of `x` with a new `shape` under a FRESH wasm tensor id.
 *
 * Why not just reuse x's dataId with another shape (as Reshape does)? The stock
 * C++ matmul caches its packed-weights XNNPACK operator per `b` tensor id and
 * ignores the shape, so one id seen as `b` with two different shapes silently
 * yields wrong results. A fresh id (released right after use, which also drops
 * any cached operator) cannot collide. Release with `releaseWasmAlias`, never
 * with `disposeData` (that would free x's memory).
 */
export function createWasmAlias(backend: BackendWasm, x: tf.TensorInfo, shape: number[]): tf.TensorInfo {
  return backend.makeOutput(shape, x.dtype, backend.getMemoryOffset(x.dataId));
}

/** Unregisters an alias made by `createWasmAlias` without freeing the memory. */
export function releaseWasmAlias(backend: BackendWasm, alias: tf.TensorInfo): void {
  const data = backend.dataIdMap.get(alias.dataId);
  if (data == null) return;
  backend.dataIdMap.delete(alias.dataId);
  backend.wasm.tfjs.disposeData(data.id);
}

function swapLastTwo(shape: readonly number[]): number[] {
  const out = shape.slice();
  const r = out.length;
  [out[r - 2], out[r - 1]] = [out[r - 1], out[r - 2]];
  return out;
}

/** Product of all but the two innermost dimensions. */
function batchSize(x: tf.TensorInfo): number {
  return x.shape.slice(0, -2).reduce((p, d) => p * d, 1);
}

/** Returns `x` with its two innermost dimensions transposed (materialised). */
function transposeInner(x: tf.TensorInfo, backend: BackendWasm): Operand {
  const rank = x.shape.length;
  if (rank < 2) {
    throw new Error(`BatchMatMul(wasm): operands must have rank >= 2, got [${x.shape}]`);
  }
  const rows = x.shape[rank - 2];
  const cols = x.shape[rank - 1];
  if (rows === 1 || cols === 1) {
    // Swapping a unit dimension does not move any element: reinterpret only.
    const alias = createWasmAlias(backend, x, swapLastTwo(x.shape));
    return { info: alias, release: () => releaseWasmAlias(backend, alias) };
  }
  const transpose = tf.getKernel('Transpose', 'wasm');
  if (transpose == null) {
    throw new Error("BatchMatMul(wasm): kernel 'Transpose' is not registered for 'wasm'");
  }
  const info = transposeInnerMatrix(x, backend, transpose.kernelFunc);
  return { info, release: () => backend.disposeData(info.dataId) };
}

/**
 * Wraps an original matmul kernel function (BatchMatMul or _FusedMatMul, both
 * take inputs `a`, `b` and attrs `transposeA`, `transposeB`) so that it is
 * only ever called without transpose flags. With `allowSwap` (plain
 * BatchMatMul: no bias to transpose) a @ b^T may run as (b @ a^T)^T.
 */
export function withoutTransposeFlags(original: tf.KernelFunc, allowSwap = false): tf.KernelFunc {
  const kernelFunc = (args: MatMulArgs): tf.TensorInfo | tf.TensorInfo[] => {
    const { inputs, backend, attrs } = args;
    const { transposeA, transposeB } = attrs;
    const { a, b } = inputs;
    if (batchSize(a) !== 1 || batchSize(b) !== 1 || a.shape.length < 2 || b.shape.length < 2) {
      return original(args as unknown as Parameters<tf.KernelFunc>[0]);
    }
    if (!transposeA && !transposeB) {
      if (allowSwap) {
        const simd = simdPlainProduct(a, b, backend);
        if (simd) return simd;
      }
      const [m, k] = a.shape.slice(-2);
      if (allowSwap && prefersSwappedPlainProduct(m, k, b.shape[b.shape.length - 1])) return swappedPlainProduct(original, a, b, backend);
      return original(args as unknown as Parameters<tf.KernelFunc>[0]);
    }
    if (allowSwap && !transposeA) {
      const [m, k] = a.shape.slice(-2);
      if (prefersSwappedProduct(m, k, b.shape[b.shape.length - 2])) return swappedProduct(original, a, b, backend);
    }
    if (allowSwap && transposeA && !transposeB) {
      const simd = simdPlainProduct(a, b, backend, true);
      if (simd) return simd;
    }
    const prepared: Operand[] = [];
    try {
      const a2 = transposeA ? transposeInner(a, backend) : { info: a, release: noop };
      prepared.push(a2);
      const b2 = transposeB ? transposeInner(b, backend) : { info: b, release: noop };
      prepared.push(b2);
      const simd = allowSwap ? simdPlainProduct(a2.info, b2.info, backend) : null;
      if (simd) return simd;
      return original({
        inputs: { ...inputs, a: a2.info, b: b2.info },
        backend,
        attrs: { ...attrs, transposeA: false, transposeB: false },
      } as unknown as Parameters<tf.KernelFunc>[0]);
    } finally {
      for (const op of prepared) op.release();
    }
  };
  return kernelFunc as unknown as tf.KernelFunc;
}

/** Measured per-element costs (relative) of the stock wasm Transpose and of XNNPACK packing `b`. */
const TRANSPOSE_COST = 3;
const PACK_COST = 4.5;

/**
 * For a @ b^T with a [M,K] and b [N,K]: the XNNPACK path packs its right operand
 * on every call (its operator cache is keyed by tensor id, and weights change
 * every step). Materialising b^T costs a transpose plus a pack of K*N elements;
 * computing (b @ a^T)^T instead costs a transpose plus a pack of M*K elements
 * and a transpose of the M*N result. The latter wins when b is the big operand,
 * e.g. a dense layer's input gradient dy @ W^T.
 */
export function prefersSwappedProduct(m: number, k: number, n: number): boolean {
  // Transposing a matrix with a unit dimension is free (a reinterpretation).
  const transpose = (rows: number, cols: number): number => (rows === 1 || cols === 1 ? 0 : TRANSPOSE_COST * rows * cols);
  const direct = transpose(n, k) + PACK_COST * k * n;
  const swapped = transpose(m, k) + PACK_COST * m * k + transpose(n, m);
  return swapped < direct;
}

/**
 * Per-element cost (same unit as PACK_COST) of transposing one operand for the untransposed
 * product below: measured 0.6 ms for the stock Transpose of a tall [5408,128] and 0.2 ms for the
 * JS one of a wide [32,5408], against about 3 ms to pack the [5408,128] right operand.
 */
const PLAIN_TRANSPOSE_COST = 1;

/**
 * For an untransposed a @ b with a [M,K] and b [K,N]: XNNPACK packs b (K*N elements, with a
 * strided transposing read) on every call. (b^T @ a^T)^T packs a^T instead (M*K) for three
 * transposes. It wins when b is the big operand, e.g. a dense layer's forward product at a small
 * batch: x [32,5408] @ W [5408,128] (not at batch 128, where x is as big as W).
 */
export function prefersSwappedPlainProduct(m: number, k: number, n: number): boolean {
  const transpose = (rows: number, cols: number): number => (rows === 1 || cols === 1 ? 0 : PLAIN_TRANSPOSE_COST * rows * cols);
  const direct = PACK_COST * k * n;
  const swapped = transpose(k, n) + transpose(m, k) + PACK_COST * m * k + transpose(n, m);
  return swapped < direct;
}

/** Blocking of the SIMD product: k ranges whose packed b (KC x N) and a blocks (MC x KC) stay in cache. */
const KC = 256;
const MC = 64;

/**
 * a [M,K] @ b [K,N] (batch 1, float32, N a multiple of 16, K and M*K*N not tiny) in wasm SIMD
 * (simd.ts); with `transposeA`, a is stored as [K,M] and a^T @ b is computed without
 * materialising a^T (the kernel reads a's rows with a k stride of M floats: the dense layer's
 * dW = x^T @ dy). For each range of KC rows of b, its 16-column panels are copied contiguous (a
 * plain copy, where XNNPACK's per-call packing of a changing b is a transposing one, ~5 ns per
 * element); then, MC rows of the product at a time, 2-row by 16-column blocks are summed over k
 * in order, the first range from zero and each later one on top of the sum so far, so the cut
 * changes no bit. With separate multiply and add this is bitwise XNNPACK's result (on a^T
 * materialised, for `transposeA`); with fused multiply-adds (simdTuning.fused) each step rounds
 * once. The dense forward x [32,5408] @ W [5408,128]: 1.9 ms against 3.4 (swapped XNNPACK) / 4.8
 * (direct), with separate multiply and add. Null when it does not apply.
 */
function simdPlainProduct(a: tf.TensorInfo, b: tf.TensorInfo, backend: BackendWasm, transposeA = false): tf.TensorInfo | null {
  if (a.dtype !== 'float32' || b.dtype !== 'float32') return null;
  const [m, k] = (transposeA ? a.shape.slice(-2).reverse() : a.shape.slice(-2)) as [number, number];
  const [k2, n] = b.shape.slice(-2) as [number, number];
  if (k !== k2 || n % 16 !== 0 || k < 16 || m === 0 || m * k * n < 1 << 18) return null;
  const simd = simdKernelsFor(backend);
  if (!simd) return null;
  const outShape = [...(a.shape.length >= b.shape.length ? a.shape : b.shape).slice(0, -2), m, n];
  const out = backend.makeOutput(outShape, 'float32');
  const packed = backend.makeOutput([Math.min(k, KC), n], 'float32');
  // Byte distance between a's consecutive rows (of the product) and between consecutive k.
  const [aRow, aK] = transposeA ? [4, m * 4] : [k * 4, 4];
  try {
    const a0 = backend.getMemoryOffset(a.dataId);
    const b0 = backend.getMemoryOffset(b.dataId);
    const out0 = backend.getMemoryOffset(out.dataId);
    const p = backend.getMemoryOffset(packed.dataId);
    for (let k0 = 0; k0 < k; k0 += KC) {
      const kc = Math.min(KC, k - k0);
      const [pairs, single] = k0 === 0 ? [simd.gemm2x16, simd.gemm1x16] : [simd.gemm2x16Add, simd.gemm1x16Add];
      for (let j = 0; j < n; j += 16) simd.copyRows16(b0 + (k0 * n + j) * 4, n * 4, p + j * kc * 4, kc);
      for (let m0 = 0; m0 < m; m0 += MC) {
        const rows = Math.min(MC, m - m0);
        const aBlock = a0 + m0 * aRow + k0 * aK;
        for (let j = 0; j < n; j += 16) {
          const panel = p + j * kc * 4;
          const outBlock = out0 + (m0 * n + j) * 4;
          pairs(aBlock, aRow, aK, panel, 64, outBlock, n * 4, kc, rows >> 1);
          if (rows % 2 === 1) single(aBlock + (rows - 1) * aRow, aRow, aK, panel, 64, outBlock + (rows - 1) * n * 4, n * 4, kc, 1);
        }
      }
    }
  } finally {
    backend.disposeData(packed.dataId);
  }
  return out;
}

/** a @ b computed as (b^T @ a^T)^T, i.e. a @ (b^T)^T through swappedProduct. Plain BatchMatMul only. */
function swappedPlainProduct(original: tf.KernelFunc, a: tf.TensorInfo, b: tf.TensorInfo, backend: BackendWasm): tf.TensorInfo {
  const bT = transposeInner(b, backend);
  try {
    return swappedProduct(original, a, bT.info, backend);
  } finally {
    bT.release();
  }
}

/** a @ b^T computed as (b @ a^T)^T; both have batch size 1. Plain BatchMatMul only (no bias). */
function swappedProduct(original: tf.KernelFunc, a: tf.TensorInfo, b: tf.TensorInfo, backend: BackendWasm): tf.TensorInfo {
  const aT = transposeInner(a, backend);
  let productT: tf.TensorInfo;
  try {
    productT = simdPlainProduct(b, aT.info, backend) ?? original({
      inputs: { a: b, b: aT.info },
      backend,
      attrs: { transposeA: false, transposeB: false },
    } as unknown as Parameters<tf.KernelFunc>[0]) as tf.TensorInfo;
  } finally {
    aT.release();
  }
  const rank = productT.shape.length;
  if (productT.shape[rank - 2] === 1 || productT.shape[rank - 1] === 1) {
    // Swapping a unit dimension moves no element: same data, swapped shape.
    return { dataId: productT.dataId, shape: swapLastTwo(productT.shape), dtype: productT.dtype };
  }
  try {
    return transposeInner(productT, backend).info;
  } finally {
    backend.disposeData(productT.dataId);
  }
}

/**
 * Builds a replacement config for a stock wasm matmul kernel. `stock` must be
 * the config registered by @tensorflow/tfjs-backend-wasm (captured before it
 * is unregistered); its setupFunc/disposeFunc are carried over.
 */
export function createNoTransposeMatMulConfig(stock: tf.KernelConfig): tf.KernelConfig {
  if (stock.backendName !== 'wasm') {
    throw new Error(`createNoTransposeMatMulConfig: expected a wasm kernel, got '${stock.backendName}'`);
  }
  return {
    kernelName: stock.kernelName,
    backendName: 'wasm',
    kernelFunc: withoutTransposeFlags(stock.kernelFunc, stock.kernelName === 'BatchMatMul'),
    setupFunc: stock.setupFunc,
    disposeFunc: stock.disposeFunc,
  };
}
