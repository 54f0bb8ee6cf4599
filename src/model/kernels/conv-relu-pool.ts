/**
 * A fused convolution block on the wasm backend: maxPool2x2(relu(conv3x3(x) + bias)) in one
 * kernel, for a first layer on single-channel images (x [B, H, W, 1], filter [3, 3, 1, C] with C
 * a multiple of 4, unpadded, stride 1, H - 2 and W - 2 even, then 2x2 stride-2 pooling).
 *
 * Why: run as layers, the block writes and reads its [B, H-2, W-2, C] activation (11 MB for the
 * reference CNN at batch 128) five times forward (conv, bias add, ReLU, pooling) and five more
 * backward (pooling gradient, ReLU gradient, bias sum), each a pass at memory speed. Fused, the
 * forward computes two conv rows at a time into a cache-resident scratch and writes only the
 * pooled output and each window's winner (an int32 code, see simd-conv-block.ts). The gradient
 * writes the pre-activation gradient once, for Conv2DBackpropFilter, and sums the bias gradient
 * from the pooled-size tensors.
 *
 * Same results as the layers: the same conv kernel (conv3x3Row, taps summed in order), the same
 * bias add and ReLU, the first-maximum rule of MaxPoolGrad, the ReLU gradient as dy times 1 or 0,
 * and the bias gradient summed in float64 in the order Sum meets the values. Tests compare them
 * bitwise. Only NaN activations are treated differently: a window whose four cells are NaN
 * passes NaN forward and routes no gradient.
 *
 * tfjs-core records `TensorfleetConvReluPool` on the gradient tape like any kernel; its gradient
 * (registered here) runs the two gradient kernels, and Conv2DBackpropFilter/Input. forward.ts
 * decides where the block is used: only while the wasm backend with SIMD is active.
 */
import * as tf from '@tensorflow/tfjs';
import type { BackendWasm } from '@tensorflow/tfjs-backend-wasm';
import { simdKernelsFor, type SimdKernels } from './simd.js';
import { withFloat64Accumulators } from './wasm-heap-io.js';

export const CONV_RELU_POOL = 'TensorfleetConvReluPool';
/** The pre-activation gradient [B, H-2, W-2, C] from dy, the pooled output and the codes. */
export const CONV_RELU_POOL_GRAD = 'TensorfleetConvReluPoolGrad';
/** The bias gradient [C] from the same inputs. */
export const CONV_RELU_POOL_BIAS_GRAD = 'TensorfleetConvReluPoolBiasGrad';

/** True when the block computes x [B,H,W,1] with filter [3,3,1,C] and bias [C] (see the header). */
export function convReluPoolShapes(x: readonly number[], filter: readonly number[], bias: readonly number[]): boolean {
  if (x.length !== 4 || filter.length !== 4 || bias.length !== 1) return false;
  const [, h, w, inC] = x as [number, number, number, number];
  const [fh, fw, fin, c] = filter as [number, number, number, number];
  return inC === 1 && fh === 3 && fw === 3 && fin === 1 && c > 0 && c % 4 === 0 && bias[0] === c &&
    h > 2 && w > 2 && (h - 2) % 2 === 0 && (w - 2) % 2 === 0;
}

/** True while the active backend runs the block (wasm, SIMD available, kernels registered). */
export function convReluPoolAvailable(): boolean {
  return tf.getBackend() === 'wasm' && tf.getKernel(CONV_RELU_POOL, 'wasm') != null && simdKernelsFor(tf.backend() as BackendWasm) !== undefined;
}

interface Geometry {
  batch: number;
  height: number;
  width: number;
  channels: number;
  /** The pooled output's rows and columns. */
  rows: number;
  cols: number;
}

function geometry(x: tf.TensorInfo, channels: number): Geometry {
  const [batch, height, width] = x.shape as [number, number, number, number];
  return { batch, height, width, channels, rows: (height - 2) / 2, cols: (width - 2) / 2 };
}

function kernelsOf(backend: BackendWasm, kernel: string): SimdKernels {
  const simd = simdKernelsFor(backend);
  if (!simd) throw new Error(`${kernel}: this engine has no WebAssembly SIMD (use the layers instead)`);
  return simd;
}

/** Calls `row` for every row of pooling windows with the byte offset of its pooled output row. */
function forEachPooledRow(g: Geometry, row: (b: number, r: number, pooledOffset: number) => void): void {
  const pooledRowBytes = g.cols * g.channels * 4;
  for (let b = 0; b < g.batch; b++) {
    for (let r = 0; r < g.rows; r++) row(b, r, (b * g.rows + r) * pooledRowBytes);
  }
}

interface ForwardArgs {
  inputs: { x: tf.TensorInfo; filter: tf.TensorInfo; bias: tf.TensorInfo };
  backend: BackendWasm;
}

function convReluPoolKernel({ inputs: { x, filter, bias }, backend }: ForwardArgs): tf.TensorInfo[] {
  if (x.dtype !== 'float32' || filter.dtype !== 'float32' || bias.dtype !== 'float32' || !convReluPoolShapes(x.shape, filter.shape, bias.shape)) {
    throw new Error(`${CONV_RELU_POOL}: unsupported inputs x [${x.shape}], filter [${filter.shape}], bias [${bias.shape}]`);
  }
  const simd = kernelsOf(backend, CONV_RELU_POOL);
  const g = geometry(x, filter.shape[3]!);
  const convCols = 2 * g.cols;
  const pooled = backend.makeOutput([g.batch, g.rows, g.cols, g.channels], 'float32');
  const codes = backend.makeOutput([g.batch, g.rows, g.cols, g.channels], 'int32');
  // Two conv output rows, reused for every row of windows: they stay in cache.
  const scratch = backend.makeOutput([2, convCols, g.channels], 'float32');
  try {
    const [x0, w, b0, s0, p0, c0] = [x, filter, bias, scratch, pooled, codes].map((t) => backend.getMemoryOffset(t.dataId)) as [number, number, number, number, number, number];
    const inRowBytes = g.width * 4;
    const convRowBytes = convCols * g.channels * 4;
    const pixelBytes = g.channels * 4;
    const groups = g.channels / 4;
    forEachPooledRow(g, (b, r, o) => {
      const top = x0 + (b * g.height + 2 * r) * inRowBytes;
      simd.conv3x3Row(top, top + inRowBytes, top + 2 * inRowBytes, w, s0, convCols, groups, 4, pixelBytes);
      simd.conv3x3Row(top + inRowBytes, top + 2 * inRowBytes, top + 3 * inRowBytes, w, s0 + convRowBytes, convCols, groups, 4, pixelBytes);
      simd.biasReluPool2x2Row(s0, s0 + convRowBytes, b0, p0 + o, c0 + o, g.cols, g.channels);
    });
  } finally {
    backend.disposeData(scratch.dataId);
  }
  return [pooled, codes];
}

interface GradArgs {
  inputs: { dy: tf.TensorInfo; pooled: tf.TensorInfo; codes: tf.TensorInfo };
  backend: BackendWasm;
}

function checkGradInputs(kernel: string, { dy, pooled, codes }: GradArgs['inputs']): void {
  const same = (a: tf.TensorInfo) => a.shape.length === 4 && a.shape.every((d, i) => d === pooled.shape[i]);
  if (dy.dtype !== 'float32' || pooled.dtype !== 'float32' || codes.dtype !== 'int32' || !same(dy) || !same(codes) || pooled.shape[3]! % 4 !== 0) {
    throw new Error(`${kernel}: unsupported inputs dy [${dy.shape}], pooled [${pooled.shape}], codes [${codes.shape}] ${codes.dtype}`);
  }
}

function pooledGeometry(pooled: tf.TensorInfo): Geometry {
  const [batch, rows, cols, channels] = pooled.shape as [number, number, number, number];
  return { batch, height: 2 * rows + 2, width: 2 * cols + 2, channels, rows, cols };
}

function convReluPoolGrad({ inputs, backend }: GradArgs): tf.TensorInfo {
  checkGradInputs(CONV_RELU_POOL_GRAD, inputs);
  const simd = kernelsOf(backend, CONV_RELU_POOL_GRAD);
  const g = pooledGeometry(inputs.pooled);
  const dpre = backend.makeOutput([g.batch, 2 * g.rows, 2 * g.cols, g.channels], 'float32');
  const [dy0, p0, c0, d0] = [inputs.dy, inputs.pooled, inputs.codes, dpre].map((t) => backend.getMemoryOffset(t.dataId)) as [number, number, number, number];
  const convRowBytes = 2 * g.cols * g.channels * 4;
  forEachPooledRow(g, (b, r, o) => {
    const top = d0 + (b * 2 * g.rows + 2 * r) * convRowBytes;
    simd.poolReluGrad2x2Row(dy0 + o, p0 + o, c0 + o, top, top + convRowBytes, g.cols, g.channels);
  });
  return dpre;
}

function convReluPoolBiasGrad({ inputs, backend }: GradArgs): tf.TensorInfo {
  checkGradInputs(CONV_RELU_POOL_BIAS_GRAD, inputs);
  const simd = kernelsOf(backend, CONV_RELU_POOL_BIAS_GRAD);
  const g = pooledGeometry(inputs.pooled);
  const out = backend.makeOutput([g.channels], 'float32');
  const [dy0, p0, c0] = [inputs.dy, inputs.pooled, inputs.codes].map((t) => backend.getMemoryOffset(t.dataId)) as [number, number, number];
  const sums = withFloat64Accumulators(backend, g.channels, (acc) =>
    forEachPooledRow(g, (_b, _r, o) => simd.poolReluBiasGradRow(dy0 + o, p0 + o, c0 + o, acc, g.cols, g.channels)),
  );
  (backend.typedArrayFromHeap(out) as Float32Array).set(sums);
  return out;
}

export const convReluPoolConfigs: readonly tf.KernelConfig[] = [
  { kernelName: CONV_RELU_POOL, backendName: 'wasm', kernelFunc: convReluPoolKernel as unknown as tf.KernelFunc },
  { kernelName: CONV_RELU_POOL_GRAD, backendName: 'wasm', kernelFunc: convReluPoolGrad as unknown as tf.KernelFunc },
  { kernelName: CONV_RELU_POOL_BIAS_GRAD, backendName: 'wasm', kernelFunc: convReluPoolBiasGrad as unknown as tf.KernelFunc },
];

/** The convolution the block computes, as the gradient kernels' attributes name it. */
export const UNIT_CONV = { strides: [1, 1] as [number, number], pad: 'valid' as const, dataFormat: 'NHWC' as const };

/**
 * The block's gradients for `dy` at (pooled, codes), each computed only when asked for. Each
 * computes the pre-activation gradient it needs itself: tfjs-core runs every input's gradient in
 * a tidy of its own, which disposes what that one made.
 */
function blockGradients(dy: tf.Tensor, x: tf.Tensor4D, pooled: tf.Tensor, codes: tf.Tensor) {
  const engine = tf.engine();
  const dpre = () => engine.runKernel(CONV_RELU_POOL_GRAD, { dy, pooled, codes }) as tf.Tensor4D;
  return {
    x: (filter: tf.Tensor) => engine.runKernel('Conv2DBackpropInput', { dy: dpre(), filter }, { ...UNIT_CONV, inputShape: x.shape }) as tf.Tensor,
    filter: (filterShape: number[]) => engine.runKernel('Conv2DBackpropFilter', { x, dy: dpre() }, { ...UNIT_CONV, filterShape }) as tf.Tensor,
    bias: () => engine.runKernel(CONV_RELU_POOL_BIAS_GRAD, { dy, pooled, codes }) as tf.Tensor,
  };
}

/** The block's gradient (idempotent): each input's only when tfjs-core asks for it. */
export function registerConvReluPoolGradient(): void {
  tf.registerGradient({
    kernelName: CONV_RELU_POOL,
    inputsToSave: ['x', 'filter'],
    outputsToSave: [true, true],
    gradFunc: (dys: tf.Tensor | tf.Tensor[], saved: tf.Tensor[]) => {
      const dy = (Array.isArray(dys) ? dys[0] : dys)!;
      const [x, filter, pooled, codes] = saved as [tf.Tensor4D, tf.Tensor4D, tf.Tensor4D, tf.Tensor4D];
      const g = blockGradients(dy, x, pooled, codes);
      return { x: () => g.x(filter), filter: () => g.filter(filter.shape), bias: g.bias };
    },
  });
}

/** maxPool2x2(relu(conv3x3(x, filter) + bias)) as one kernel; see convReluPoolAvailable and convReluPoolShapes. */
export function convReluPool(x: tf.Tensor4D, filter: tf.Tensor4D, bias: tf.Tensor1D): tf.Tensor4D {
  const [pooled] = tf.engine().runKernel(CONV_RELU_POOL, { x, filter, bias }, {}) as unknown as tf.Tensor4D[];
  return pooled!;
}

/**
 * The same block where x needs no gradient (a model's input images): the tape records one node
 * with pooled as its only output and the filter and bias as its only inputs. Recorded as the
 * kernel itself, the node also has the codes as an output, for which tfjs-core makes a tensor
 * of zeros as their gradient on every backward pass (a JavaScript array the size of the pooled
 * output, copied into the wasm heap) only to ignore it. The same kernels, the same bits.
 */
export function convReluPoolOnInput(x: tf.Tensor4D, filter: tf.Tensor4D, bias: tf.Tensor1D): tf.Tensor4D {
  const engine = tf.engine();
  const block = tf.customGrad(((f: tf.Tensor, b: tf.Tensor, save: tf.GradSaveFunc) => {
    const [pooled, codes] = engine.runKernel(CONV_RELU_POOL, { x, filter: f, bias: b }, {}) as unknown as tf.Tensor4D[];
    save([pooled!, codes!]);
    return {
      value: pooled!,
      gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => {
        const g = blockGradients(dy, x, saved[0]!, saved[1]!);
        return [g.filter(f.shape), g.bias()];
      },
    };
  }) as unknown as Parameters<typeof tf.customGrad>[0]);
  return block(filter, bias) as tf.Tensor4D;
}
