/**
 * Replacement wasm `MaxPoolGrad`, in JS over wasm-heap views.
 *
 * Why: the stock C++ kernel is by far the slowest op of a CNN training step
 * (about a third of it for the reference model), and it is also WRONG with
 * padding: for a 'same' 3x3 stride 1 pool it drops the gradient of some
 * border windows (dx = 0 where tfjs' cpu backend, and a naive reference, route
 * dy to the window's argmax).
 *
 * dx is zero-filled and every dy value is added to the argmax of its window
 * (clipped to the image). Ties go to the FIRST maximum in row-major window
 * order and windows without any value > -Infinity (e.g. all NaN) route
 * nowhere, exactly like the cpu backend. Interior 2x2 windows (the usual 2x2
 * stride 2 pooling) are unrolled. Overlapping windows simply accumulate.
 *
 * The usual 2x2 stride 2 pooling with channels a multiple of 4 runs in wasm SIMD (simd.ts) when
 * the engine has it, with the same results.
 *
 * Non-float32 or non-rank-4 inputs are delegated to the stock kernel function,
 * captured before the stock registration is replaced.
 */
import * as tf from '@tensorflow/tfjs';
import type { BackendWasm } from '@tensorflow/tfjs-backend-wasm';
import { simdKernelsFor, type SimdKernels } from './simd.js';

type Pool2DInfo = tf.backend_util.Conv2DInfo;
type Shape4 = [number, number, number, number];

interface MaxPoolGradArgs {
  inputs: { dy: tf.TensorInfo; input: tf.TensorInfo; output: tf.TensorInfo };
  backend: BackendWasm;
  attrs: tf.MaxPoolGradAttrs;
}

/** Interior 2x2 windows (the common case), unrolled. `p` is the window's top-left flat index. */
function route2x2(xv: Float32Array, dyv: Float32Array, dxv: Float32Array, p: number, o: number, C: number, rowStride: number): void {
  for (let d = 0; d < C; d++, p++) {
    let best = -Infinity;
    let at = -1;
    let v = xv[p];
    if (v > best) { best = v; at = p; }
    v = xv[p + C];
    if (v > best) { best = v; at = p + C; }
    v = xv[p + rowStride];
    if (v > best) { best = v; at = p + rowStride; }
    v = xv[p + rowStride + C];
    if (v > best) { at = p + rowStride + C; }
    if (at >= 0) dxv[at] += dyv[o + d];
  }
}

/** Any window, clipped to rows [r0, r1) and columns [c0, c1) of image b. */
function routeClipped(xv: Float32Array, dyv: Float32Array, dxv: Float32Array, info: Pool2DInfo,
  b: number, r0: number, r1: number, c0: number, c1: number, o: number): void {
  const { inHeight: H, inWidth: W, inChannels: C } = info;
  for (let d = 0; d < C; d++) {
    let best = -Infinity;
    let at = -1;
    for (let r = r0; r < r1; r++) {
      let p = ((b * H + r) * W + c0) * C + d;
      for (let c = c0; c < c1; c++, p += C) {
        const v = xv[p];
        if (v > best) { best = v; at = p; }
      }
    }
    if (at >= 0) dxv[at] += dyv[o + d];
  }
}

/**
 * True when the windows are 2x2, stride 2, unpadded and inside the image (the usual pooling):
 * they tile the image without overlap, so each covered dx cell belongs to exactly one window.
 */
export function isTiled2x2(info: Pool2DInfo): boolean {
  return info.filterHeight === 2 && info.filterWidth === 2 && info.strideHeight === 2 && info.strideWidth === 2 &&
    info.padInfo.top === 0 && info.padInfo.left === 0 && 2 * info.outHeight <= info.inHeight && 2 * info.outWidth <= info.inWidth;
}

/**
 * The tiled 2x2 case (isTiled2x2) with channels a multiple of 4, in wasm SIMD (simd.ts): every
 * window writes all four of its dx cells (dy at the argmax, 0 elsewhere: the same first-maximum
 * rule as route2x2); the rows and columns no window covers are zero-filled here.
 */
function maxPoolGrad2x2Simd(simd: SimdKernels, backend: BackendWasm, input: tf.TensorInfo, dy: tf.TensorInfo, dx: tf.TensorInfo, info: Pool2DInfo): void {
  const { batchSize: B, inHeight: H, inWidth: W, inChannels: C, outHeight: OH, outWidth: OW } = info;
  const x0 = backend.getMemoryOffset(input.dataId);
  const dx0 = backend.getMemoryOffset(dx.dataId);
  const dy0 = backend.getMemoryOffset(dy.dataId);
  const rowBytes = W * C * 4;
  for (let b = 0; b < B; b++) {
    for (let yr = 0; yr < OH; yr++) {
      const r = (b * H + 2 * yr) * rowBytes;
      simd.maxPoolGrad2x2Row(x0 + r, x0 + r + rowBytes, dx0 + r, dx0 + r + rowBytes, dy0 + (b * OH + yr) * OW * C * 4, OW, C);
    }
  }
  if (2 * OW === W && 2 * OH === H) return;
  const dxv = backend.typedArrayFromHeap(dx) as Float32Array;
  const rowStride = W * C;
  for (let b = 0; b < B; b++) {
    if (2 * OW < W) {
      for (let r = 0; r < 2 * OH; r++) {
        const start = (b * H + r) * rowStride;
        dxv.fill(0, start + 2 * OW * C, start + rowStride);
      }
    }
    if (2 * OH < H) dxv.fill(0, (b * H + 2 * OH) * rowStride, (b + 1) * H * rowStride);
  }
}

/** Adds every dy value to its window's argmax in dxv (which must start zero-filled). Dilation must be 1. */
export function maxPoolGradInto(xv: Float32Array, dyv: Float32Array, dxv: Float32Array, info: Pool2DInfo): void {
  const { batchSize: B, inHeight: H, inWidth: W, inChannels: C, outHeight: OH, outWidth: OW } = info;
  const { filterHeight: FH, filterWidth: FW, strideHeight: SH, strideWidth: SW } = info;
  const top = info.padInfo.top;
  const left = info.padInfo.left;
  const rowStride = W * C;
  const unrolled = FH === 2 && FW === 2;
  let o = 0;
  for (let b = 0; b < B; b++) {
    for (let yr = 0; yr < OH; yr++) {
      const rCorner = yr * SH - top;
      const r0 = Math.max(0, rCorner);
      const r1 = Math.min(H, rCorner + FH);
      for (let yc = 0; yc < OW; yc++, o += C) {
        const cCorner = yc * SW - left;
        const c0 = Math.max(0, cCorner);
        const c1 = Math.min(W, cCorner + FW);
        if (r0 >= r1 || c0 >= c1) continue;
        if (unrolled && r1 - r0 === 2 && c1 - c0 === 2) {
          route2x2(xv, dyv, dxv, ((b * H + r0) * W + c0) * C, o, C, rowStride);
        } else {
          routeClipped(xv, dyv, dxv, info, b, r0, r1, c0, c1, o);
        }
      }
    }
  }
}

/** Wraps the stock kernel function (kept for non-float32 inputs). */
export function withJsMaxPoolGrad(stock: tf.KernelFunc): tf.KernelFunc {
  const kernelFunc = (args: MaxPoolGradArgs): tf.TensorInfo => {
    const { inputs, backend, attrs } = args;
    const { dy, input } = inputs;
    if (input.dtype !== 'float32' || dy.dtype !== 'float32' || input.shape.length !== 4) {
      return stock(args as unknown as Parameters<tf.KernelFunc>[0]) as tf.TensorInfo;
    }
    const { filterSize, strides, pad, dimRoundingMode } = attrs;
    const info = tf.backend_util.computePool2DInfo(input.shape as Shape4, filterSize, strides, 1, pad, dimRoundingMode);
    const expected = info.outShape;
    if (dy.shape.length !== 4 || dy.shape.some((d, i) => d !== expected[i])) {
      throw new Error(`MaxPoolGrad(wasm): dy shape [${dy.shape}] does not match expected [${expected}]`);
    }
    const dx = backend.makeOutput([...input.shape], 'float32');
    const simd = isTiled2x2(info) && info.inChannels % 4 === 0 ? simdKernelsFor(backend) : undefined;
    if (simd) {
      maxPoolGrad2x2Simd(simd, backend, input, dy, dx, info);
      return dx;
    }
    // Views are taken after the allocation: heap growth detaches older views.
    const dxv = backend.typedArrayFromHeap(dx) as Float32Array;
    dxv.fill(0);
    maxPoolGradInto(backend.typedArrayFromHeap(input) as Float32Array, backend.typedArrayFromHeap(dy) as Float32Array, dxv, info);
    return dx;
  };
  return kernelFunc as unknown as tf.KernelFunc;
}

/** Builds the replacement from the stock wasm config (its setupFunc is kept for the fallback). */
export function createMaxPoolGradConfig(stock: tf.KernelConfig): tf.KernelConfig {
  if (stock.backendName !== 'wasm' || stock.kernelName !== 'MaxPoolGrad') {
    throw new Error(`createMaxPoolGradConfig: expected the wasm MaxPoolGrad, got ${stock.kernelName}/${stock.backendName}`);
  }
  return {
    kernelName: stock.kernelName,
    backendName: 'wasm',
    kernelFunc: withJsMaxPoolGrad(stock.kernelFunc),
    setupFunc: stock.setupFunc,
    disposeFunc: stock.disposeFunc,
  };
}
