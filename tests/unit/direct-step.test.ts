/**
 * The step without the tape (src/model/direct-step.ts) against the tape, on wasm: bitwise the
 * same gradients and loss for both models of the zoo, full and partial batches, and a saturated
 * softmax (probabilities clipped); no kernel goes through the engine, and nothing is left in the
 * backend afterwards.
 */
import * as tf from '@tensorflow/tfjs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { gatherBatch } from '../../src/data/batch.js';
import { loadMnist } from '../../src/data/mnist.js';
import { directStepTuning } from '../../src/model/direct-step.js';
import { GradientComputer } from '../../src/model/gradients.js';
import { initialWeights } from '../../src/model/init.js';
import { registerWasmKernels } from '../../src/model/kernels/register-wasm-kernels.js';
import { countDifferent } from '../helpers/kernel-inputs.js';
import { profiledStep } from '../helpers/worker-step.js';

const data = loadMnist({ trainLimit: 96, skipTest: true });

beforeAll(async () => {
  registerWasmKernels();
  await tf.setBackend('wasm');
});
afterAll(async () => {
  directStepTuning.enabled = true;
  await tf.setBackend('cpu');
});

interface Step {
  grad: Float32Array;
  loss: number;
  kernels: string[];
}

/** One step of `model` with weights from `seed` (biases non-zero, the last kernel scaled by `scale`), direct or through the tape. */
async function step(model: string, direct: boolean, count: number, seed: number, scale = 1): Promise<Step> {
  directStepTuning.enabled = direct;
  const computer = new GradientComputer(model);
  try {
    const weights = initialWeights(computer.layout, seed);
    const specs = computer.layout.specs;
    for (const s of specs) if (s.shape.length === 1) for (let k = 0; k < s.size; k++) weights[s.offset + k] = 0.03 * Math.sin(k + seed);
    const lastKernel = specs[specs.length - 2]!;
    for (let k = 0; k < lastKernel.size; k++) weights[lastKernel.offset + k] *= scale;
    return await profiledStep(computer, weights, gatherBatch(data.train, Array.from({ length: count }, (_, k) => (k * 7 + seed) % data.train.count)));
  } finally {
    computer.dispose();
    directStepTuning.enabled = true;
  }
}

describe('the step without the tape', () => {
  const cases: Array<[string, number, number, number]> = [
    ['mnist-cnn', 32, 1, 1],
    ['mnist-cnn', 7, 2, 1],
    ['mnist-cnn', 12, 3, 60],
    ['mlp', 32, 4, 1],
    ['mlp', 5, 5, 60],
  ];
  it.each(cases)('%s, batch %i (seed %i, last kernel x%i): bitwise the gradients and loss of the tape, with no kernel through the engine', async (model, count, seed, scale) => {
    const tape = await step(model, false, count, seed, scale);
    const direct = await step(model, true, count, seed, scale);
    expect(tape.kernels).toContain('BatchMatMul');
    expect(direct.kernels).toEqual([]);
    expect(direct.grad.some(Number.isNaN)).toBe(false);
    expect(countDifferent(direct.grad, tape.grad)).toBe(0);
    expect(direct.loss).toBe(tape.loss);
    expect(direct.grad.reduce((m, g) => Math.max(m, Math.abs(g)), 0)).toBeGreaterThan(1e-4);
  });

  it('a saturated softmax clips probabilities, and the clipped ones pass no gradient, as on the tape', async () => {
    // With the last kernel scaled up, some probabilities fall below the clip's 1e-7.
    const direct = await step('mlp', true, 16, 6, 400);
    const tape = await step('mlp', false, 16, 6, 400);
    expect(direct.loss).toBeGreaterThan(1); // saturated and often wrong
    expect(countDifferent(direct.grad, tape.grad)).toBe(0);
    expect(direct.loss).toBe(tape.loss);
  });

  it('leaves nothing behind in the backend, step after step', async () => {
    directStepTuning.enabled = true;
    const computer = new GradientComputer('mnist-cnn');
    try {
      computer.setWeights(initialWeights(computer.layout, 9));
      const grad = new Float32Array(computer.layout.totalSize);
      const batch = gatherBatch(data.train, Array.from({ length: 16 }, (_, k) => k));
      await computer.computeGradients(batch, grad);
      const [tensors, dataIds] = [tf.memory().numTensors, tf.backend().numDataIds()];
      for (let i = 0; i < 5; i++) await computer.computeGradients(batch, grad);
      expect([tf.memory().numTensors, tf.backend().numDataIds()]).toEqual([tensors, dataIds]);
    } finally {
      computer.dispose();
    }
  });
});
