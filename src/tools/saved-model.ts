/**
 * What the `evaluate` and `predict` tools share: loading a model saved by `coordinator
 * --save-model DIR` (TensorFlow.js layers format), checking it takes 28x28x1 images and gives 10
 * class probabilities, and reading 28x28 digit images from PNG files.
 */
import { existsSync, readFileSync, statSync } from 'node:fs';
import { join, resolve } from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { PNG } from 'pngjs';
import { IMAGE_SIZE, NUM_CLASSES, PIXELS } from '../data/mnist.js';
import { registerFileSystemRouter } from '../model/file-io.js';

/** A problem with the tool's input, reported as one line (exit 1). */
export class ToolInputError extends Error {
  override readonly name = 'ToolInputError';
}

/** `DIR` or `DIR/model.json` to the model.json path; throws ToolInputError when there is none. */
export function modelJsonPath(target: string): string {
  const abs = resolve(target);
  const path = existsSync(abs) && statSync(abs).isDirectory() ? join(abs, 'model.json') : abs;
  if (!existsSync(path)) throw new ToolInputError(`${target}: no model.json there (save a model with: coordinator --save-model DIR)`);
  return path;
}

export async function loadSavedModel(target: string): Promise<{ model: tf.LayersModel; path: string }> {
  const path = modelJsonPath(target);
  registerFileSystemRouter();
  let model: tf.LayersModel;
  try {
    model = await tf.loadLayersModel(`file://${path}`);
  } catch (err) {
    throw new ToolInputError(`${path}: not a loadable TensorFlow.js layers model (${(err as Error).message.split('\n')[0]})`);
  }
  const input = model.inputs[0]?.shape ?? [];
  const output = model.outputs[0]?.shape ?? [];
  if (model.inputs.length !== 1 || input.length !== 4 || input[1] !== IMAGE_SIZE || input[2] !== IMAGE_SIZE || input[3] !== 1) {
    model.dispose();
    throw new ToolInputError(`${path}: the model takes inputs of shape [${input.join(', ')}]; expected [null, ${IMAGE_SIZE}, ${IMAGE_SIZE}, 1] (MNIST images)`);
  }
  if (model.outputs.length !== 1 || output.length !== 2 || output[1] !== NUM_CLASSES) {
    model.dispose();
    throw new ToolInputError(`${path}: the model gives outputs of shape [${output.join(', ')}]; expected [null, ${NUM_CLASSES}] (class probabilities)`);
  }
  return { model, path };
}

/** Class probabilities of one 28x28 image (uint8 pixels, white digit on black as in MNIST). Reads asynchronously (WebGPU has no synchronous read). */
export async function classify(model: tf.LayersModel, pixels: Uint8Array): Promise<Float32Array> {
  if (pixels.length !== PIXELS) throw new RangeError(`expected ${PIXELS} pixels, got ${pixels.length}`);
  const probs = tf.tidy(() => model.predict(tf.tensor4d(Float32Array.from(pixels, (p) => p / 255), [1, IMAGE_SIZE, IMAGE_SIZE, 1])) as tf.Tensor);
  try {
    return (await probs.data()) as Float32Array;
  } finally {
    probs.dispose();
  }
}

export type InvertMode = 'auto' | 'yes' | 'no';

/**
 * Reads a 28x28 PNG (grayscale, RGB, with or without alpha, any bit depth) as MNIST pixels: the
 * luminance, transparent areas counting as black. MNIST digits are white on black; with `auto` an
 * image whose border is mostly bright (a dark digit on a light background) is inverted.
 */
export function readDigitPng(path: string, invert: InvertMode = 'auto'): { pixels: Uint8Array; inverted: boolean } {
  let png: ReturnType<typeof PNG.sync.read>;
  try {
    png = PNG.sync.read(readFileSync(path));
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new ToolInputError(`${path}: ${code === 'ENOENT' ? 'file not found' : `not a readable PNG file (${(err as Error).message})`}`);
  }
  if (png.width !== IMAGE_SIZE || png.height !== IMAGE_SIZE) {
    throw new ToolInputError(`${path}: the image is ${png.width}x${png.height}; predict takes ${IMAGE_SIZE}x${IMAGE_SIZE} images (MNIST's size), resize it first`);
  }
  const pixels = new Uint8Array(PIXELS);
  const d = png.data; // RGBA, 8 bits per channel
  for (let i = 0; i < PIXELS; i++) {
    const lum = 0.299 * d[4 * i]! + 0.587 * d[4 * i + 1]! + 0.114 * d[4 * i + 2]!;
    pixels[i] = Math.round((lum * d[4 * i + 3]!) / 255);
  }
  let inverted = invert === 'yes';
  if (invert === 'auto') {
    let sum = 0;
    let n = 0;
    for (let r = 0; r < IMAGE_SIZE; r++) {
      for (let c = 0; c < IMAGE_SIZE; c++) {
        if (r === 0 || c === 0 || r === IMAGE_SIZE - 1 || c === IMAGE_SIZE - 1) {
          sum += pixels[r * IMAGE_SIZE + c]!;
          n++;
        }
      }
    }
    inverted = sum / n > 127;
  }
  if (inverted) for (let i = 0; i < PIXELS; i++) pixels[i] = 255 - pixels[i]!;
  return { pixels, inverted };
}

/** Writes 28x28 uint8 pixels as a grayscale PNG (tests and examples). */
export function writeDigitPng(pixels: Uint8Array): Buffer {
  const png = new PNG({ width: IMAGE_SIZE, height: IMAGE_SIZE });
  for (let i = 0; i < PIXELS; i++) {
    png.data[4 * i] = png.data[4 * i + 1] = png.data[4 * i + 2] = pixels[i]!;
    png.data[4 * i + 3] = 255;
  }
  return PNG.sync.write(png, { colorType: 0 });
}
