/**
 * Keras' categorical cross-entropy on probabilities: the model already ends in softmax, so the
 * probabilities are clipped to [eps, 1-eps] and log-ed directly (applying a softmax loss on top
 * would apply softmax twice).
 */
import * as tf from '@tensorflow/tfjs';

export const EPSILON = 1e-7;

/** Mean over the batch of -sum(y * log(p)). */
export function categoricalCrossEntropy(probs: tf.Tensor, oneHot: tf.Tensor): tf.Scalar {
  return tf.tidy(() => {
    const clipped = tf.clipByValue(probs, EPSILON, 1 - EPSILON);
    const perSample = tf.neg(tf.sum(tf.mul(oneHot, tf.log(clipped)), -1));
    return tf.mean(perSample) as tf.Scalar;
  });
}
