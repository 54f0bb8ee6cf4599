import * as tf from '@tensorflow/tfjs';
import { describe, expect, it } from 'vitest';
import { Adam } from '../../src/ps/adam.js';
import { createShardKernel } from '../../src/ps/shard-kernel.js';
import { GradientAggregator, NonFiniteGradientError } from '../../src/ps/aggregator.js';
import { ParameterServer } from '../../src/ps/parameter-server.js';
import { StepBarrier } from '../../src/ps/step-barrier.js';
import { Random } from '../../src/data/random.js';

const bytes = (a: Float32Array) => Buffer.from(a.buffer, a.byteOffset, a.byteLength);

function randomArray(n: number, seed: number): Float32Array {
  const r = Random.fromSeed(seed);
  return Float32Array.from({ length: n }, () => r.next() * 2 - 1);
}

describe('Adam on the parameter server', () => {
  it.each([true, false])('matches tf.train.adam step for step (simd %s)', async (simd) => {
    await tf.setBackend('cpu');
    const n = 257;
    const w = randomArray(n, 1);
    const adam = new Adam(n, { lr: 0.01, simd });
    expect(adam.usesSimd).toBe(simd);
    // slice(): the cpu backend would otherwise share `w`'s memory with the variable
    const variable = tf.variable(tf.tensor1d(w.slice()));
    const reference = tf.train.adam(0.01, 0.9, 0.999, 1e-7);
    for (let step = 0; step < 25; step++) {
      const g = randomArray(n, 100 + step);
      adam.apply(w, g);
      reference.applyGradients([{ name: variable.name, tensor: tf.tensor1d(g.slice()) }]);
    }
    const expected = await variable.data();
    let maxDiff = 0;
    for (let i = 0; i < n; i++) maxDiff = Math.max(maxDiff, Math.abs(expected[i]! - w[i]!));
    // float32 rounding differs in places (tfjs computes 1 - beta^t and the bias corrections in float32): ~1e-6 over moves of ~0.25
    expect(maxDiff).toBeLessThan(1e-5);
    expect(adam.iterations).toBe(25);
    variable.dispose();
    reference.dispose();
  });

  it('gives bitwise the same weights and slots in WebAssembly SIMD as in JavaScript, for sizes not a multiple of 4', () => {
    for (const n of [1, 6, 1001]) {
      const fast = new Adam(n, { lr: 0.003 });
      const slow = new Adam(n, { lr: 0.003, simd: false });
      const a = randomArray(n, 7);
      const b = a.slice();
      for (let step = 0; step < 30; step++) {
        // Sums over 3 samples, including exact zeros (padding lanes must not leak into real ones).
        const g = randomArray(n, 300 + step).map((x, i) => (i % 5 === 0 ? 0 : 3 * x));
        fast.apply(a, g, 3);
        slow.apply(b, g, 3);
      }
      expect(Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(Buffer.from(b.buffer, b.byteOffset, b.byteLength))).toBe(true);
      expect(Array.from(fast.m)).toEqual(Array.from(slow.m));
      expect(Array.from(fast.v)).toEqual(Array.from(slow.v));
    }
  });

  it('reads the sum from its kernel without a copy, and other buffers by copying', () => {
    const n = 10;
    const adam = new Adam(n);
    const direct = adam.kernel.g;
    direct.set(randomArray(n, 3));
    const copy = direct.slice();
    const w1 = randomArray(n, 4);
    const w2 = w1.slice();
    adam.apply(w1, direct, 2);
    const other = new Adam(n);
    other.apply(w2, copy, 2);
    expect(Array.from(w1)).toEqual(Array.from(w2));
  });
});

describe('the shard kernel', () => {
  it('sums in WebAssembly SIMD bitwise as in JavaScript, and flags NaN and ±Inf in either', () => {
    for (const n of [3, 8, 1003]) {
      const fast = createShardKernel(n);
      const slow = createShardKernel(n, false);
      expect([fast.simd, slow.simd]).toEqual([true, false]);
      const inputs = [0, 1, 2].map((k) => randomArray(n, 50 + k));
      inputs.forEach((x, k) => {
        expect(fast.accumulate(x, 7 + k, k === 0)).toBe(true);
        expect(slow.accumulate(x, 7 + k, k === 0)).toBe(true);
      });
      expect(Buffer.from(fast.g.buffer, fast.g.byteOffset, fast.g.byteLength).equals(Buffer.from(slow.g.buffer, slow.g.byteOffset, slow.g.byteLength))).toBe(true);
      // Tiny and subnormal inputs (flushed to zero in both) and negative zeros.
      const odd = randomArray(n, 13).map((x, i) => [x * 1e-20, x * 1e-40, -0, x][i % 4]!);
      expect(fast.accumulate(odd, 3, false)).toBe(true);
      expect(slow.accumulate(odd, 3, false)).toBe(true);
      expect(Buffer.from(fast.g.buffer, fast.g.byteOffset, fast.g.byteLength).equals(Buffer.from(slow.g.buffer, slow.g.byteOffset, slow.g.byteLength))).toBe(true);
      for (const bad of [NaN, Infinity, -Infinity]) {
        const x = randomArray(n, 9);
        x[n - 1] = bad; // the last element: a lane next to the padding
        expect(fast.accumulate(x, 1, false)).toBe(false);
        expect(slow.accumulate(x, 1, false)).toBe(false);
      }
    }
  });
});

describe('Adam moments', () => {
  it('flush to zero instead of decaying into subnormal floats, bitwise alike in SIMD and JavaScript', () => {
    const n = 9;
    const kernels = [new Adam(n), new Adam(n, { simd: false })];
    const weights = kernels.map(() => randomArray(n, 11));
    const first = randomArray(n, 12);
    const zero = new Float32Array(n);
    kernels.forEach((adam, k) => {
      adam.apply(weights[k]!, first);
      // beta1^900 * 1e-1 is about 1e-42: subnormal unless flushed
      for (let step = 0; step < 900; step++) adam.apply(weights[k]!, zero);
    });
    for (const adam of kernels) {
      for (const x of adam.m) expect(x === 0 || Math.abs(x) >= 2 ** -126).toBe(true);
      expect(adam.m.every((x) => x === 0)).toBe(true);
      for (const x of adam.v) expect(x === 0 || Math.abs(x) >= 2 ** -126).toBe(true);
    }
    expect(bytes(weights[0]!).equals(bytes(weights[1]!))).toBe(true);
    expect(bytes(kernels[0]!.v).equals(bytes(kernels[1]!.v))).toBe(true);
  });

  it('treats mean gradients below 2^-56 as zero, bitwise alike in SIMD and JavaScript', () => {
    const n = 12;
    const kernels = [new Adam(n), new Adam(n, { simd: false })];
    const weights = kernels.map(() => randomArray(n, 21));
    const g = randomArray(n, 22).map((x, i) => x * [1, 1e-10, 1e-17, 1e-19, 1e-30, 1e-40][i % 6]!);
    kernels.forEach((adam, k) => {
      for (let step = 0; step < 5; step++) adam.apply(weights[k]!, g, 2);
    });
    expect(bytes(weights[0]!).equals(bytes(weights[1]!))).toBe(true);
    expect(bytes(kernels[0]!.m).equals(bytes(kernels[1]!.m))).toBe(true);
    for (const adam of kernels) {
      for (let i = 0; i < n; i++) if (Math.abs(g[i]! / 2) < 2 ** -56) expect(adam.m[i]).toBe(0);
      for (const x of adam.v) expect(x === 0 || Math.abs(x) >= 2 ** -126).toBe(true);
    }
  });
});

describe('aggregation', () => {
  it('is the sample-weighted mean', () => {
    const agg = new GradientAggregator(2);
    const mean = agg.average([
      { sampleCount: 1, values: Float32Array.from([1, 10]) },
      { sampleCount: 3, values: Float32Array.from([5, 2]) },
    ]);
    expect(Array.from(mean)).toEqual([4, 4]);
  });

  it('names the contributions holding NaN or Inf, and a rejected commit leaves the server unchanged', () => {
    const agg = new GradientAggregator(3);
    const ok = { sampleCount: 1, values: Float32Array.from([1, 2, 3]) };
    for (const bad of [NaN, Infinity, -Infinity]) {
      const err = (() => {
        try {
          agg.average([ok, { sampleCount: 2, values: Float32Array.from([0, bad, 0]) }, ok]);
        } catch (e) {
          return e;
        }
      })();
      expect(err).toBeInstanceOf(NonFiniteGradientError);
      expect((err as NonFiniteGradientError).indices).toEqual([1]);
    }
    const ps = new ParameterServer(Float32Array.from([1, 2, 3]));
    expect(() => ps.commit([{ sampleCount: 1, values: Float32Array.from([NaN, 0, 0]) }])).toThrow(NonFiniteGradientError);
    expect(Array.from(ps.weights)).toEqual([1, 2, 3]);
    expect(ps.version).toBe(0);
    expect(ps.optimizer.iterations).toBe(0);
    expect(Array.from(agg.average([ok, ok]))).toEqual([1, 2, 3]);
  });

  it('the barrier hands contributions back in rank order whatever the arrival order', async () => {
    const barrier = new StepBarrier([0, 1, 2]);
    const c = (rank: number) => ({ rank, sampleCount: 1, loss: rank, values: new Float32Array(1) });
    barrier.deliver(c(2));
    barrier.deliver(c(0));
    expect(barrier.isSettled).toBe(false);
    barrier.deliver(c(1));
    expect((await barrier.done).map((x) => x.rank)).toEqual([0, 1, 2]);
    expect(() => new StepBarrier([0]).deliver(c(3))).toThrow(/rank 3 is not part/);
  });

  it('an aborted barrier rejects and ignores late deliveries', async () => {
    const barrier = new StepBarrier([0, 1]);
    barrier.abort(new Error('worker left'));
    barrier.deliver({ rank: 0, sampleCount: 1, loss: 0, values: new Float32Array(1) });
    await expect(barrier.done).rejects.toThrow('worker left');
  });

  it('commits bump the version and do not allocate new buffers', () => {
    const ps = new ParameterServer(Float32Array.from([1, 2, 3]));
    const weights = ps.weights;
    const v = ps.commit([{ sampleCount: 2, values: Float32Array.from([1, -1, 0]) }]);
    expect(v).toBe(1);
    expect(ps.weights).toBe(weights);
    expect(weights[0]).toBeLessThan(1);
    expect(weights[1]).toBeGreaterThan(2);
    expect(weights[2]).toBe(3);
    expect(() => ps.commit([{ sampleCount: 0, values: new Float32Array(3) }])).toThrow(/no samples/);
  });
});
