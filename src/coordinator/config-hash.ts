/**
 * The identity of a job's training trajectory: what must match for a checkpoint to be resumed.
 * The world size is not part of it (workers may come and go); the epoch count is not either,
 * so a finished run can be resumed to train longer.
 */
import { createHash } from 'node:crypto';
import type { LabeledImages } from '../data/mnist.js';

export interface HashedConfig {
  model: string;
  batchSize: number;
  lr: number;
  seed: number;
  gradDtype: string;
  parameters: number;
  train: LabeledImages;
}

export function configHash(c: HashedConfig): string {
  const data = createHash('sha256').update(c.train.labels).update(c.train.images).digest('hex');
  return createHash('sha256')
    .update(JSON.stringify({ model: c.model, batchSize: c.batchSize, lr: c.lr, seed: c.seed, gradDtype: c.gradDtype, parameters: c.parameters, trainSamples: c.train.count, data }))
    .digest('hex')
    .slice(0, 16);
}

export function describeConfig(c: HashedConfig): string {
  return `model ${c.model}, batch size ${c.batchSize}, lr ${c.lr}, seed ${c.seed}, gradients ${c.gradDtype}, ${c.train.count} training samples`;
}
