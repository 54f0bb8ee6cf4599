/**
 * The ReLU gradient in one pass on the wasm backend. tfjs-core's gradient of `Relu` is
 * mul(dy, cast(step(x), 'float32')): a Step kernel writes a tensor of ones and zeros, then
 * Multiply reads it back, two passes over the conv layer's activations ([B,26,26,32]) that run
 * at memory speed. `TensorfleetReluGrad` computes dy * (x > 0 ? 1 : x is NaN ? NaN : 0) in one
 * (wasm SIMD, or a JS loop over the heap for sizes not a multiple of 4): per element the same
 * single multiplication by the same factor as the stock chain, so the same bits (signed zeros
 * included; only the payload of a NaN may differ).
 *
 * The `Relu` gradient is registered once for every backend; it runs this kernel when the active
 * backend is wasm and it is registered there, and tfjs-core's own formula everywhere else.
 */
import * as tf from '@tensorflow/tfjs';
import type { BackendWasm } from '@tensorflow/tfjs-backend-wasm';
import { simdKernelsFor } from './simd.js';

export const RELU_GRAD = 'TensorfleetReluGrad';

function reluGradWasm(args: { inputs: { dy: tf.TensorInfo; x: tf.TensorInfo }; backend: BackendWasm }): tf.TensorInfo {
  const { inputs, backend } = args;
  const { dy, x } = inputs;
  const n = x.shape.reduce((p, d) => p * d, 1);
  const out = backend.makeOutput(x.shape, 'float32');
  const simd = n % 4 === 0 ? simdKernelsFor(backend) : undefined;
  if (simd) {
    simd.reluGrad(backend.getMemoryOffset(dy.dataId), backend.getMemoryOffset(x.dataId), backend.getMemoryOffset(out.dataId), n / 4);
    return out;
  }
  // Views after the allocation: heap growth detaches older ones.
  const d = backend.typedArrayFromHeap(dy) as Float32Array;
  const v = backend.typedArrayFromHeap(x) as Float32Array;
  const o = backend.typedArrayFromHeap(out) as Float32Array;
  for (let i = 0; i < n; i++) {
    const xi = v[i]!;
    o[i] = d[i]! * (xi > 0 ? 1 : xi !== xi ? NaN : 0);
  }
  return out;
}

export const reluGradConfig: tf.KernelConfig = {
  kernelName: RELU_GRAD,
  backendName: 'wasm',
  kernelFunc: reluGradWasm as unknown as tf.KernelFunc,
};

/** True while the fused kernel serves the active backend. */
function fused(dy: tf.Tensor, x: tf.Tensor): boolean {
  return tf.getBackend() === 'wasm' && dy.dtype === 'float32' && x.dtype === 'float32' && tf.getKernel(RELU_GRAD, 'wasm') != null && dy.shape.length === x.shape.length && dy.shape.every((d, i) => d === x.shape[i]);
}

/** Replaces tfjs-core's `Relu` gradient (idempotent). */
export function registerReluGradient(): void {
  tf.registerGradient({
    kernelName: 'Relu',
    inputsToSave: ['x'],
    gradFunc: (dy: tf.Tensor | tf.Tensor[], saved: tf.Tensor[]) => {
      const g = dy as tf.Tensor;
      const [x] = saved;
      return { x: () => (fused(g, x!) ? (tf.engine().runKernel(RELU_GRAD, { dy: g, x: x! }) as tf.Tensor) : tf.mul(g, tf.cast(tf.step(x!), 'float32'))) };
    },
  });
}
