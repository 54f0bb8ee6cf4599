import * as tf from '@tensorflow/tfjs';
import '@tensorflow/tfjs-backend-wasm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { maxAbsDiff, runOn, TOL, randomArray, size, type Shape4, type Backend } from '../helpers/kernel-inputs.js';
import type { BackendWasm } from '@tensorflow/tfjs-backend-wasm';
import { leadingReducedAxes } from '../../src/model/kernels/sum.js';
import { simdKernelsFor, simdTuning } from '../../src/model/kernels/simd.js';
import { registerWasmKernels } from '../../src/model/kernels/register-wasm-kernels.js';
import { categoricalCrossEntropy } from '../../src/model/loss.js';
import { createModel } from '../../src/model/zoo.js';


/** Runs `fn` on cpu and wasm; asserts equal shapes/dtypes and returns the max abs difference. */
async function onBoth(fn: () => tf.Tensor): Promise<number> {
  const cpu = await runOn('cpu', fn);
  const wasm = await runOn('wasm', fn);
  expect(wasm.shape).toEqual(cpu.shape);
  expect(wasm.dtype).toBe(cpu.dtype);
  expect(wasm.values.length).toBe(cpu.values.length);
  return maxAbsDiff(cpu.values, wasm.values);
}

/** Values with many ties: integers in [0, levels), plus a relu-like run of zeros. */
function tiedArray(n: number, seed: number, levels: number): Float32Array {
  return randomArray(n, seed).map((v, i) => (i % 7 < 2 ? 0 : Math.floor((v + 0.5) * levels)));
}

interface PoolCase {
  name: string;
  x: Shape4;
  filter: number | [number, number];
  strides: number | [number, number];
  pad: 'valid' | 'same' | number;
  values?: (n: number, seed: number) => Float32Array;
}

const poolCases: PoolCase[] = [
  { name: 'reference [B,26,26,32] 2x2 s2 valid', x: [8, 26, 26, 32], filter: 2, strides: 2, pad: 'valid' },
  { name: 'odd 27x27 2x2 s2 valid (last row/col dropped)', x: [3, 27, 27, 5], filter: 2, strides: 2, pad: 'valid' },
  { name: 'odd 27x25 2x2 s2 same (clipped windows)', x: [2, 27, 25, 3], filter: 2, strides: 2, pad: 'same' },
  { name: '3x3 s3 valid', x: [2, 11, 10, 4], filter: 3, strides: 3, pad: 'valid' },
  { name: '3x3 s3 same', x: [2, 10, 11, 4], filter: 3, strides: 3, pad: 'same' },
  { name: '2x3 s[2,3] valid', x: [2, 9, 10, 2], filter: [2, 3], strides: [2, 3], pad: 'valid' },
  { name: '1x1 s1', x: [2, 5, 5, 3], filter: 1, strides: 1, pad: 'valid' },
  { name: 'ties 2x2 s2 valid', x: [4, 26, 26, 8], filter: 2, strides: 2, pad: 'valid', values: (n, s) => tiedArray(n, s, 3) },
  { name: 'ties 27x27 2x2 s2 same', x: [2, 27, 27, 4], filter: 2, strides: 2, pad: 'same', values: (n, s) => tiedArray(n, s, 2) },
  { name: 'ties 3x3 s3 valid', x: [2, 9, 9, 3], filter: 3, strides: 3, pad: 'valid', values: (n, s) => tiedArray(n, s, 2) },
  { name: 'all zeros (every window tied)', x: [2, 8, 8, 3], filter: 2, strides: 2, pad: 'valid', values: (n) => new Float32Array(n) },
  {
    name: '-Infinity and NaN windows', x: [2, 6, 6, 2], filter: 2, strides: 2, pad: 'valid',
    values: (n, s) => randomArray(n, s).map((v, i) => (i % 5 === 0 ? NaN : i % 3 === 0 ? -Infinity : v)),
  },
  // The stock C++ kernel gets this one wrong (border windows lose their gradient).
  {
    // Windows (2x2 s2 over 4x4): all NaN, all -Infinity, NaN + max 1, [-Inf, 2, 2 (tie), NaN].
    name: 'all-NaN / all -Infinity windows', x: [1, 4, 4, 1], filter: 2, strides: 2, pad: 'valid',
    values: () => Float32Array.from([NaN, NaN, -Infinity, -Infinity, NaN, NaN, -Infinity, -Infinity, NaN, 1, -Infinity, 2, 0, NaN, 2, NaN]),
  },
  // Tiled 2x2 s2 with channels a multiple of 4: the wasm SIMD path (incl. uncovered odd rows/columns).
  { name: 'SIMD: odd 27x25 2x2 s2 valid, C 8', x: [3, 27, 25, 8], filter: 2, strides: 2, pad: 'valid' },
  { name: 'SIMD: 26x26 2x2 s2 same, C 4, ties', x: [2, 26, 26, 4], filter: 2, strides: 2, pad: 'same', values: (n, s) => tiedArray(n, s, 2) },
  {
    name: 'SIMD: -Infinity and NaN windows, C 4', x: [2, 6, 7, 4], filter: 2, strides: 2, pad: 'valid',
    values: (n, s) => randomArray(n, s).map((v, i) => (i % 5 === 0 ? NaN : i % 3 === 0 ? -Infinity : v)),
  },
  { name: 'SIMD: all-NaN and all -Infinity windows, C 4', x: [1, 4, 4, 4], filter: 2, strides: 2, pad: 'valid', values: (n) => Float32Array.from({ length: n }, (_, i) => (i < 16 ? NaN : i < 32 ? -Infinity : i % 3)) },
  { name: 'overlapping: 3x3 s1 same', x: [2, 9, 9, 4], filter: 3, strides: 1, pad: 'same' },
  { name: 'overlapping: 3x3 s2 valid', x: [2, 11, 11, 3], filter: 3, strides: 2, pad: 'valid' },
  { name: 'overlapping with ties: 2x2 s1 same', x: [2, 7, 8, 3], filter: 2, strides: 1, pad: 'same', values: (n, s) => tiedArray(n, s, 2) },
  { name: 'overlapping: 3x3 s2 same, numeric pad 1', x: [2, 10, 9, 2], filter: 3, strides: 2, pad: 1 },
];

/** dL/dx of sum(maxPool(x) * w): MaxPoolGrad with dy = w. */
function poolInputGrad(c: PoolCase, seed: number): () => tf.Tensor {
  const xv = (c.values ?? randomArray)(size(c.x), seed);
  const outShape = tf.backend_util.computePool2DInfo(c.x, c.filter, c.strides, 1, c.pad).outShape;
  const wv = randomArray(size(outShape), seed + 1);
  return () => tf.tidy(() => {
    const w = tf.tensor(wv, outShape);
    return tf.grad((x: tf.Tensor) => tf.sum(tf.mul(tf.maxPool(x as tf.Tensor4D, c.filter, c.strides, c.pad), w)))(tf.tensor4d(xv, c.x));
  });
}

beforeAll(() => {
  registerWasmKernels();
});

afterAll(async () => {
  await tf.setBackend('cpu');
});

describe('MaxPoolGrad (wasm) matches cpu', () => {
  poolCases.forEach((c, i) => {
    it(`${c.name}: x [${c.x}]`, async () => {
      expect(await onBoth(poolInputGrad(c, 300 + i))).toBeLessThanOrEqual(TOL);
    });
  });

  it('the SIMD path gives bitwise the JS loops\' result (and the SIMD module loads)', async () => {
    await tf.setBackend('wasm');
    expect(simdKernelsFor(tf.backend() as BackendWasm)).toBeDefined();
    for (const [i, c] of poolCases.filter((p) => p.name.startsWith('SIMD') || p.name.startsWith('reference')).entries()) {
      const simd = await runOn('wasm', poolInputGrad(c, 900 + i));
      simdTuning.enabled = false;
      try {
        const js = await runOn('wasm', poolInputGrad(c, 900 + i));
        expect(simd.values, c.name).toEqual(js.values);
      } finally {
        simdTuning.enabled = true;
      }
    }
  });

});

describe('Sum (wasm) matches cpu', () => {
  const shape = [4, 5, 6, 7];
  const xv = randomArray(size(shape), 11);
  const axisSets: Array<number | number[] | undefined> = [
    0, [0], [0, 1], [0, 1, 2], [1, 0], [2, 0, 1], [-4, -3], [-4, -3, -2], 1, [1, 2], 3, -1, [2, 3], [0, 2], [1, 3], [0, 1, 2, 3], undefined, [],
  ];
  for (const keepDims of [false, true]) {
    axisSets.forEach((axis) => {
      it(`x [${shape}] axis ${JSON.stringify(axis)} keepDims=${keepDims}`, async () => {
        expect(await onBoth(() => tf.tidy(() => tf.sum(tf.tensor(xv, shape), axis, keepDims)))).toBeLessThanOrEqual(TOL);
      });
    });
  }

  it('SIMD column counts (multiples of 8): equal to cpu and bitwise to the JS loop', async () => {
    const cases: Array<[number[], number[], boolean]> = [[[3, 5, 16], [0, 1], false], [[700, 8], [0], true], [[2, 3, 4, 24], [0, 1, 2], false], [[1, 40], [0], false]];
    for (const [i, [s, axes, keepDims]] of cases.entries()) {
      const v = randomArray(size(s), 40 + i);
      const fn = () => tf.tidy(() => tf.sum(tf.tensor(v, s), axes, keepDims));
      expect(await onBoth(fn)).toBeLessThanOrEqual(TOL);
      const simd = await runOn('wasm', fn);
      simdTuning.enabled = false;
      try {
        expect(simd.values).toEqual((await runOn('wasm', fn)).values);
      } finally {
        simdTuning.enabled = true;
      }
    }
  });

  it('bias-gradient shape [16,26,26,32] over axes 0,1,2', async () => {
    const s = [16, 26, 26, 32];
    const v = randomArray(size(s), 12);
    expect(await onBoth(() => tf.tidy(() => tf.sum(tf.tensor(v, s), [0, 1, 2])))).toBeLessThanOrEqual(TOL);
  });

  it('2-D over axis 0, int32 (stock fallback), bool and empty inputs', async () => {
    const v = randomArray(30 * 9, 13);
    expect(await onBoth(() => tf.tidy(() => tf.sum(tf.tensor2d(v, [30, 9]), 0)))).toBeLessThanOrEqual(TOL);
    const ints = Int32Array.from(v, (x) => Math.round(x * 100));
    expect(await onBoth(() => tf.tidy(() => tf.sum(tf.tensor2d(ints, [30, 9], 'int32'), 0)))).toBe(0);
    expect(await onBoth(() => tf.tidy(() => tf.sum(tf.tensor2d(v, [30, 9]).greater(0), [0], true)))).toBe(0);
    expect(await onBoth(() => tf.tidy(() => tf.sum(tf.zeros([0, 5]), 0)))).toBe(0);
  });

  it('leadingReducedAxes recognises exactly the leading-block axis sets', () => {
    expect(leadingReducedAxes([0, 1, 2], [2, 3, 4, 5])).toBe(3);
    expect(leadingReducedAxes([1, -4], [2, 3, 4, 5])).toBe(2);
    expect(leadingReducedAxes(0, [2, 3])).toBe(1);
    expect(leadingReducedAxes([0, 0], [2, 3, 4])).toBe(0);
    expect(leadingReducedAxes([0, 2], [2, 3, 4])).toBe(0);
    expect(leadingReducedAxes([0, 1], [2, 3])).toBe(0);
    expect(leadingReducedAxes(undefined, [2, 3])).toBe(0);
    expect(leadingReducedAxes([], [2, 3])).toBe(0);
  });
});

describe('Identity / Cast (wasm)', () => {
  it('a clone outlives its source; casts match cpu', async () => {
    await tf.setBackend('wasm');
    const x = tf.tensor2d(randomArray(12, 14), [3, 4]);
    const expected = Array.from(x.dataSync());
    const clone = x.clone();
    const same = tf.cast(x, 'float32');
    x.dispose();
    expect(Array.from(clone.dataSync())).toEqual(expected);
    expect(Array.from(same.dataSync())).toEqual(expected);
    tf.dispose([clone, same]);
    const v = randomArray(50, 15).map((a) => a * 10);
    expect(await onBoth(() => tf.tidy(() => tf.cast(tf.tensor1d(v), 'int32')))).toBe(0);
    // The stock wasm cast to bool truncates (3.7 -> 3, -2.5 -> 254); ours computes x != 0 like cpu.
    const withSpecials = Float32Array.from([...v, 0, -0, NaN, Infinity, -Infinity, 0.2, -0.7]);
    expect(await onBoth(() => tf.tidy(() => tf.cast(tf.tensor1d(withSpecials), 'bool')))).toBe(0);
    expect(await onBoth(() => tf.tidy(() => tf.cast(tf.cast(tf.tensor1d(v), 'bool'), 'bool')))).toBe(0);
    expect(await onBoth(() => tf.tidy(() => tf.cast(tf.tensor1d([3, 0, -2], 'int32'), 'bool')))).toBe(0);
    expect(await onBoth(() => tf.tidy(() => tf.cast(tf.tensor1d(v).greater(0), 'float32')))).toBe(0);
  });
});

describe('memory', () => {
  it('does not leak tensors or wasm data ids', async () => {
    await tf.setBackend('wasm');
    const x = tf.tensor4d(randomArray(2 * 27 * 27 * 4, 1), [2, 27, 27, 4]);
    const step = (): void => {
      tf.tidy(() => {
        tf.grad((a: tf.Tensor) => tf.sum(tf.maxPool(a as tf.Tensor4D, 2, 2, 'valid')))(x);
        tf.grad((a: tf.Tensor) => tf.sum(tf.maxPool(a as tf.Tensor4D, 3, 1, 'same')))(x);
        tf.sum(x, [0, 1, 2]);
        tf.sum(x, [0, 1], true);
        tf.sum(x, [1, 3]);
        tf.sum(x.cast('int32'), 0);
        x.clone().cast('float32').clone();
      });
    };
    step();
    const backend = tf.backend();
    const tensorsBefore = tf.memory().numTensors;
    const idsBefore = backend.numDataIds();
    for (let i = 0; i < 10; i++) step();
    expect(tf.memory().numTensors).toBe(tensorsBefore);
    expect(backend.numDataIds()).toBe(idsBefore);
    x.dispose();
  });
});

describe('reference CNN training step', () => {
  it('variable gradients on wasm (our kernels) match cpu within 1e-4', async () => {
    const batch = 16;
    const pixels = randomArray(batch * 28 * 28, 21).map((v) => v + 0.5);
    const labels = Array.from({ length: batch }, (_, i) => (i * 7 + 3) % 10);
    const gradsOn = async (backend: Backend): Promise<Map<string, Float32Array>> => {
      await tf.setBackend(backend);
      const model = createModel('mnist-cnn');
      try {
        const vars = model.trainableWeights.map((w) => w.read() as tf.Variable);
        vars.forEach((v, i) => v.assign(tf.tidy(() => tf.tensor(randomArray(v.size, 40 + i), v.shape).mul(0.3))));
        const grads = tf.tidy(() => {
          const x = tf.tensor4d(pixels, [batch, 28, 28, 1]);
          const y = tf.oneHot(tf.tensor1d(labels, 'int32'), 10).toFloat();
          return tf.variableGrads(() => categoricalCrossEntropy(model.apply(x, { training: true }) as tf.Tensor, y), vars).grads;
        });
        const out = new Map(vars.map((v, i) => [`${i}:${v.shape}`, Float32Array.from(grads[v.name]!.dataSync())]));
        tf.dispose(grads);
        return out;
      } finally {
        model.dispose();
      }
    };
    const cpu = await gradsOn('cpu');
    const wasm = await gradsOn('wasm');
    expect([...wasm.keys()]).toEqual([...cpu.keys()]);
    for (const [name, expected] of cpu) {
      const actual = wasm.get(name)!;
      let m = 0;
      let scale = 0;
      for (let i = 0; i < expected.length; i++) {
        m = Math.max(m, Math.abs(expected[i] - actual[i]));
        scale = Math.max(scale, Math.abs(expected[i]));
      }
      expect(scale, `${name} gradient is not trivially zero`).toBeGreaterThan(1e-4);
      expect(m, name).toBeLessThanOrEqual(TOL);
    }
  });
});
