/**
 * Seeded initial weights, as Keras' defaults: Glorot-uniform kernels, zero biases. Computed in
 * plain JS from one seed so every process and every run starts from the same bits.
 */
import { Random } from '../data/random.js';
import type { VariableLayout } from './variables.js';

export function initialWeights(layout: VariableLayout, seed: number): Float32Array {
  const flat = new Float32Array(layout.totalSize);
  const rng = Random.fromSeed(seed, 0x1417);
  for (const spec of layout.specs) {
    if (spec.shape.length < 2) continue; // biases start at zero
    const outUnits = spec.shape[spec.shape.length - 1]!;
    const inUnits = spec.shape[spec.shape.length - 2]!;
    const receptive = spec.size / (inUnits * outUnits);
    const limit = Math.sqrt(6 / ((inUnits + outUnits) * receptive));
    for (let i = 0; i < spec.size; i++) flat[spec.offset + i] = (rng.next() * 2 - 1) * limit;
  }
  return flat;
}
