/**
 * A worker's compute: a replica of the model that turns (weights, batch) into the gradient of
 * the mean loss over the batch, written into a flat buffer. It never runs an optimizer. Results
 * are read asynchronously (backends such as WebGPU have no fast synchronous read), except on
 * wasm, where they are copied straight out of the backend's heap (kernels/wasm-heap-io.ts).
 */
import * as tf from '@tensorflow/tfjs';
import type { Batch } from '../data/batch.js';
import { IMAGE_SIZE, NUM_CLASSES } from '../data/mnist.js';
import { DirectStep } from './direct-step.js';
import { heapViewReader } from './kernels/wasm-heap-io.js';
import { applyForTraining } from './forward.js';
import { categoricalCrossEntropy } from './loss.js';
import { assignWeights, layoutOf, type VariableLayout } from './variables.js';
import { weightsTargetFor, type WeightsTarget } from './weights-target.js';
import { createModel } from './zoo.js';

export class GradientComputer {
  readonly model: tf.Sequential;
  readonly layout: VariableLayout;
  private readonly variables: tf.Variable[];
  private target: WeightsTarget | undefined;
  /** The step without the tape (direct-step.ts), null for a model it does not run. */
  private direct: DirectStep | null | undefined;

  constructor(modelName: string) {
    this.model = createModel(modelName);
    this.layout = layoutOf(this.model);
    this.variables = this.model.trainableWeights.map((w) => w.read() as tf.Variable);
  }

  setWeights(flat: Float32Array): void {
    assignWeights(this.model, this.layout, flat);
  }

  /** Where weights arriving in slices are written (weights-target.ts): one per computer. */
  weightsTarget(): WeightsTarget {
    this.target ??= weightsTargetFor(this.model, this.layout, this.variables);
    return this.target;
  }

  /** Writes d(mean loss)/d(weights) into `out` (flat layout) and returns the mean loss. */
  async computeGradients(batch: Batch, out: Float32Array): Promise<number> {
    if (batch.count === 0) throw new RangeError('empty batch');
    if (this.direct === undefined && DirectStep.available()) this.direct = DirectStep.for(this.model, this.variables, this.layout) ?? null;
    if (this.direct?.applies()) return this.direct.run(batch, out);
    const { value, grads } = tf.tidy(() => {
      const x = tf.tensor4d(batch.pixels, [batch.count, IMAGE_SIZE, IMAGE_SIZE, 1]);
      const y = tf.tensor2d(batch.oneHot, [batch.count, NUM_CLASSES]);
      return tf.variableGrads(() => categoricalCrossEntropy(applyForTraining(this.model, x), y), this.variables);
    });
    try {
      const ordered = this.variables.map((v) => grads[v.name]!);
      const view = heapViewReader();
      if (view) {
        // wasm: copy straight from the heap into `out` (no intermediate arrays, nothing to collect).
        const views = [value, ...ordered].map(view);
        if (views.every((v) => v !== undefined)) {
          ordered.forEach((_, i) => out.set(views[i + 1]!, this.layout.specs[i]!.offset));
          return views[0]![0]!;
        }
      }
      const [lossValues, ...gradValues] = await Promise.all([value.data<'float32'>(), ...ordered.map((g) => g.data<'float32'>())]);
      gradValues.forEach((g, i) => out.set(g, this.layout.specs[i]!.offset));
      return lossValues[0]!;
    } finally {
      value.dispose();
      tf.dispose(grads);
    }
  }

  dispose(): void {
    this.model.dispose();
  }
}
