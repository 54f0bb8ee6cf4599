/**
 * One worker step end to end: GradientComputer.setWeights + computeGradients on wasm (the
 * project's kernels, their SIMD paths, the heap-view read-out) against the pure-JS cpu backend,
 * for the reference CNN on real MNIST batches.
 */
import * as tf from '@tensorflow/tfjs';
import { afterAll, describe, expect, it } from 'vitest';
import { gatherBatch } from '../../src/data/batch.js';
import { loadMnist } from '../../src/data/mnist.js';
import { GradientComputer } from '../../src/model/gradients.js';
import { initialWeights } from '../../src/model/init.js';
import { registerWasmKernels } from '../../src/model/kernels/register-wasm-kernels.js';
import { simdTuning } from '../../src/model/kernels/simd.js';
import { countDifferent } from '../helpers/kernel-inputs.js';

const data = loadMnist({ trainLimit: 512, skipTest: true });

/** Glorot kernels and small non-zero biases, so every gradient term is exercised. */
function weightsFor(computer: GradientComputer): Float32Array {
  const w = initialWeights(computer.layout, 7);
  for (const s of computer.layout.specs) {
    if (s.shape.length === 1) for (let i = 0; i < s.size; i++) w[s.offset + i] = 0.01 * Math.sin(i + s.offset);
  }
  return w;
}

async function stepOn(backend: 'cpu' | 'wasm', batchSize: number): Promise<{ loss: number; grad: Float32Array; again: Float32Array; computer: GradientComputer }> {
  await tf.setBackend(backend);
  const computer = new GradientComputer('mnist-cnn');
  try {
    const batch = gatherBatch(data.train, Array.from({ length: batchSize }, (_, i) => (i * 13) % data.train.count));
    const weights = weightsFor(computer);
    const grad = new Float32Array(computer.layout.totalSize).fill(NaN);
    computer.setWeights(weights);
    const loss = await computer.computeGradients(batch, grad);
    // Other weights in between, then the same step again into a dirty buffer.
    computer.setWeights(initialWeights(computer.layout, 8));
    const again = new Float32Array(computer.layout.totalSize).fill(5);
    await computer.computeGradients(gatherBatch(data.train, [1, 2, 3]), again);
    computer.setWeights(weights);
    await computer.computeGradients(batch, again);
    return { loss, grad, again, computer };
  } finally {
    computer.dispose();
  }
}

afterAll(async () => {
  await tf.setBackend('cpu');
});

describe('GradientComputer on wasm matches cpu (reference CNN)', () => {
  registerWasmKernels();
  for (const batchSize of [32, 5]) {
    it(`batch ${batchSize}: every variable's gradient within 1e-5 of cpu (relative to its largest entry)`, async () => {
      const cpu = await stepOn('cpu', batchSize);
      const wasm = await stepOn('wasm', batchSize);
      expect(Math.abs(wasm.loss - cpu.loss)).toBeLessThan(1e-5 * Math.abs(cpu.loss));
      for (const spec of cpu.computer.layout.specs) {
        let maxAbs = 0;
        let scale = 0;
        for (let i = spec.offset; i < spec.offset + spec.size; i++) {
          maxAbs = Math.max(maxAbs, Math.abs(cpu.grad[i]! - wasm.grad[i]!));
          scale = Math.max(scale, Math.abs(cpu.grad[i]!));
        }
        expect(scale, `${spec.name} gradient is not trivially zero`).toBeGreaterThan(1e-6);
        expect(maxAbs / scale, spec.name).toBeLessThanOrEqual(1e-5);
      }
      // Deterministic: the same step again gives bitwise the same gradient.
      expect(countDifferent(wasm.again, wasm.grad)).toBe(0);
      expect(countDifferent(cpu.again, cpu.grad)).toBe(0);
    });
  }

  it('the wasm SIMD paths, multiply and add apart, give bitwise the gradient of the JS/XNNPACK fallbacks', async () => {
    simdTuning.fused = false;
    try {
      const simd = await stepOn('wasm', 6);
      simdTuning.enabled = false;
      try {
        const fallback = await stepOn('wasm', 6);
        expect(countDifferent(simd.grad, fallback.grad)).toBe(0);
        expect(simd.loss).toBe(fallback.loss);
      } finally {
        simdTuning.enabled = true;
      }
    } finally {
      simdTuning.fused = true;
    }
  });
});
