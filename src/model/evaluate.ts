/** Test-set evaluation: mean cross-entropy and accuracy, in batches, with asynchronous reads. */
import * as tf from '@tensorflow/tfjs';
import { gatherBatch, rangeIndices } from '../data/batch.js';
import { IMAGE_SIZE, NUM_CLASSES, type LabeledImages } from '../data/mnist.js';
import { EPSILON } from './loss.js';

export interface Evaluation {
  loss: number;
  accuracy: number;
  count: number;
  /** confusion[label][predicted] */
  confusion: number[][];
}

export async function evaluateModel(model: tf.LayersModel, set: LabeledImages, batchSize = 250): Promise<Evaluation> {
  let lossSum = 0;
  let correct = 0;
  const confusion = Array.from({ length: NUM_CLASSES }, () => new Array<number>(NUM_CLASSES).fill(0));
  for (let start = 0; start < set.count; start += batchSize) {
    const n = Math.min(batchSize, set.count - start);
    const batch = gatherBatch(set, rangeIndices(start, n));
    const [losses, predicted] = tf.tidy(() => {
      const x = tf.tensor4d(batch.pixels, [n, IMAGE_SIZE, IMAGE_SIZE, 1]);
      const y = tf.tensor2d(batch.oneHot, [n, NUM_CLASSES]);
      const probs = model.predict(x) as tf.Tensor;
      const perSample = tf.neg(tf.sum(tf.mul(y, tf.log(tf.clipByValue(probs, EPSILON, 1 - EPSILON))), -1));
      return [perSample, tf.argMax(probs, -1)];
    });
    const [lossValues, predictedValues] = await Promise.all([losses.data(), predicted.data()]);
    tf.dispose([losses, predicted]);
    for (let i = 0; i < n; i++) {
      lossSum += lossValues[i]!;
      const label = set.labels[start + i]!;
      const guess = predictedValues[i]!;
      confusion[label]![guess]!++;
      if (guess === label) correct++;
    }
  }
  const count = set.count;
  return { loss: count ? lossSum / count : NaN, accuracy: count ? correct / count : NaN, count, confusion };
}
