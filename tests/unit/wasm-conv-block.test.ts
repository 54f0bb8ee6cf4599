/**
 * The fused convolution block (kernels/conv-relu-pool.ts, forward.ts): maxPool2x2(relu(conv3x3(x)
 * + bias)) as one wasm kernel and its gradient, against the same layers run as separate
 * kernels (bitwise), against the pure-JS cpu backend (within tolerance), and inside a worker's
 * whole step.
 */
import * as tf from '@tensorflow/tfjs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { gatherBatch } from '../../src/data/batch.js';
import { loadMnist } from '../../src/data/mnist.js';
import { directStepTuning } from '../../src/model/direct-step.js';
import { forwardTuning } from '../../src/model/forward.js';
import { GradientComputer } from '../../src/model/gradients.js';
import { initialWeights } from '../../src/model/init.js';
import { convReluPool, convReluPoolAvailable, convReluPoolOnInput, convReluPoolShapes } from '../../src/model/kernels/conv-relu-pool.js';
import { registerWasmKernels } from '../../src/model/kernels/register-wasm-kernels.js';
import { countDifferent, maxAbsDiff, randomArray } from '../helpers/kernel-inputs.js';
import { profiledStep } from '../helpers/worker-step.js';

type Inputs = { x: Float32Array; filter: Float32Array; bias: Float32Array; r: Float32Array; shape: [number, number, number, number]; channels: number };

/**
 * Random inputs with the cases that matter: a channel whose bias keeps every cell below zero
 * (ReLU ties at 0 in every window), and images with equal columns (ties between positive cells).
 */
function inputs(batch: number, height: number, width: number, channels: number, seed: number): Inputs {
  const x = randomArray(batch * height * width, seed);
  // Image 0: every row constant, so horizontally adjacent cells of a window tie.
  for (let r = 0; r < height; r++) x.fill(x[r * width]!, r * width, (r + 1) * width);
  const bias = randomArray(channels, seed + 1).map((v, i) => (i === 1 ? -100 : v));
  const pooled = batch * ((height - 2) / 2) * ((width - 2) / 2) * channels;
  return { x, filter: randomArray(9 * channels, seed + 2), bias, r: randomArray(pooled, seed + 3), shape: [batch, height, width, 1], channels };
}

const layers = (x: tf.Tensor4D, filter: tf.Tensor4D, bias: tf.Tensor1D) =>
  tf.maxPool(tf.relu(tf.add(tf.conv2d(x, filter, 1, 'valid'), bias)) as tf.Tensor4D, 2, 2, 'valid');

interface Result { out: Float32Array; dx: Float32Array; dfilter: Float32Array; dbias: Float32Array; kernels: string[] }

/** Forward and the gradient of sum(out * r) with respect to x, filter and bias. */
async function run(block: typeof layers, i: Inputs): Promise<Result> {
  const x = tf.tensor4d(i.x, i.shape);
  const filter = tf.tensor4d(i.filter, [3, 3, 1, i.channels]);
  const bias = tf.tensor1d(i.bias);
  const r = tf.tensor(i.r);
  try {
    const loss = (a: tf.Tensor, b: tf.Tensor, c: tf.Tensor) => tf.sum(tf.mul(block(a as tf.Tensor4D, b as tf.Tensor4D, c as tf.Tensor1D).reshape([-1]), r));
    let grads: tf.Tensor[] = [];
    let out: tf.Tensor | undefined;
    const profile = await tf.profile(() => {
      out = block(x, filter, bias);
      grads = tf.grads(loss)([x, filter, bias]);
    });
    const [dx, dfilter, dbias] = grads.map((g) => Float32Array.from(g.dataSync()));
    const result = { out: Float32Array.from(out!.dataSync()), dx: dx!, dfilter: dfilter!, dbias: dbias!, kernels: profile.kernelNames };
    tf.dispose([out!, ...grads]);
    return result;
  } finally {
    tf.dispose([x, filter, bias, r]);
  }
}

function relativeError(a: Float32Array, b: Float32Array): number {
  return maxAbsDiff(a, b) / Math.max(1e-12, ...Array.from(b, Math.abs));
}

beforeAll(() => registerWasmKernels());
afterAll(async () => {
  forwardTuning.fuseConvBlocks = true;
  await tf.setBackend('cpu');
});

describe('the fused convolution block on wasm', () => {
  const cases: Array<[string, Inputs]> = [
    ['batch 3, 12x10, 8 channels', inputs(3, 12, 10, 8, 11)],
    ['batch 2, 28x28, 32 channels (the reference CNN)', inputs(2, 28, 28, 32, 21)],
  ];
  for (const [name, i] of cases) {
    it(`${name}: bitwise the layers run as separate kernels, forward and every gradient`, async () => {
      await tf.setBackend('wasm');
      expect(convReluPoolAvailable()).toBe(true);
      const fused = await run(convReluPool, i);
      const apart = await run(layers, i);
      expect(fused.kernels).toContain('TensorfleetConvReluPool');
      expect(apart.kernels).not.toContain('TensorfleetConvReluPool');
      expect(fused.out.length).toBe(apart.out.length);
      expect(countDifferent(fused.out, apart.out)).toBe(0);
      expect(countDifferent(fused.dfilter, apart.dfilter)).toBe(0);
      expect(countDifferent(fused.dbias, apart.dbias)).toBe(0);
      expect(countDifferent(fused.dx, apart.dx)).toBe(0);
      // The channel with the large negative bias is all zeros and routes no gradient.
      expect(fused.dbias[1]).toBe(0);
      expect(Math.max(...Array.from(fused.dbias, Math.abs))).toBeGreaterThan(1e-3);
    });

    it(`${name}: within 1e-5 of the cpu backend`, async () => {
      await tf.setBackend('wasm');
      const fused = await run(convReluPool, i);
      await tf.setBackend('cpu');
      const cpu = await run(layers, i);
      expect(relativeError(fused.out, cpu.out)).toBeLessThan(1e-5);
      expect(relativeError(fused.dfilter, cpu.dfilter)).toBeLessThan(1e-5);
      expect(relativeError(fused.dbias, cpu.dbias)).toBeLessThan(1e-5);
      expect(relativeError(fused.dx, cpu.dx)).toBeLessThan(1e-5);
    });
  }

  it('on the input (no gradient of x): bitwise the same filter and bias gradients, and no tensor of zeros for the codes', async () => {
    await tf.setBackend('wasm');
    const i = inputs(2, 28, 28, 32, 41);
    const x = tf.tensor4d(i.x, i.shape);
    const filter = tf.variable(tf.tensor4d(i.filter, [3, 3, 1, i.channels]));
    const bias = tf.variable(tf.tensor1d(i.bias));
    const r = tf.tensor(i.r);
    /** The gradients of sum(block(x) * r) with respect to the filter and bias, and the tensors made from JavaScript arrays meanwhile. */
    const gradients = (block: typeof convReluPool) => {
      const engine = tf.engine();
      const makeTensor = engine.makeTensor.bind(engine);
      let made = 0;
      engine.makeTensor = (...args: Parameters<typeof makeTensor>) => (made++, makeTensor(...args));
      try {
        const { grads } = tf.variableGrads(() => tf.sum(tf.mul(block(x, filter, bias).reshape([-1]), r)), [filter, bias]);
        const out = [grads[filter.name]!, grads[bias.name]!].map((g) => Float32Array.from(g.dataSync()));
        tf.dispose(grads);
        return { dfilter: out[0]!, dbias: out[1]!, made };
      } finally {
        engine.makeTensor = makeTensor;
      }
    };
    try {
      const taped = gradients(convReluPool);
      const onInput = gradients(convReluPoolOnInput);
      expect(countDifferent(onInput.dfilter, taped.dfilter)).toBe(0);
      expect(countDifferent(onInput.dbias, taped.dbias)).toBe(0);
      expect(Math.max(...Array.from(onInput.dfilter, Math.abs))).toBeGreaterThan(1e-3);
      expect(onInput.made).toBe(taped.made - 1); // the codes' zeros
    } finally {
      tf.dispose([x, filter, bias, r]);
    }
  });

  it('a window of NaN cells passes NaN forward and routes no gradient', async () => {
    await tf.setBackend('wasm');
    const i = inputs(1, 6, 6, 4, 31);
    // x rows 0-3, columns 0-3 feed the conv cells of the first window (rows 0-1, columns 0-1).
    for (const [r, c] of [[0, 0], [1, 1], [2, 2], [3, 3]]) i.x[r * 6 + c] = NaN;
    const fused = await run(convReluPool, i);
    expect(Number.isNaN(fused.out[0]!)).toBe(true);
    expect(Number.isNaN(fused.out[4]!)).toBe(false);
    // No gradient reaches the NaN cells: the bias and input gradients stay finite (the filter
    // gradient multiplies the NaN inputs themselves, with layers or without).
    expect(fused.dbias.every(Number.isFinite)).toBe(true);
    expect(fused.dx.every(Number.isFinite)).toBe(true);
  });

  it('only its geometry qualifies', () => {
    expect(convReluPoolShapes([4, 28, 28, 1], [3, 3, 1, 32], [32])).toBe(true);
    expect(convReluPoolShapes([4, 27, 28, 1], [3, 3, 1, 32], [32])).toBe(false); // odd conv rows
    expect(convReluPoolShapes([4, 28, 28, 2], [3, 3, 2, 32], [32])).toBe(false); // two input channels
    expect(convReluPoolShapes([4, 28, 28, 1], [3, 3, 1, 30], [30])).toBe(false); // channels not a multiple of 4
    expect(convReluPoolShapes([4, 28, 28, 1], [5, 5, 1, 32], [32])).toBe(false);
  });
});

describe('a worker step with the fused block (reference CNN)', () => {
  const data = loadMnist({ trainLimit: 64, skipTest: true });

  /** Through the tape (the step without it, direct-step.ts, is compared with the tape in its own test). */
  async function step(fuse: boolean): Promise<{ grad: Float32Array; loss: number; kernels: string[] }> {
    forwardTuning.fuseConvBlocks = fuse;
    directStepTuning.enabled = false;
    await tf.setBackend('wasm');
    const computer = new GradientComputer('mnist-cnn');
    try {
      const weights = initialWeights(computer.layout, 3);
      // Non-zero biases, so the bias gradients mean something.
      for (const s of computer.layout.specs) if (s.shape.length === 1) for (let k = 0; k < s.size; k++) weights[s.offset + k] = 0.02 * Math.cos(k);
      return await profiledStep(computer, weights, gatherBatch(data.train, Array.from({ length: 12 }, (_, k) => (k * 5) % data.train.count)));
    } finally {
      computer.dispose();
      forwardTuning.fuseConvBlocks = true;
      directStepTuning.enabled = true;
    }
  }

  it('gives bitwise the gradient of the layers, and really runs the block', async () => {
    const fused = await step(true);
    const apart = await step(false);
    expect(fused.kernels).toContain('TensorfleetConvReluPool');
    expect(fused.kernels).not.toContain('MaxPool');
    expect(apart.kernels).not.toContain('TensorfleetConvReluPool');
    expect(apart.kernels).toContain('MaxPool');
    expect(fused.grad.some(Number.isNaN)).toBe(false);
    expect(countDifferent(fused.grad, apart.grad)).toBe(0);
    expect(fused.loss).toBe(apart.loss);
  });
});
