/**
 * Replacement wasm `Sum` with a JS fast path for the bias-gradient reduction.
 *
 * The stock kernel only reduces innermost axes: for any other axis set it
 * first materialises a transpose (e.g. [B,26,26,32] -> [32,B,26,26] for the
 * conv bias gradient) and then sums rows. Reducing a LEADING block of axes
 * (axes {0..k-1}, in any order, 1 <= k < rank) needs no transpose at all: the
 * input is a contiguous [N, M] matrix and the result is its column sums, one
 * streaming pass over the heap. We accumulate in float64, in row order, which
 * is exactly what the tfjs cpu backend computes (it also sums in a double).
 *
 * Column counts that are a multiple of 8 are summed in wasm SIMD (simd.ts), bitwise the same.
 *
 * Any other case (non-float32, other axis sets, duplicates) is delegated to
 * the stock kernel function captured before the stock registration is replaced.
 */
import * as tf from '@tensorflow/tfjs';
import type { BackendWasm } from '@tensorflow/tfjs-backend-wasm';
import { simdKernelsFor } from './simd.js';
import { withFloat64Accumulators } from './wasm-heap-io.js';

interface SumArgs {
  inputs: { x: tf.TensorInfo };
  backend: BackendWasm;
  attrs: tf.SumAttrs;
}

/** Reused float64 accumulator (grown on demand; one kernel runs at a time). */
let scratch = new Float64Array(0);

/**
 * Number of leading axes reduced when the (normalised) axes are exactly
 * {0, ..., k-1} with 1 <= k < rank, else 0 (no fast path).
 */
export function leadingReducedAxes(axis: number | number[] | undefined | null, shape: readonly number[]): number {
  const rank = shape.length;
  if (axis == null || rank < 2) return 0;
  const list = Array.isArray(axis) ? axis : [axis];
  const k = list.length;
  if (k === 0 || k >= rank) return 0;
  const seen = new Array<boolean>(k).fill(false);
  for (const raw of list) {
    if (!Number.isInteger(raw)) return 0;
    const a = raw < 0 ? raw + rank : raw;
    if (a < 0 || a >= k || seen[a]) return 0;
    seen[a] = true;
  }
  return k;
}

/** Rows per block: keeps one block (about 64 KiB) cache-resident across column passes. */
function blockRows(m: number): number {
  return Math.max(1, Math.floor(16384 / m));
}

/**
 * out[j] = sum over i of x[i * m + j], for an [n, m] row-major x. Each column
 * is summed in row order in a float64, like the cpu backend, but eight columns
 * at a time in locals (V8 keeps them in registers), one row block at a time.
 */
export function sumColumns(xv: Float32Array, n: number, m: number, out: Float32Array): void {
  if (scratch.length < m) scratch = new Float64Array(m);
  const acc = scratch;
  acc.fill(0, 0, m);
  const rows = blockRows(m);
  for (let i0 = 0; i0 < n; i0 += rows) {
    const start = i0 * m;
    const end = Math.min(n, i0 + rows) * m;
    let j = 0;
    for (; j + 8 <= m; j += 8) {
      let s0 = acc[j], s1 = acc[j + 1], s2 = acc[j + 2], s3 = acc[j + 3];
      let s4 = acc[j + 4], s5 = acc[j + 5], s6 = acc[j + 6], s7 = acc[j + 7];
      for (let p = start + j; p < end; p += m) {
        s0 += xv[p]; s1 += xv[p + 1]; s2 += xv[p + 2]; s3 += xv[p + 3];
        s4 += xv[p + 4]; s5 += xv[p + 5]; s6 += xv[p + 6]; s7 += xv[p + 7];
      }
      acc[j] = s0; acc[j + 1] = s1; acc[j + 2] = s2; acc[j + 3] = s3;
      acc[j + 4] = s4; acc[j + 5] = s5; acc[j + 6] = s6; acc[j + 7] = s7;
    }
    for (; j < m; j++) {
      let s = acc[j];
      for (let p = start + j; p < end; p += m) s += xv[p];
      acc[j] = s;
    }
  }
  for (let j = 0; j < m; j++) out[j] = acc[j];
}

/**
 * sumColumns in wasm SIMD (simd.ts), for m a multiple of 8: the same float64 sums in the same
 * row order, so bitwise the same result. Returns false (nothing written) when SIMD is unavailable.
 */
function sumColumnsSimd(backend: BackendWasm, x: tf.TensorInfo, n: number, m: number, out: tf.TensorInfo): boolean {
  const simd = simdKernelsFor(backend);
  if (!simd) return false;
  const x0 = backend.getMemoryOffset(x.dataId);
  const rows = blockRows(m);
  const sums = withFloat64Accumulators(backend, m, (acc) => {
    for (let i0 = 0; i0 < n; i0 += rows) {
      const count = Math.min(rows, n - i0);
      for (let j = 0; j < m; j += 8) simd.sumColumns8(x0 + (i0 * m + j) * 4, count, m * 4, acc + j * 8);
    }
  });
  (backend.typedArrayFromHeap(out) as Float32Array).set(sums);
  return true;
}

/** Wraps the stock Sum kernel function with the leading-axes fast path. */
export function withLeadingAxesFastPath(stock: tf.KernelFunc): tf.KernelFunc {
  const kernelFunc = (args: SumArgs): tf.TensorInfo => {
    const { inputs, backend, attrs } = args;
    const { x } = inputs;
    const k = x.dtype === 'float32' ? leadingReducedAxes(attrs.axis, x.shape) : 0;
    if (k === 0) return stock(args as unknown as Parameters<tf.KernelFunc>[0]) as tf.TensorInfo;
    const kept = x.shape.slice(k);
    const n = x.shape.slice(0, k).reduce((p, d) => p * d, 1);
    const m = kept.reduce((p, d) => p * d, 1);
    const outShape = attrs.keepDims ? x.shape.map((d, i) => (i < k ? 1 : d)) : kept;
    const out = backend.makeOutput(outShape, 'float32');
    if (m > 0 && m % 8 === 0 && n > 0 && sumColumnsSimd(backend, x, n, m, out)) return out;
    if (m > 0) {
      // Views are taken after the allocation: heap growth detaches older views.
      const outV = backend.typedArrayFromHeap(out) as Float32Array;
      sumColumns(backend.typedArrayFromHeap(x) as Float32Array, n, m, outV);
    }
    return out;
  };
  return kernelFunc as unknown as tf.KernelFunc;
}

/** Builds the replacement from the stock wasm config (its setupFunc is kept for the fallback). */
export function createSumConfig(stock: tf.KernelConfig): tf.KernelConfig {
  if (stock.backendName !== 'wasm' || stock.kernelName !== 'Sum') {
    throw new Error(`createSumConfig: expected the wasm Sum, got ${stock.kernelName}/${stock.backendName}`);
  }
  return {
    kernelName: stock.kernelName,
    backendName: 'wasm',
    kernelFunc: withLeadingAxesFastPath(stock.kernelFunc),
    setupFunc: stock.setupFunc,
    disposeFunc: stock.disposeFunc,
  };
}
