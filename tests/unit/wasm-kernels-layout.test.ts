/**
 * The product layouts the wasm kernels choose between: Conv2DBackpropFilter's
 * dy-left / dy-right formulations (each forced on every case, and chunked) and
 * the swapped a @ b^T = (b @ a^T)^T matmul; all compared with the cpu backend.
 */
import * as tf from '@tensorflow/tfjs';
import '@tensorflow/tfjs-backend-wasm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { countDifferent, maxAbsDiff, runOn, TOL, randomArray, size, type Shape4 } from '../helpers/kernel-inputs.js';
import { prefersSwappedPlainProduct, prefersSwappedProduct } from '../../src/model/kernels/batch-mat-mul.js';
import { conv2dBackpropFilterTuning, prefersDyLeft } from '../../src/model/kernels/conv2d-backprop-filter.js';
import { registerWasmKernels } from '../../src/model/kernels/register-wasm-kernels.js';
import { simdProductKind, simdTuning } from '../../src/model/kernels/simd.js';
import { readFileSync } from 'node:fs';
import { transposeInto, transposeOnHeap } from '../../src/model/kernels/transpose.js';
import type { BackendWasm } from '@tensorflow/tfjs-backend-wasm';

/** Max abs difference between the cpu and wasm results (shapes must match). */
async function onBoth(fn: () => tf.Tensor): Promise<number> {
  const cpu = await runOn('cpu', fn);
  const wasm = await runOn('wasm', fn);
  expect(wasm.shape).toEqual(cpu.shape);
  return maxAbsDiff(cpu.values, wasm.values);
}

interface ConvCase { x: Shape4; filter: Shape4; strides: number | [number, number]; pad: 'valid' | 'same' | number }

const convCases: ConvCase[] = [
  { x: [4, 28, 28, 1], filter: [3, 3, 1, 32], strides: 1, pad: 'valid' },
  { x: [3, 15, 13, 1], filter: [3, 3, 1, 32], strides: 2, pad: 'same' },
  // 3x3 single-channel windows all inside the image: the unrolled im2colRows.
  { x: [3, 15, 13, 1], filter: [3, 3, 1, 32], strides: 2, pad: 'valid' },
  { x: [2, 11, 9, 1], filter: [3, 3, 1, 8], strides: [1, 2], pad: 'valid' },
  { x: [2, 9, 9, 1], filter: [3, 3, 1, 6], strides: 1, pad: 'valid' }, // outC 6: no direct SIMD
  { x: [2, 7, 9, 2], filter: [2, 2, 2, 16], strides: [1, 2], pad: 1 },
  { x: [2, 5, 5, 3], filter: [1, 1, 3, 24], strides: 1, pad: 'valid' },
  { x: [2, 9, 7, 3], filter: [3, 3, 3, 5], strides: 2, pad: 'valid' },
  { x: [2, 13, 11, 2], filter: [5, 5, 2, 3], strides: 2, pad: 'same' },
  { x: [2, 8, 11, 2], filter: [2, 4, 2, 3], strides: 2, pad: 'same' },
];

/** dL/dfilter of sum(conv2d(x, f) * w): Conv2DBackpropFilter with dy = w. */
function convFilterGrad(c: ConvCase, seed: number): () => tf.Tensor {
  const xv = randomArray(size(c.x), seed);
  const fv = randomArray(size(c.filter), seed + 1);
  const dyShape = tf.backend_util.computeConv2DInfo(c.x, c.filter, c.strides, 1, c.pad).outShape;
  const wv = randomArray(size(dyShape), seed + 2);
  return () => tf.tidy(() => {
    const x = tf.tensor4d(xv, c.x);
    const w = tf.tensor(wv, dyShape);
    return tf.grad((f: tf.Tensor) => tf.sum(tf.mul(tf.conv2d(x, f as tf.Tensor4D, c.strides, c.pad), w)))(tf.tensor4d(fv, c.filter));
  });
}

beforeAll(() => {
  registerWasmKernels();
});

afterAll(async () => {
  await tf.setBackend('cpu');
});

describe('Conv2DBackpropFilter (wasm) formulations', () => {
  it('picks dy-left only when K is well below outC', () => {
    expect(prefersDyLeft(9, 32)).toBe(true); // the reference CNN's conv layer
    expect(prefersDyLeft(3, 24)).toBe(true);
    expect(prefersDyLeft(9, 8)).toBe(false);
    expect(prefersDyLeft(27, 32)).toBe(false);
    expect(prefersDyLeft(288, 64)).toBe(false);
  });

  // 'direct' (wasm SIMD from x and dy) applies to the 3x3 single-channel unpadded cases with outC % 4 == 0; elsewhere it falls back.
  (['dy-left', 'dy-right', 'direct'] as const).forEach((formulation) => {
    convCases.forEach((c, i) => {
      it(`forced ${formulation}: x [${c.x}] filter [${c.filter}] strides ${JSON.stringify(c.strides)} pad ${c.pad}`, async () => {
        conv2dBackpropFilterTuning.formulation = formulation;
        try {
          expect(await onBoth(convFilterGrad(c, 600 + i))).toBeLessThanOrEqual(TOL);
        } finally {
          conv2dBackpropFilterTuning.formulation = 'auto';
        }
      });
    });
  });
});

describe('Conv2DBackpropFilter (wasm) chunked over the batch', () => {
  const chunked: ConvCase[] = [
    { x: [5, 9, 9, 2], filter: [3, 3, 2, 4], strides: 1, pad: 'same' }, // dy-right
    { x: [5, 9, 9, 1], filter: [3, 3, 1, 16], strides: 1, pad: 'same' }, // dy-left
  ];
  chunked.forEach((c, i) => {
    it(`filter [${c.filter}]: 1-2 images per chunk matches cpu`, async () => {
      const saved = conv2dBackpropFilterTuning.maxPatchElements;
      conv2dBackpropFilterTuning.maxPatchElements = 4500; // (K + outC) * 81 per image
      try {
        expect(await onBoth(convFilterGrad(c, 7 + i))).toBeLessThanOrEqual(TOL);
      } finally {
        conv2dBackpropFilterTuning.maxPatchElements = saved;
      }
    });
  });
});

describe('BatchMatMul (wasm) swapped product', () => {
  it('swaps a @ b^T to (b @ a^T)^T only when b is the big operand', () => {
    expect(prefersSwappedProduct(128, 128, 5408)).toBe(true); // dense1 input gradient, batch 128
    expect(prefersSwappedProduct(8, 16, 200)).toBe(true);
    expect(prefersSwappedProduct(1, 16, 50)).toBe(true);
    expect(prefersSwappedProduct(1, 300, 400)).toBe(true);
    expect(prefersSwappedProduct(300, 1, 400)).toBe(false); // b^T is free (unit dim)
    expect(prefersSwappedProduct(64, 128, 10)).toBe(false);
    expect(prefersSwappedProduct(40, 40, 40)).toBe(false);
  });

  it('swaps an untransposed a @ b to (b^T @ a^T)^T only when b is much bigger than a', () => {
    expect(prefersSwappedPlainProduct(32, 5408, 128)).toBe(true); // dense1 forward, batch 32
    expect(prefersSwappedPlainProduct(128, 5408, 128)).toBe(false); // batch 128: x is as big as W
    expect(prefersSwappedPlainProduct(32, 128, 10)).toBe(false); // dense2 forward
    expect(prefersSwappedPlainProduct(32, 21632, 9)).toBe(false); // Conv2DBackpropFilter, dy left
    expect(prefersSwappedPlainProduct(8, 16, 200)).toBe(true);
  });

  it('untransposed swapped products match cpu (incl. unit dims and batch [1])', async () => {
    const shapes: Array<[number[], number[]]> = [[[32, 300], [300, 64]], [[1, 200], [200, 40]], [[1, 6, 90], [1, 90, 30]], [[5, 1], [1, 300]]];
    for (const [i, [as, bs]] of shapes.entries()) {
      const av = randomArray(size(as), 70 + i);
      const bv = randomArray(size(bs), 80 + i);
      expect(await onBoth(() => tf.tidy(() => tf.matMul(tf.tensor(av, as), tf.tensor(bv, bs))))).toBeLessThanOrEqual(TOL);
    }
  });

  // [a, b, transposeA, transposeB]: with transposeA, the kernel reads a's columns in place (the
  // dense layer's dW = x^T @ dy); a @ b^T with a big b runs as (b @ a^T)^T (its dx = dy @ W^T). K
  // above 256 cuts the product into k ranges (summed on top of each other); odd M leaves a 1-row block.
  const panelShapes: Array<[number[], number[], boolean, boolean]> = [
    [[32, 600], [600, 32], false, false], [[7, 300], [300, 128], false, false], [[1, 5, 400], [1, 400, 160], false, false],
    [[1, 2048], [2048, 128], false, false], [[33, 512], [1, 512, 16], false, false], [[40, 300], [40, 64], true, false],
    [[64, 33], [64, 128], true, false], [[32, 300], [640, 300], false, true], [[17, 128], [544, 128], false, true],
    [[131, 520], [520, 32], false, false], [[520, 47], [520, 32], true, false],
  ];

  it('products with N % 16 == 0 (SIMD panels), multiply and add apart: match cpu, and XNNPACK bitwise', async () => {
    simdTuning.fused = false;
    try {
      for (const [i, [as, bs, ta, tb]] of panelShapes.entries()) {
        const av = randomArray(size(as), 90 + i);
        const bv = randomArray(size(bs), 95 + i);
        const fn = () => tf.tidy(() => tf.matMul(tf.tensor(av, as), tf.tensor(bv, bs), ta, tb));
        expect(await onBoth(fn), `[${as}] @ [${bs}]`).toBeLessThanOrEqual(TOL);
        const simd = await runOn('wasm', fn);
        simdTuning.enabled = false;
        try {
          const stock = await runOn('wasm', fn);
          expect(simd.shape).toEqual(stock.shape);
          expect(countDifferent(simd.values, stock.values), `[${as}] @ [${bs}]`).toBe(0);
        } finally {
          simdTuning.enabled = true;
        }
      }
    } finally {
      simdTuning.fused = true;
    }
  });

  it('products with fused multiply-adds: every step of the k-ordered sum rounds once (FMA CPUs), and match cpu', async () => {
    await tf.setBackend('wasm');
    expect(simdProductKind(tf.backend() as BackendWasm)).toBe('fused'); // Node 20's V8 has relaxed SIMD behind a flag the project sets
    // relaxed_madd is one fused instruction on CPUs with FMA (x86-64 FMA3, every arm64), else a
    // multiply and an add: the reference follows the CPU. A float32 product is exact in float64.
    const fma = process.arch === 'arm64' || /^flags\s*:.*\bfma\b/m.test(readFileSync('/proc/cpuinfo', 'utf8'));
    const step = fma ? (acc: number, x: number, y: number) => Math.fround(acc + x * y) : (acc: number, x: number, y: number) => Math.fround(acc + Math.fround(x * y));
    let fusedDiffers = 0;
    for (const [i, [as, bs, ta, tb]] of panelShapes.entries()) {
      // a [17,128] @ b^T runs as (b @ a^T)^T, whose 17 columns are not whole SIMD panels: XNNPACK.
      if (tb && as.at(-2)! % 16 !== 0) continue;
      const av = randomArray(size(as), 90 + i);
      const bv = randomArray(size(bs), 95 + i);
      const fn = () => tf.tidy(() => tf.matMul(tf.tensor(av, as), tf.tensor(bv, bs), ta, tb));
      expect(await onBoth(fn), `[${as}] @ [${bs}]`).toBeLessThanOrEqual(TOL);
      const fused = await runOn('wasm', fn);
      const [m, k] = ta ? [as.at(-1)!, as.at(-2)!] : [as.at(-2)!, as.at(-1)!];
      const n = tb ? bs.at(-2)! : bs.at(-1)!;
      const aAt = (r: number, c: number) => (ta ? av[c * m + r]! : av[r * k + c]!);
      const bAt = (r: number, c: number) => (tb ? bv[c * k + r]! : bv[r * n + c]!);
      const expected = new Float32Array(m * n);
      for (let r = 0; r < m; r++) {
        for (let c = 0; c < n; c++) {
          let acc = 0;
          for (let t = 0; t < k; t++) acc = step(acc, aAt(r, t), bAt(t, c));
          expected[r * n + c] = acc;
        }
      }
      expect(countDifferent(fused.values, expected), `[${as}] @ [${bs}]`).toBe(0);
      simdTuning.fused = false;
      try {
        fusedDiffers += countDifferent(fused.values, (await runOn('wasm', fn)).values);
      } finally {
        simdTuning.fused = true;
      }
    }
    if (fma) expect(fusedDiffers, 'fused and separate multiply-adds round differently somewhere').toBeGreaterThan(0);
  });

  it('does not leak tensors or wasm data ids', async () => {
    await tf.setBackend('wasm');
    const a = tf.tensor2d(randomArray(40 * 40, 3), [40, 40]);
    const wide = tf.tensor2d(randomArray(300 * 40, 6), [300, 40]);
    const step = (): void => {
      tf.tidy(() => {
        tf.matMul(a, wide, false, true); // swapped product
        tf.matMul(a.slice([0, 0], [1, 40]), wide, false, true); // swapped, unit dim
        tf.matMul(wide, a, false, true); // not swapped
        tf.matMul(a.slice([0, 0], [2, 40]), wide.transpose()); // untransposed, swapped
        tf.matMul(wide, tf.ones([40, 32])); // untransposed, SIMD panels
      });
    };
    step();
    const backend = tf.backend();
    const tensorsBefore = tf.memory().numTensors;
    const idsBefore = backend.numDataIds();
    for (let i = 0; i < 10; i++) step();
    expect(tf.memory().numTensors).toBe(tensorsBefore);
    expect(backend.numDataIds()).toBe(idsBefore);
    tf.dispose([a, wide]);
  });
});

describe('transposeOnHeap (SIMD 4x4 blocks on the wasm heap)', () => {
  it('equals the JS transpose for multiples of 4 (SIMD) and other shapes (JS), from an offset', async () => {
    await tf.setBackend('wasm');
    const backend = tf.backend() as BackendWasm;
    const shapes: Array<[number, number]> = [[21632, 32], [32, 5408], [5408, 128], [4, 4], [8, 12], [12, 8], [5, 8], [8, 6], [1, 9]];
    for (const [i, [rows, cols]] of shapes.entries()) {
      const skip = 3 * cols;
      const src = backend.makeOutput([rows * cols + skip], 'float32');
      const dst = backend.makeOutput([cols, rows], 'float32');
      try {
        const values = randomArray(rows * cols + skip, 50 + i);
        (backend.typedArrayFromHeap(src) as Float32Array).set(values);
        const expected = new Float32Array(rows * cols);
        transposeInto(values, skip, rows, cols, expected);
        transposeOnHeap(backend, backend.typedArrayFromHeap(src) as Float32Array, skip, rows, cols, backend.typedArrayFromHeap(dst) as Float32Array);
        expect(Float32Array.from(backend.typedArrayFromHeap(dst) as Float32Array), `[${rows},${cols}]`).toEqual(expected);
      } finally {
        backend.disposeData(src.dataId);
        backend.disposeData(dst.dataId);
      }
    }
  });
});
