/**
 * `Conv2DBackpropFilter` for the tfjs wasm backend (which ships without one).
 *
 * dW[fh, fw, inC, outC] = sum over (b, r, c) of x-patch * dy. We build the
 * im2col matrix directly in its transposed layout, patchesT [K, M] with
 * K = fh*fw*inC and M = batch*outH*outW, straight into a wasm-heap tensor, and
 * let the stock wasm `BatchMatMul` (XNNPACK, no transpose flags: its fast
 * path) compute patchesT @ dy2d, where dy2d is dy viewed as [M, outC].
 * When patchesT would be huge the batch is processed in chunks whose partial
 * products are summed.
 */
import * as tf from '@tensorflow/tfjs';
import type { BackendWasm } from '@tensorflow/tfjs-backend-wasm';
import { createWasmAlias, releaseWasmAlias } from './batch-mat-mul.js';

type Conv2DInfo = tf.backend_util.Conv2DInfo;

/**
 * Tunables. `maxPatchElements` bounds one im2col chunk (default 64 MiB of
 * float32); tests lower it to exercise the chunked path.
 */
export const conv2dBackpropFilterTuning = { maxPatchElements: 16 * 1024 * 1024 };

interface BackpropFilterArgs {
  inputs: { x: tf.TensorInfo; dy: tf.TensorInfo };
  backend: BackendWasm;
  attrs: tf.Conv2DBackpropFilterAttrs;
}

/**
 * Writes the transposed im2col rows for images [b0, b1) into `out`
 * (row-major [K, (b1-b0)*outH*outW]). Out-of-image taps are written as 0.
 */
function im2colTransposed(xv: Float32Array, out: Float32Array, info: Conv2DInfo, b0: number, b1: number): void {
  const { inHeight: H, inWidth: W, inChannels: C, outHeight: OH, outWidth: OW } = info;
  const { strideHeight: sh, strideWidth: sw, filterHeight: FH, filterWidth: FW } = info;
  const top = info.padInfo.top;
  const left = info.padInfo.left;
  const m = (b1 - b0) * OH * OW;
  let row = 0;
  for (let fr = 0; fr < FH; fr++) {
    for (let fc = 0; fc < FW; fc++) {
      // Output columns whose tap (c*sw - left + fc) falls inside [0, W).
      const cLo = Math.min(OW, Math.max(0, Math.ceil((left - fc) / sw)));
      const cHi = Math.max(cLo, Math.min(OW, Math.ceil((W + left - fc) / sw)));
      for (let ci = 0; ci < C; ci++, row++) {
        let o = row * m;
        for (let b = b0; b < b1; b++) {
          for (let r = 0; r < OH; r++) {
            const ih = r * sh - top + fr;
            if (ih < 0 || ih >= H) {
              out.fill(0, o, o + OW);
              o += OW;
              continue;
            }
            const rowBase = (b * H + ih) * W;
            let c = 0;
            for (; c < cLo; c++) out[o++] = 0;
            let src = (rowBase + c * sw - left + fc) * C + ci;
            const step = sw * C;
            for (; c < cHi; c++, src += step) out[o++] = xv[src];
            for (; c < OW; c++) out[o++] = 0;
          }
        }
      }
    }
  }
}

function stockBatchMatMul(): tf.KernelFunc {
  const kernel = tf.getKernel('BatchMatMul', 'wasm');
  if (kernel == null) {
    throw new Error("Conv2DBackpropFilter(wasm): kernel 'BatchMatMul' is not registered for 'wasm'");
  }
  return kernel.kernelFunc;
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
  const k = info.filterHeight * info.filterWidth * info.inChannels;
  const perImage = outHeight * outWidth;
  const fitting = Math.floor(conv2dBackpropFilterTuning.maxPatchElements / Math.max(1, k * perImage));
  const imagesPerChunk = Math.max(1, Math.min(batchSize, fitting));
  const matMul = stockBatchMatMul();
  const noTranspose = { transposeA: false, transposeB: false };

  let acc: tf.TensorInfo | null = null;
  try {
    for (let b0 = 0; b0 < batchSize; b0 += imagesPerChunk) {
      const b1 = Math.min(batchSize, b0 + imagesPerChunk);
      const m = (b1 - b0) * perImage;
      const whole = b0 === 0 && b1 === batchSize;
      const patchesT = backend.makeOutput([k, m], 'float32');
      // dy rows of images [b0, b1) are contiguous. The whole dy is used in place
      // through a fresh-id alias (see createWasmAlias for why not dy's own id).
      const dyChunk = whole ? createWasmAlias(backend, dy, [m, outChannels])
        : backend.makeOutput([m, outChannels], 'float32');
      let part: tf.TensorInfo;
      try {
        // Views are taken after every allocation: heap growth detaches old views.
        const xv = backend.typedArrayFromHeap(x) as Float32Array;
        im2colTransposed(xv, backend.typedArrayFromHeap(patchesT) as Float32Array, info, b0, b1);
        if (!whole) {
          const dyv = backend.typedArrayFromHeap(dy) as Float32Array;
          const start = b0 * perImage * outChannels;
          (backend.typedArrayFromHeap(dyChunk) as Float32Array).set(dyv.subarray(start, start + m * outChannels));
        }
        part = matMul({ inputs: { a: patchesT, b: dyChunk }, backend, attrs: noTranspose }) as tf.TensorInfo;
      } finally {
        backend.disposeData(patchesT.dataId);
        if (whole) releaseWasmAlias(backend, dyChunk);
        else backend.disposeData(dyChunk.dataId);
      }
      if (acc == null) {
        acc = part;
      } else {
        const accV = backend.typedArrayFromHeap(acc) as Float32Array;
        const partV = backend.typedArrayFromHeap(part) as Float32Array;
        for (let i = 0; i < accV.length; i++) accV[i] += partV[i];
        backend.disposeData(part.dataId);
      }
    }
  } catch (err) {
    if (acc != null) backend.disposeData(acc.dataId);
    throw err;
  }
  if (acc == null) {
    // Empty batch: the gradient is all zeros.
    const zeros = backend.makeOutput([...filterShape], 'float32');
    (backend.typedArrayFromHeap(zeros) as Float32Array).fill(0);
    return zeros;
  }
  // [K, outC] has exactly the memory layout of [fh, fw, inC, outC].
  return { dataId: acc.dataId, shape: [...filterShape], dtype: acc.dtype };
}

export const conv2dBackpropFilterConfig: tf.KernelConfig = {
  kernelName: 'Conv2DBackpropFilter',
  backendName: 'wasm',
  kernelFunc: conv2dBackpropFilter as unknown as tf.KernelFunc,
};
