/**
 * `Conv2DBackpropFilter` for the tfjs wasm backend (which ships without one).
 *
 * dW[fh, fw, inC, outC] = sum over (b, r, c) of x-patch * dy: a matmul with
 * K = fh*fw*inC, M = batch*outH*outW, run by the stock wasm `BatchMatMul`
 * (XNNPACK, no transpose flags: its fast path) on operands we write straight
 * into wasm-heap tensors. XNNPACK packs its RIGHT operand on every call (about
 * as costly as several copies of it), so the smaller M-long operand goes there:
 *  - dy right: patchesT [K, M] @ dy [M, outC] (dy used in place), or
 *  - dy left:  dyT [outC, M] @ patches [M, K], when K is well below outC (the
 *    reference CNN's first layer: K = 9, outC = 32), paying a JS transpose of
 *    dy to pack a K-wide instead of an outC-wide operand.
 * When the operands would be huge the batch is processed in chunks whose
 * partial products are summed.
 * A 3x3 single-channel unpadded conv (the reference CNN's first layer) with
 * outC a multiple of 4 skips all that: wasm SIMD accumulates the products
 * straight from x and dy (directSimd).
 */
import * as tf from '@tensorflow/tfjs';
import type { BackendWasm } from '@tensorflow/tfjs-backend-wasm';
import { createWasmAlias, releaseWasmAlias } from './batch-mat-mul.js';
import { forEachWindowRow, hasUnrolledIm2colRows, im2colRows, im2colTransposed } from './im2col.js';
import { simdKernelsFor } from './simd.js';
import { transposeOnHeap } from './transpose.js';

type Conv2DInfo = tf.backend_util.Conv2DInfo;

/**
 * Tunables. `maxPatchElements` bounds the matmul operands of one chunk
 * (default 64 MiB of float32); tests lower it to exercise the chunked path.
 * `formulation` forces one product layout ('auto': directSimd where it applies,
 * else by prefersDyLeft; 'direct': the same as 'auto').
 */
export const conv2dBackpropFilterTuning: { maxPatchElements: number; formulation: 'auto' | 'dy-left' | 'dy-right' | 'direct' } = {
  maxPatchElements: 16 * 1024 * 1024,
  formulation: 'auto',
};

/** Measured per-element costs (relative): XNNPACK packing vs our JS transpose. */
const PACK_COST = 4.5;
const JS_TRANSPOSE_COST = 1.3;

/** True when transposing dy to the left operand beats packing it on the right. */
export function prefersDyLeft(k: number, outChannels: number): boolean {
  return JS_TRANSPOSE_COST * outChannels + PACK_COST * k < PACK_COST * outChannels;
}

interface BackpropFilterArgs {
  inputs: { x: tf.TensorInfo; dy: tf.TensorInfo };
  backend: BackendWasm;
  attrs: tf.Conv2DBackpropFilterAttrs;
}

/** What one chunk's product needs. */
interface Job {
  backend: BackendWasm;
  x: tf.TensorInfo;
  dy: tf.TensorInfo;
  info: Conv2DInfo;
  k: number;
  matMul: tf.KernelFunc;
}

const noTranspose = { transposeA: false, transposeB: false };

/** patchesT [K, m] @ dy [m, outC] for images [b0, b1): a [K, outC] tensor. */
function productDyRight(job: Job, b0: number, b1: number): tf.TensorInfo {
  const { backend, x, dy, info, k } = job;
  const oc = info.outChannels;
  const m = (b1 - b0) * info.outHeight * info.outWidth;
  const whole = b0 === 0 && b1 === info.batchSize;
  const patchesT = backend.makeOutput([k, m], 'float32');
  // dy rows of images [b0, b1) are contiguous. The whole dy is used in place
  // through a fresh-id alias (see createWasmAlias for why not dy's own id).
  const dyChunk = whole ? createWasmAlias(backend, dy, [m, oc]) : backend.makeOutput([m, oc], 'float32');
  try {
    // Views are taken after every allocation: heap growth detaches old views.
    im2colTransposed(backend.typedArrayFromHeap(x) as Float32Array, backend.typedArrayFromHeap(patchesT) as Float32Array, info, b0, b1);
    if (!whole) {
      const start = b0 * info.outHeight * info.outWidth * oc;
      const dyv = backend.typedArrayFromHeap(dy) as Float32Array;
      (backend.typedArrayFromHeap(dyChunk) as Float32Array).set(dyv.subarray(start, start + m * oc));
    }
    return job.matMul({ inputs: { a: patchesT, b: dyChunk }, backend, attrs: noTranspose }) as tf.TensorInfo;
  } finally {
    backend.disposeData(patchesT.dataId);
    if (whole) releaseWasmAlias(backend, dyChunk);
    else backend.disposeData(dyChunk.dataId);
  }
}

/** dyT [outC, m] @ patches [m, K] for images [b0, b1): an [outC, K] tensor. */
function productDyLeft(job: Job, b0: number, b1: number): tf.TensorInfo {
  const { backend, x, dy, info, k } = job;
  const oc = info.outChannels;
  const m = (b1 - b0) * info.outHeight * info.outWidth;
  const dyT = backend.makeOutput([oc, m], 'float32');
  const patches = backend.makeOutput([m, k], 'float32');
  try {
    const dyv = backend.typedArrayFromHeap(dy) as Float32Array;
    transposeOnHeap(backend, dyv, b0 * info.outHeight * info.outWidth * oc, m, oc, backend.typedArrayFromHeap(dyT) as Float32Array);
    im2colRows(backend.typedArrayFromHeap(x) as Float32Array, backend.typedArrayFromHeap(patches) as Float32Array, info, b0, b1);
    return job.matMul({ inputs: { a: dyT, b: patches }, backend, attrs: noTranspose }) as tf.TensorInfo;
  } finally {
    backend.disposeData(dyT.dataId);
    backend.disposeData(patches.dataId);
  }
}

function stockBatchMatMul(): tf.KernelFunc {
  const kernel = tf.getKernel('BatchMatMul', 'wasm');
  if (kernel == null) {
    throw new Error("Conv2DBackpropFilter(wasm): kernel 'BatchMatMul' is not registered for 'wasm'");
  }
  return kernel.kernelFunc;
}

/**
 * The 3x3 single-channel unpadded case (hasUnrolledIm2colRows) with outC a multiple of 4, in wasm
 * SIMD straight from x and dy (simd.ts): no patches, no transposed dy, no packing. Each filter
 * entry is summed over (image, row, column) in that order in float32, as the matmul does.
 * Returns null when it does not apply.
 */
function directSimd(backend: BackendWasm, x: tf.TensorInfo, dy: tf.TensorInfo, info: Conv2DInfo, filterShape: readonly number[]): tf.TensorInfo | null {
  if (!hasUnrolledIm2colRows(info) || info.outChannels % 4 !== 0) return null;
  const simd = simdKernelsFor(backend);
  if (!simd) return null;
  const { outWidth: OW, outChannels: C, strideWidth: sw } = info;
  const out = backend.makeOutput([...filterShape], 'float32');
  (backend.typedArrayFromHeap(out) as Float32Array).fill(0);
  const dy0 = backend.getMemoryOffset(dy.dataId);
  const acc = backend.getMemoryOffset(out.dataId);
  forEachWindowRow(info, backend.getMemoryOffset(x.dataId), (top, middle, bottom, i) =>
    simd.convFilterGrad3x3Row(top, middle, bottom, dy0 + i * OW * C * 4, acc, OW, C / 4, sw * 4, C * 4),
  );
  return out;
}

function conv2dBackpropFilter(args: BackpropFilterArgs): tf.TensorInfo {
  const { inputs, backend, attrs } = args;
  const { x, dy } = inputs;
  const { strides, pad, dataFormat, dimRoundingMode, filterShape } = attrs;
  if (dataFormat === 'NCHW') {
    throw new Error('Conv2DBackpropFilter(wasm): dataFormat NCHW is not supported, use NHWC');
  }
  if (x.dtype !== 'float32' || dy.dtype !== 'float32') {
    throw new Error(`Conv2DBackpropFilter(wasm): expected float32 inputs, got ${x.dtype} and ${dy.dtype}`);
  }
  if (x.shape.length !== 4 || dy.shape.length !== 4) {
    throw new Error(`Conv2DBackpropFilter(wasm): x and dy must be rank 4, got [${x.shape}] and [${dy.shape}]`);
  }
  const info = tf.backend_util.computeConv2DInfo(
    x.shape as [number, number, number, number], filterShape, strides, 1, pad, dimRoundingMode, false, 'channelsLast');
  const { batchSize, outHeight, outWidth, outChannels } = info;
  const expected = [batchSize, outHeight, outWidth, outChannels];
  if (dy.shape.some((d, i) => d !== expected[i])) {
    throw new Error(`Conv2DBackpropFilter(wasm): dy shape [${dy.shape}] does not match expected [${expected}]`);
  }
  const { formulation } = conv2dBackpropFilterTuning;
  if (formulation === 'auto' || formulation === 'direct') {
    const direct = directSimd(backend, x, dy, info, filterShape);
    if (direct) return direct;
  }
  const k = info.filterHeight * info.filterWidth * info.inChannels;
  const perImage = outHeight * outWidth * (k + outChannels);
  const fitting = Math.floor(conv2dBackpropFilterTuning.maxPatchElements / Math.max(1, perImage));
  const imagesPerChunk = Math.max(1, Math.min(batchSize, fitting));
  const dyLeft = formulation === 'auto' || formulation === 'direct' ? prefersDyLeft(k, outChannels) : formulation === 'dy-left';
  const job: Job = { backend, x, dy, info, k, matMul: stockBatchMatMul() };

  // Sum of the chunks' products, in filter layout [K, outC].
  const acc = new Float32Array(k * outChannels);
  for (let b0 = 0; b0 < batchSize; b0 += imagesPerChunk) {
    const b1 = Math.min(batchSize, b0 + imagesPerChunk);
    const part = dyLeft ? productDyLeft(job, b0, b1) : productDyRight(job, b0, b1);
    const pv = backend.typedArrayFromHeap(part) as Float32Array;
    if (dyLeft) {
      for (let o = 0, i = 0; o < outChannels; o++) {
        for (let j = 0; j < k; j++, i++) acc[j * outChannels + o] += pv[i];
      }
    } else {
      for (let i = 0; i < acc.length; i++) acc[i] += pv[i];
    }
    backend.disposeData(part.dataId);
  }
  // [K, outC] has exactly the memory layout of [fh, fw, inC, outC].
  const out = backend.makeOutput([...filterShape], 'float32');
  (backend.typedArrayFromHeap(out) as Float32Array).set(acc);
  return out;
}

export const conv2dBackpropFilterConfig: tf.KernelConfig = {
  kernelName: 'Conv2DBackpropFilter',
  backendName: 'wasm',
  kernelFunc: conv2dBackpropFilter as unknown as tf.KernelFunc,
};
