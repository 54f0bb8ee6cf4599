/** Builds float batches on demand from uint8 images: pixels scaled to [0,1], labels one-hot. */
import { NUM_CLASSES, PIXELS, type LabeledImages } from './mnist.js';

export interface Batch {
  /** n x 784 pixels in [0,1]. */
  pixels: Float32Array;
  /** n x 10 one-hot labels. */
  oneHot: Float32Array;
  count: number;
}

const SCALE = 1 / 255;

/** Gathers the samples at `indices` (or the contiguous range [start, start+count)). */
export function gatherBatch(set: LabeledImages, indices: ArrayLike<number>): Batch {
  const n = indices.length;
  const pixels = new Float32Array(n * PIXELS);
  const oneHot = new Float32Array(n * NUM_CLASSES);
  for (let i = 0; i < n; i++) {
    const idx = indices[i]!;
    if (!(idx >= 0 && idx < set.count)) throw new RangeError(`sample index ${idx} is outside 0..${set.count - 1}`);
    const src = idx * PIXELS;
    const dst = i * PIXELS;
    for (let p = 0; p < PIXELS; p++) pixels[dst + p] = set.images[src + p]! * SCALE;
    oneHot[i * NUM_CLASSES + set.labels[idx]!] = 1;
  }
  return { pixels, oneHot, count: n };
}

export function rangeIndices(start: number, count: number): Uint32Array {
  const out = new Uint32Array(count);
  for (let i = 0; i < count; i++) out[i] = start + i;
  return out;
}
