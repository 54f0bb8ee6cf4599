import * as tf from '@tensorflow/tfjs';
import { describe, expect, it } from 'vitest';
import { gatherBatch } from '../../src/data/batch.js';
import { loadMnist } from '../../src/data/mnist.js';
import { selectBackend } from '../../src/model/backend.js';
import { GradientComputer } from '../../src/model/gradients.js';
import { initialWeights } from '../../src/model/init.js';

describe('worker step memory', () => {
  it('tf.memory().numTensors stays flat over 50 worker steps', async () => {
    await selectBackend('wasm');
    const data = loadMnist({ trainLimit: 256, skipTest: true });
    const computer = new GradientComputer('mnist-cnn');
    const weights = initialWeights(computer.layout, 1);
    const grad = new Float32Array(computer.layout.totalSize);
    const step = async (i: number) => {
      computer.setWeights(weights);
      const idx = Array.from({ length: 16 }, (_, k) => (i * 16 + k) % 256);
      return computer.computeGradients(gatherBatch(data.train, idx), grad);
    };
    await step(0);
    const before = tf.memory().numTensors;
    const bytesBefore = tf.memory().numBytes;
    for (let i = 1; i <= 50; i++) {
      const loss = await step(i);
      expect(Number.isFinite(loss)).toBe(true);
    }
    expect(tf.memory().numTensors).toBe(before);
    expect(tf.memory().numBytes).toBe(bytesBefore);
    expect(grad.some((g) => g !== 0)).toBe(true);
    computer.dispose();
  });
});
