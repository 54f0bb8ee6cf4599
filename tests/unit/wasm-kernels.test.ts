import * as tf from '@tensorflow/tfjs';
import '@tensorflow/tfjs-backend-wasm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { maxAbsDiff, runOn, TOL, randomArray, size, type Shape4 } from '../helpers/kernel-inputs.js';
import { kernelNamesProvided, registerWasmKernels } from '../../src/model/kernels/register-wasm-kernels.js';

async function onBoth(fn: () => tf.Tensor): Promise<number> {
  const cpu = await runOn('cpu', fn);
  const wasm = await runOn('wasm', fn);
  expect(wasm.values.length).toBe(cpu.values.length);
  return maxAbsDiff(cpu.values, wasm.values);
}

interface ConvCase {
  name: string;
  x: Shape4;
  filter: Shape4;
  strides: number | [number, number];
  pad: 'valid' | 'same' | number;
}

const convCases: ConvCase[] = [
  { name: 'reference CNN 3x3x1x32 stride 1 valid', x: [8, 28, 28, 1], filter: [3, 3, 1, 32], strides: 1, pad: 'valid' },
  { name: 'stride 2 same', x: [4, 28, 28, 1], filter: [3, 3, 1, 8], strides: 2, pad: 'same' },
  { name: 'inC 3 same', x: [2, 9, 7, 3], filter: [3, 3, 3, 5], strides: 1, pad: 'same' },
  { name: 'inC 3 stride 2 valid', x: [2, 9, 7, 3], filter: [3, 3, 3, 5], strides: 2, pad: 'valid' },
  { name: '5x5 filter same', x: [3, 12, 12, 2], filter: [5, 5, 2, 4], strides: 1, pad: 'same' },
  { name: '5x5 filter stride 2 same odd size', x: [2, 13, 11, 2], filter: [5, 5, 2, 3], strides: 2, pad: 'same' },
  { name: 'batch 1, strides [2,1]', x: [1, 10, 10, 4], filter: [3, 3, 4, 6], strides: [2, 1], pad: 'valid' },
  { name: 'non-square filter stride 2 same', x: [2, 8, 11, 2], filter: [2, 4, 2, 3], strides: 2, pad: 'same' },
  { name: 'numeric pad 1', x: [2, 6, 6, 2], filter: [3, 3, 2, 2], strides: 1, pad: 1 },
  { name: 'stride 3 same', x: [2, 10, 10, 1], filter: [3, 3, 1, 4], strides: 3, pad: 'same' },
];

function outShape(c: ConvCase): number[] {
  return tf.backend_util.computeConv2DInfo(c.x, c.filter, c.strides, 1, c.pad).outShape;
}

/** dL/dfilter of sum(conv2d(x, f) * w), i.e. the filter gradient for dy = w. */
function convFilterGrad(c: ConvCase, seed: number): () => tf.Tensor {
  const xv = randomArray(size(c.x), seed);
  const fv = randomArray(size(c.filter), seed + 1);
  const dyShape = outShape(c);
  const wv = randomArray(size(dyShape), seed + 2);
  return () => tf.tidy(() => {
    const x = tf.tensor4d(xv, c.x);
    const w = tf.tensor(wv, dyShape);
    const grad = tf.grad((f: tf.Tensor) => tf.sum(tf.mul(tf.conv2d(x, f as tf.Tensor4D, c.strides, c.pad), w)));
    return grad(tf.tensor4d(fv, c.filter));
  });
}

interface MatMulCase {
  a: number[];
  b: number[];
  ta: boolean;
  tb: boolean;
}

function matMulCases(): MatMulCase[] {
  const cases: MatMulCase[] = [];
  const dims: Array<[number[], number, number, number]> = [
    [[], 17, 23, 9], [[], 64, 128, 10], [[1], 12, 5, 7], [[3], 6, 11, 4], [[2, 2], 5, 3, 8], [[], 1, 9, 6], [[], 7, 4, 1],
    // Big b with transposeB: computed as (b @ a^T)^T (see prefersSwappedProduct), incl. unit dims.
    [[], 8, 16, 200], [[1], 6, 9, 150], [[], 1, 16, 50], [[], 1, 30, 40], [[], 300, 1, 400],
  ];
  for (const [batch, m, k, n] of dims) {
    for (const ta of [false, true]) {
      for (const tb of [false, true]) {
        cases.push({ a: [...batch, ...(ta ? [k, m] : [m, k])], b: [...batch, ...(tb ? [n, k] : [k, n])], ta, tb });
      }
    }
  }
  return cases;
}

let stockConfigs: tf.KernelConfig[] = [];

beforeAll(() => {
  // Every stock kernel we replace (the wasm backend has no Conv2DBackpropFilter of its own).
  stockConfigs = kernelNamesProvided()
    .map((name) => tf.getKernel(name, 'wasm'))
    .filter((config): config is tf.KernelConfig => config != null);
  expect(stockConfigs.map((c) => c.kernelName)).toEqual(expect.arrayContaining(['BatchMatMul', '_FusedMatMul', 'MaxPoolGrad', 'Sum']));
  // Registered before the wasm backend is ever initialised (no setBackend yet).
  registerWasmKernels();
});

afterAll(async () => {
  await tf.setBackend('cpu');
});

describe('registerWasmKernels', () => {
  it('is idempotent and registers every provided kernel for wasm', async () => {
    const before = kernelNamesProvided().map((name) => tf.getKernel(name, 'wasm'));
    registerWasmKernels();
    const after = kernelNamesProvided().map((name) => tf.getKernel(name, 'wasm'));
    expect(kernelNamesProvided()).toEqual(
      expect.arrayContaining(['Conv2DBackpropFilter', 'BatchMatMul', '_FusedMatMul', 'MaxPoolGrad', 'Sum', 'Identity', 'Cast', 'Add', 'Conv2D']));
    after.forEach((config, i) => expect(config).toBe(before[i]));
    expect(after.every((config) => config != null)).toBe(true);
    expect(await tf.setBackend('wasm')).toBe(true);
  });

  it('throws a clear error for NCHW', async () => {
    await tf.setBackend('wasm');
    const x = tf.zeros([1, 1, 4, 4]);
    const dy = tf.zeros([1, 2, 2, 2]);
    const attrs = { strides: 1, pad: 'valid', dataFormat: 'NCHW', filterShape: [3, 3, 1, 2] };
    expect(() => tf.engine().runKernel('Conv2DBackpropFilter', { x, dy }, attrs)).toThrow(/NCHW/);
    tf.dispose([x, dy]);
  });
});

describe('Conv2DBackpropFilter (wasm) matches cpu', () => {
  convCases.forEach((c, i) => {
    it(`${c.name}: x [${c.x}] filter [${c.filter}]`, async () => {
      expect(await onBoth(convFilterGrad(c, 100 + i))).toBeLessThanOrEqual(TOL);
    });
  });
});

describe('BatchMatMul / _FusedMatMul (wasm) match cpu', () => {
  matMulCases().forEach((c, i) => {
    it(`matMul a [${c.a}] b [${c.b}] transposeA=${c.ta} transposeB=${c.tb}`, async () => {
      const av = randomArray(size(c.a), 500 + i);
      const bv = randomArray(size(c.b), 900 + i);
      const diff = await onBoth(() => tf.tidy(() => tf.matMul(tf.tensor(av, c.a), tf.tensor(bv, c.b), c.ta, c.tb)));
      expect(diff).toBeLessThanOrEqual(TOL);
    });
  });

  it('same tensor as b with a unit-dim transpose (XNNPACK operator cache keyed by id)', async () => {
    const bv = randomArray(6, 77);
    const diff = await onBoth(() => tf.tidy(() => {
      const b = tf.tensor2d(bv, [6, 1]);
      const first = tf.matMul(tf.ones([2, 6]), b); // caches an operator for b as [6, 1]
      return tf.concat([first.flatten(), tf.matMul(tf.ones([3, 1]), b, false, true).flatten()]);
    }));
    expect(diff).toBeLessThanOrEqual(TOL);
  });

  const fused: Array<[boolean, boolean]> = [[false, false], [true, false], [false, true], [true, true]];
  fused.forEach(([ta, tb]) => {
    it(`fused matMul + bias + relu transposeA=${ta} transposeB=${tb}`, async () => {
      const [m, k, n] = [9, 14, 6];
      const aShape = ta ? [k, m] : [m, k];
      const bShape = tb ? [n, k] : [k, n];
      const av = randomArray(size(aShape), 31);
      const bv = randomArray(size(bShape), 32);
      const biasV = randomArray(n, 33);
      const diff = await onBoth(() => tf.tidy(() => tf.fused.matMul({
        a: tf.tensor2d(av, aShape as [number, number]),
        b: tf.tensor2d(bv, bShape as [number, number]),
        transposeA: ta,
        transposeB: tb,
        bias: tf.tensor1d(biasV),
        activation: 'relu',
      })));
      expect(diff).toBeLessThanOrEqual(TOL);
    });
  });
});

describe('Conv2D (wasm) matches cpu', () => {
  // 3x3 single-channel unpadded: im2col + matmul; the others: the stock kernel.
  const cases: Array<{ x: Shape4; filter: Shape4; strides: number | [number, number]; pad: 'valid' | 'same' | number; dilations?: number }> = [
    { x: [8, 28, 28, 1], filter: [3, 3, 1, 32], strides: 1, pad: 'valid' },
    { x: [3, 15, 13, 1], filter: [3, 3, 1, 8], strides: 2, pad: 'valid' },
    { x: [1, 9, 11, 1], filter: [3, 3, 1, 5], strides: [1, 2], pad: 'valid' },
    { x: [2, 10, 10, 1], filter: [3, 3, 1, 4], strides: 1, pad: 'same' },
    { x: [2, 9, 7, 3], filter: [3, 3, 3, 5], strides: 1, pad: 'valid' },
    { x: [2, 12, 12, 1], filter: [3, 3, 1, 4], strides: 1, pad: 'valid', dilations: 2 },
  ];
  cases.forEach((c, i) => {
    it(`x [${c.x}] filter [${c.filter}] strides ${JSON.stringify(c.strides)} pad ${c.pad} dilations ${c.dilations ?? 1}`, async () => {
      const xv = randomArray(size(c.x), 400 + i);
      const fv = randomArray(size(c.filter), 500 + i);
      const diff = await onBoth(() => tf.tidy(() => tf.conv2d(tf.tensor4d(xv, c.x), tf.tensor4d(fv, c.filter), c.strides, c.pad, 'NHWC', c.dilations ?? 1)));
      expect(diff).toBeLessThanOrEqual(TOL);
    });
  });
});

describe('Add (wasm) matches cpu', () => {
  const cases: Array<[number[], number[]]> = [
    [[4, 6, 6, 32], [32]], // conv bias add: SIMD rows
    [[32], [4, 6, 6, 32]], // bias first
    [[3, 5, 8], [3, 5, 8]], // same shape: SIMD
    [[2, 3, 8], [1, 3, 8]], // row block broadcast
    [[1, 4], [4]], // output shape from the broadcast
    [[4], [1, 1, 4]],
    [[3, 5, 7], [7]], // row of 7: stock
    [[3, 5, 8], [5, 1]], // other broadcast: stock
    [[6, 8], []], // scalar: stock
  ];
  cases.forEach(([as, bs], i) => {
    it(`[${as}] + [${bs}]`, async () => {
      const av = randomArray(size(as), 200 + i);
      const bv = randomArray(size(bs), 300 + i);
      const cpu = await runOn('cpu', () => tf.tidy(() => tf.add(tf.tensor(av, as), tf.tensor(bv, bs))));
      const wasm = await runOn('wasm', () => tf.tidy(() => tf.add(tf.tensor(av, as), tf.tensor(bv, bs))));
      expect(wasm.shape).toEqual(cpu.shape);
      expect(wasm.values).toEqual(cpu.values); // one float32 addition per element: exact
    });
  });

  it('int32 goes to the stock kernel', async () => {
    const diff = await onBoth(() => tf.tidy(() => tf.add(tf.tensor([[1, 2, 3, 4]], [1, 4], 'int32'), tf.tensor([5, 6, 7, 8], [4], 'int32'))));
    expect(diff).toBe(0);
  });
});

describe('ReLU gradient (wasm, one pass) is the bits of mul(dy, cast(step(x)))', () => {
  /** x with zeros of both signs, a subnormal, infinities and NaN among random values. */
  function inputs(n: number, seed: number): [Float32Array, Float32Array] {
    const x = randomArray(n, seed);
    const dy = randomArray(n, seed + 1);
    [0, -0, 1e-45, -1e-45, Infinity, -Infinity, NaN].forEach((v, i) => (x[(i * 37) % n] = v));
    dy[5] = NaN;
    dy[6] = -0;
    return [x, dy];
  }
  /** Bits of each value, NaN as one pattern (the payload of a NaN may differ between paths). */
  const bits = (v: Float32Array) => Array.from(v, (f) => (Number.isNaN(f) ? 'NaN' : new Uint32Array(Float32Array.of(f).buffer)[0]!));

  it.each([4 * 1024, 4 * 1024 + 3, [2, 26, 26, 32].reduce((a, b) => a * b)])('%i elements: tf.grad on wasm against the stock formula on wasm and cpu', async (n) => {
    const [xv, dyv] = inputs(n, 40 + (n % 7));
    const viaGrad = () => tf.tidy(() => tf.grad((x: tf.Tensor) => tf.relu(x))(tf.tensor(xv), tf.tensor(dyv)));
    const stock = () => tf.tidy(() => tf.mul(tf.tensor(dyv), tf.cast(tf.step(tf.tensor(xv)), 'float32')));
    const fused = await runOn('wasm', viaGrad);
    expect(bits(fused.values)).toEqual(bits((await runOn('wasm', stock)).values));
    expect(bits(fused.values)).toEqual(bits((await runOn('cpu', stock)).values));
    expect(bits((await runOn('cpu', viaGrad)).values)).toEqual(bits(fused.values)); // cpu keeps tfjs-core's formula
  });
});

describe('memory', () => {
  it('does not leak tensors or wasm data ids', async () => {
    await tf.setBackend('wasm');
    const c = convCases[0];
    const x = tf.tensor4d(randomArray(size(c.x), 1), c.x);
    const f = tf.tensor4d(randomArray(size(c.filter), 2), c.filter);
    const a = tf.tensor2d(randomArray(40 * 40, 3), [40, 40]);
    const a1 = tf.tensor3d(randomArray(40 * 40, 4), [1, 40, 40]);
    const a3 = tf.tensor3d(randomArray(2 * 40 * 40, 5), [2, 40, 40]);
    const step = (): void => {
      tf.tidy(() => {
        tf.grad((ff: tf.Tensor) => tf.sum(tf.conv2d(x, ff as tf.Tensor4D, 1, 'valid')))(f);
        tf.grad((ff: tf.Tensor) => tf.sum(tf.conv2d(x, ff as tf.Tensor4D, 2, 'same')))(f);
        for (const ta of [false, true]) {
          for (const tb of [false, true]) {
            tf.matMul(a, a, ta, tb);
            tf.matMul(a1, a1, ta, tb);
            tf.matMul(a3, a3, ta, tb);
            tf.fused.matMul({ a: a1, b: a1, transposeA: ta, transposeB: tb, activation: 'relu' });
            tf.add(a, a.slice([0, 0], [1, 40]));
          }
        }
      });
    };
    step(); // warm-up (first calls may cache XNNPACK operators)
    const backend = tf.backend();
    const tensorsBefore = tf.memory().numTensors;
    const idsBefore = backend.numDataIds();
    for (let i = 0; i < 25; i++) step();
    expect(tf.memory().numTensors).toBe(tensorsBefore);
    expect(backend.numDataIds()).toBe(idsBefore);
    tf.dispose([x, f, a, a1, a3]);
  });
});

describe('registration after the wasm backend is live', () => {
  it('works when registerWasmKernels runs after setBackend("wasm")', async () => {
    // Put the stock kernels back, bring wasm up with them, then register.
    for (const name of kernelNamesProvided()) tf.unregisterKernel(name, 'wasm');
    stockConfigs.forEach((config) => tf.registerKernel(config));
    await tf.setBackend('cpu');
    await tf.setBackend('wasm');
    expect(tf.getKernel('Conv2DBackpropFilter', 'wasm')).toBeUndefined();
    registerWasmKernels();
    expect(tf.getKernel('Conv2DBackpropFilter', 'wasm')).toBeDefined();
    expect(await onBoth(convFilterGrad(convCases[1], 42))).toBeLessThanOrEqual(TOL);
    const av = randomArray(30 * 20, 5);
    const bv = randomArray(25 * 30, 6);
    const mm = (): tf.Tensor => tf.tidy(() => tf.matMul(tf.tensor2d(av, [30, 20]), tf.tensor2d(bv, [25, 30]), true, true));
    expect(await onBoth(mm)).toBeLessThanOrEqual(TOL);
    const pv = randomArray(2 * 6 * 6 * 3, 7);
    const pool = (): tf.Tensor => tf.tidy(() =>
      tf.grad((x: tf.Tensor) => tf.sum(tf.maxPool(x as tf.Tensor4D, 2, 2, 'valid')).mul(tf.sum(x, [0, 1, 2]).sum()))(tf.tensor4d(pv, [2, 6, 6, 3])));
    expect(await onBoth(pool)).toBeLessThanOrEqual(TOL);
    expect(kernelNamesProvided().every((name) => tf.getKernel(name, 'wasm') != null)).toBe(true);
  });
});
