/**
 * A JS matrix transpose over wasm-heap views. For wide matrices (rows < cols,
 * e.g. a dense layer's [batch, 5408] input) it is 2-3x faster than the stock
 * wasm `Transpose` kernel, which is fast only for tall ones; used for the
 * transposed operands of the matmuls and of Conv2DBackpropFilter.
 */
import type * as tf from '@tensorflow/tfjs';
import type { BackendWasm } from '@tensorflow/tfjs-backend-wasm';
import { simdKernelsFor } from './simd.js';

/**
 * dst[j * rows + i] = src[start + i * cols + j]: the [rows, cols] block at
 * `start` transposed into dst [cols, rows]. Eight source rows per pass keep
 * the reads in cache and the writes in runs of eight.
 */
export function transposeInto(src: Float32Array, start: number, rows: number, cols: number, dst: Float32Array): void {
  const c2 = 2 * cols, c3 = 3 * cols, c4 = 4 * cols, c5 = 5 * cols, c6 = 6 * cols, c7 = 7 * cols;
  let i = 0;
  for (; i + 8 <= rows; i += 8) {
    const rowStart = start + i * cols;
    for (let j = 0; j < cols; j++) {
      const o = j * rows + i;
      const s = rowStart + j;
      dst[o] = src[s];
      dst[o + 1] = src[s + cols];
      dst[o + 2] = src[s + c2];
      dst[o + 3] = src[s + c3];
      dst[o + 4] = src[s + c4];
      dst[o + 5] = src[s + c5];
      dst[o + 6] = src[s + c6];
      dst[o + 7] = src[s + c7];
    }
  }
  for (; i < rows; i++) {
    const rowStart = start + i * cols;
    for (let j = 0; j < cols; j++) dst[j * rows + i] = src[rowStart + j];
  }
}

/**
 * transposeInto for views on the wasm backend's heap: whole 4x4 blocks in wasm SIMD (simd.ts)
 * when rows and cols are multiples of 4, else the JS loop. Same values either way (a copy).
 */
export function transposeOnHeap(backend: BackendWasm, src: Float32Array, start: number, rows: number, cols: number, dst: Float32Array): void {
  const simd = rows % 4 === 0 && cols % 4 === 0 && rows > 0 && cols > 0 && src.buffer === dst.buffer ? simdKernelsFor(backend) : undefined;
  if (simd) {
    simd.transpose4x4(src.byteOffset + start * 4, dst.byteOffset, rows / 4, cols / 4, cols * 4, rows * 4);
    return;
  }
  transposeInto(src, start, rows, cols, dst);
}

/**
 * x [..., rows, cols] (batch size 1) with its two innermost dimensions
 * transposed into a new tensor: SIMD 4x4 blocks when both dimensions are
 * multiples of 4, the JS loop for other wide float32 matrices, else the stock
 * wasm Transpose kernel.
 */
export function transposeInnerMatrix(x: tf.TensorInfo, backend: BackendWasm, stockTranspose: tf.KernelFunc): tf.TensorInfo {
  const rank = x.shape.length;
  const rows = x.shape[rank - 2];
  const cols = x.shape[rank - 1];
  const simdShape = rows % 4 === 0 && cols % 4 === 0;
  if (x.dtype === 'float32' && (rows < cols || simdShape) && rows * cols === x.shape.reduce((p, d) => p * d, 1)) {
    const shape = x.shape.slice();
    [shape[rank - 2], shape[rank - 1]] = [cols, rows];
    const out = backend.makeOutput(shape, 'float32');
    // Views are taken after the allocation: heap growth detaches older views.
    transposeOnHeap(backend, backend.typedArrayFromHeap(x) as Float32Array, 0, rows, cols, backend.typedArrayFromHeap(out) as Float32Array);
    return out;
  }
  const perm = x.shape.map((_, i) => i);
  [perm[rank - 2], perm[rank - 1]] = [perm[rank - 1], perm[rank - 2]];
  return stockTranspose({ inputs: { x }, backend, attrs: { perm } } as unknown as Parameters<tf.KernelFunc>[0]) as tf.TensorInfo;
}
