/**
 * The flat layout of a model's trainable variables: all of them concatenated in the model's
 * order into one float32 buffer. Weights, gradients and optimizer slots all use this layout.
 */
import * as tf from '@tensorflow/tfjs';
import { LayoutMismatchError } from './errors.js';

export interface VariableSpec {
  name: string;
  shape: number[];
  size: number;
  /** Offset in floats into the flat buffer. */
  offset: number;
}

export interface VariableLayout {
  specs: VariableSpec[];
  totalSize: number;
}

export function layoutOf(model: tf.LayersModel): VariableLayout {
  let offset = 0;
  const specs = model.trainableWeights.map((w) => {
    const size = w.shape.reduce((a: number, b) => a * (b ?? 1), 1);
    const spec = { name: w.originalName, shape: w.shape.map((d) => d ?? 1), size, offset };
    offset += size;
    return spec;
  });
  return { specs, totalSize: offset };
}

/** Throws LayoutMismatchError unless `other` has the same shapes in the same order. */
export function assertSameLayout(expected: VariableLayout, other: { shape: number[] }[]): void {
  const describe = (s: { shape: number[] }[]) => s.map((v) => `[${v.shape.join(',')}]`).join(' ');
  const same =
    other.length === expected.specs.length &&
    other.every((v, i) => v.shape.length === expected.specs[i]!.shape.length && v.shape.every((d, j) => d === expected.specs[i]!.shape[j]));
  if (!same) {
    throw new LayoutMismatchError(`variable shapes differ: expected ${describe(expected.specs)}, got ${describe(other)}`);
  }
}

/** Writes a flat buffer into the model's variables. */
export function assignWeights(model: tf.LayersModel, layout: VariableLayout, flat: Float32Array): void {
  if (flat.length !== layout.totalSize) {
    throw new LayoutMismatchError(`weight buffer has ${flat.length} floats; the model has ${layout.totalSize}`);
  }
  const weights = model.trainableWeights;
  // The pure-JS cpu backend keeps the array it is given instead of copying it, and webgpu keeps
  // it until its first use uploads it: copy there, so a variable never aliases a buffer the
  // caller reuses. Other backends copy into their own memory.
  const aliases = tf.getBackend() === 'cpu' || tf.getBackend() === 'webgpu';
  tf.tidy(() => {
    layout.specs.forEach((spec, i) => {
      const view = flat.subarray(spec.offset, spec.offset + spec.size);
      weights[i]!.write(tf.tensor(aliases ? view.slice() : view, spec.shape, 'float32'));
    });
  });
}

/** Reads the model's variables into one flat buffer (asynchronous reads only). */
export async function readWeights(model: tf.LayersModel, layout: VariableLayout, out?: Float32Array): Promise<Float32Array> {
  const flat = out ?? new Float32Array(layout.totalSize);
  const values = await Promise.all(model.trainableWeights.map((w) => w.read().data<'float32'>()));
  values.forEach((v, i) => flat.set(v, layout.specs[i]!.offset));
  return flat;
}
