/**
 * The forward pass a worker differentiates: a Sequential model's layers applied in order, as
 * `model.apply(x, { training: true })` does, with one fusion. On the wasm backend (with SIMD) a
 * 3x3 Conv2D with bias and ReLU on single-channel input followed by a 2x2 stride-2 MaxPooling2D
 * runs as one kernel with its own gradient (kernels/conv-relu-pool.ts): the same values, about a
 * quarter of the memory traffic. Every other layer, and every other backend, runs the layers
 * themselves. The model, its variables and its saved form do not change.
 *
 * `forwardTuning.fuseConvBlocks = false` (or TENSORFLEET_WASM_FUSED_CONV=0 for a process) runs
 * the layers everywhere, for comparisons.
 */
import * as tf from '@tensorflow/tfjs';
import { convReluPool, convReluPoolAvailable, convReluPoolOnInput, convReluPoolShapes } from './kernels/conv-relu-pool.js';

export const forwardTuning = { fuseConvBlocks: process.env.TENSORFLEET_WASM_FUSED_CONV !== '0' };

type Layer = tf.layers.Layer;

const pair = (value: unknown, expected: number) => Array.isArray(value) ? value.length === 2 && value[0] === expected && value[1] === expected : value === expected;

/** A Conv2D followed by a MaxPooling2D that together make the fused block (shapes aside). */
export function isConvReluPoolPair(conv: Layer, pool: Layer): boolean {
  if (conv.getClassName() !== 'Conv2D' || pool.getClassName() !== 'MaxPooling2D') return false;
  const c = conv.getConfig();
  const p = pool.getConfig();
  return pair(c.kernelSize, 3) && pair(c.strides, 1) && pair(c.dilationRate, 1) && c.padding === 'valid' && c.dataFormat === 'channelsLast' &&
    c.activation === 'relu' && c.useBias === true && c.activityRegularizer == null && conv.weights.length === 2 &&
    pair(p.poolSize, 2) && pair(p.strides, 2) && p.padding === 'valid' && p.dataFormat === 'channelsLast';
}

const pairs = new WeakMap<Layer, boolean>();

function fusesWith(conv: Layer, pool: Layer | undefined): boolean {
  if (pool === undefined) return false;
  let known = pairs.get(conv);
  if (known === undefined) pairs.set(conv, (known = isConvReluPoolPair(conv, pool)));
  return known;
}

/** The model's output for `x` in training mode, recorded on the active gradient tape. */
export function applyForTraining(model: tf.Sequential, x: tf.Tensor): tf.Tensor {
  const fuse = forwardTuning.fuseConvBlocks && convReluPoolAvailable();
  const layers = model.layers;
  let h = x;
  for (let i = 0; i < layers.length; i++) {
    const layer = layers[i]!;
    if (fuse && fusesWith(layer, layers[i + 1])) {
      const [kernel, bias] = layer.weights.map((w) => w.read());
      if (h.dtype === 'float32' && convReluPoolShapes(h.shape, kernel!.shape, bias!.shape)) {
        // On the input itself no gradient of x is needed: the form without the codes on the tape.
        h = (h === x ? convReluPoolOnInput : convReluPool)(h as tf.Tensor4D, kernel as tf.Tensor4D, bias as tf.Tensor1D);
        i++;
        continue;
      }
    }
    h = layer.apply(h, { training: true }) as tf.Tensor;
  }
  return h;
}
