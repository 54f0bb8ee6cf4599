/**
 * Weights written in slices straight into the model (weights-target.ts): on wasm into the
 * variables' heap memory, elsewhere through a flat buffer. Either way the model must compute
 * exactly what it computes after GradientComputer.setWeights with the same values, including
 * when the stock kernels cached operands packed from the previous values (SIMD off routes the
 * dense layer to the stock XNNPACK matmul, which caches its packed weights by tensor id).
 */
import * as tf from '@tensorflow/tfjs';
import { afterAll, describe, expect, it } from 'vitest';
import { gatherBatch } from '../../src/data/batch.js';
import { loadMnist } from '../../src/data/mnist.js';
import { GradientComputer } from '../../src/model/gradients.js';
import { initialWeights } from '../../src/model/init.js';
import { registerWasmKernels } from '../../src/model/kernels/register-wasm-kernels.js';
import { simdTuning } from '../../src/model/kernels/simd.js';
import { readWeights } from '../../src/model/variables.js';
import { FlatWeightsTarget, type WeightsTarget } from '../../src/model/weights-target.js';

const data = loadMnist({ trainLimit: 64, skipTest: true });
const batch = gatherBatch(data.train, Array.from({ length: 4 }, (_, i) => i * 3));

/** Bitwise equality of two float arrays (toEqual is slow on 700,000 elements). */
const same = (a: Float32Array, b: Float32Array) => Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(Buffer.from(b.buffer, b.byteOffset, b.byteLength));

/** Writes `flat` in chunks of `chunkFloats` (crossing variable boundaries), last chunk first. */
function writeInChunks(target: WeightsTarget, flat: Float32Array, chunkFloats: number): void {
  const bytes = new Uint8Array(flat.buffer, flat.byteOffset, flat.byteLength);
  const starts: number[] = [];
  for (let at = 0; at < bytes.byteLength; at += chunkFloats * 4) starts.push(at);
  for (const at of starts.reverse()) target.write(at, bytes.slice(at, Math.min(at + chunkFloats * 4, bytes.byteLength)));
}

async function gradientsWith(computer: GradientComputer, load: () => void): Promise<{ loss: number; grad: Float32Array }> {
  load();
  const grad = new Float32Array(computer.layout.totalSize);
  const loss = await computer.computeGradients(batch, grad);
  return { loss, grad };
}

afterAll(async () => {
  simdTuning.enabled = true;
  await tf.setBackend('cpu');
});

describe('weights written in slices into the model', () => {
  registerWasmKernels();
  for (const [backend, simd] of [['wasm', true], ['wasm', false], ['cpu', true]] as const) {
    it(`${backend}${backend === 'wasm' ? (simd ? ' (SIMD kernels)' : ' (stock XNNPACK kernels)') : ''}: the model computes what setWeights gives it, bit for bit`, async () => {
      await tf.setBackend(backend);
      simdTuning.enabled = simd;
      const computer = new GradientComputer('mnist-cnn');
      try {
        const a = initialWeights(computer.layout, 7);
        const b = initialWeights(computer.layout, 8);
        // References through setWeights (fresh tensors each time).
        const refA = await gradientsWith(computer, () => computer.setWeights(a));
        const refB = await gradientsWith(computer, () => computer.setWeights(b));
        expect(same(refA.grad, refB.grad)).toBe(false);

        const target = computer.weightsTarget();
        expect(target instanceof FlatWeightsTarget).toBe(backend !== 'wasm');
        expect(computer.weightsTarget()).toBe(target);
        // A, then B written over it in place, then A again: each must compute its reference
        // (the pure-JS cpu backend, slow, does B only).
        const rounds = backend === 'cpu' ? ([[b, refB]] as const) : ([[a, refA], [b, refB], [a, refA]] as const);
        for (const [weights, ref] of rounds) {
          expect(target.stale).toBe(false);
          writeInChunks(target, weights, 10_007);
          expect(target.stale).toBe(true);
          const got = await gradientsWith(computer, () => target.load());
          expect(target.stale).toBe(false);
          expect(got.loss).toBe(ref.loss);
          expect(same(got.grad, ref.grad)).toBe(true);
          expect(same(await readWeights(computer.model, computer.layout), weights)).toBe(true);
        }
      } finally {
        computer.dispose();
      }
    });
  }

  it('wasm: writes survive the heap growing between them, and bytes outside the layout are refused', async () => {
    await tf.setBackend('wasm');
    simdTuning.enabled = true;
    const computer = new GradientComputer('mnist-cnn');
    try {
      const target = computer.weightsTarget();
      const w = initialWeights(computer.layout, 9);
      const bytes = new Uint8Array(w.buffer);
      const half = Math.floor(w.length / 2) * 4;
      target.write(0, bytes.subarray(0, half));
      // Grow the heap (detaching every view of the old memory), then write the rest.
      const heapBytes = () => (tf.backend() as unknown as { wasm: { HEAPU8: Uint8Array } }).wasm.HEAPU8.buffer.byteLength;
      const before = heapBytes();
      const big = tf.zeros([before / 2]);
      expect(heapBytes()).toBeGreaterThan(before);
      target.write(half, bytes.subarray(half));
      big.dispose();
      target.load();
      expect(same(await readWeights(computer.model, computer.layout), w)).toBe(true);
      expect(() => target.write(bytes.byteLength - 4, bytes.subarray(0, 8))).toThrow(/do not fit/);
      expect(() => target.write(2, bytes.subarray(0, 4))).toThrow(/do not fit/);
    } finally {
      computer.dispose();
    }
  });
});
