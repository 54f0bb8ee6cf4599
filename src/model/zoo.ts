/**
 * The model zoo: `mnist-cnn` (the reference CNN of DESIGN.md) and a small `mlp` for fast tests.
 * Both end in softmax; the loss (loss.ts) is the cross-entropy of those probabilities, as Keras.
 */
import * as tf from '@tensorflow/tfjs';
import { IMAGE_SIZE, NUM_CLASSES } from '../data/mnist.js';
import { UnknownModelError } from './errors.js';

export const MODEL_NAMES = ['mnist-cnn', 'mlp'] as const;
export type ModelName = (typeof MODEL_NAMES)[number];

export function isModelName(name: string): name is ModelName {
  return (MODEL_NAMES as readonly string[]).includes(name);
}

/** Builds the model with throwaway initial weights; real ones come from init.ts or the PS. */
export function createModel(name: string): tf.Sequential {
  if (!isModelName(name)) throw new UnknownModelError(name, MODEL_NAMES);
  // Zeros keep construction cheap and deterministic; the weights are always overwritten.
  const init = { kernelInitializer: 'zeros', biasInitializer: 'zeros' } as const;
  const model = tf.sequential({ name });
  if (name === 'mnist-cnn') {
    model.add(tf.layers.conv2d({ inputShape: [IMAGE_SIZE, IMAGE_SIZE, 1], filters: 32, kernelSize: 3, activation: 'relu', name: 'conv1', ...init }));
    model.add(tf.layers.maxPooling2d({ poolSize: 2, strides: 2, name: 'pool1' }));
    model.add(tf.layers.flatten({ name: 'flatten' }));
    model.add(tf.layers.dense({ units: 128, activation: 'relu', name: 'dense1', ...init }));
    model.add(tf.layers.dense({ units: NUM_CLASSES, activation: 'softmax', name: 'dense2', ...init }));
  } else {
    model.add(tf.layers.flatten({ inputShape: [IMAGE_SIZE, IMAGE_SIZE, 1], name: 'flatten' }));
    model.add(tf.layers.dense({ units: 128, activation: 'relu', name: 'dense1', ...init }));
    model.add(tf.layers.dense({ units: NUM_CLASSES, activation: 'softmax', name: 'dense2', ...init }));
  }
  return model;
}
