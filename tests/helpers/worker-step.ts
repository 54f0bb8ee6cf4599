/** One worker step of a GradientComputer under tf.profile: the gradient, the loss and the kernels the engine ran. */
import * as tf from '@tensorflow/tfjs';
import type { Batch } from '../../src/data/batch.js';
import type { GradientComputer } from '../../src/model/gradients.js';

export async function profiledStep(computer: GradientComputer, weights: Float32Array, batch: Batch): Promise<{ grad: Float32Array; loss: number; kernels: string[] }> {
  computer.setWeights(weights);
  const grad = new Float32Array(computer.layout.totalSize).fill(NaN);
  let loss = 0;
  const profile = await tf.profile(async () => {
    loss = await computer.computeGradients(batch, grad);
  });
  return { grad, loss, kernels: profile.kernelNames };
}
