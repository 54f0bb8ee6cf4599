/**
 * The sample-weighted mean of the workers' gradients, sum_r(n_r * g_r) / sum_r(n_r), summed in
 * rank order (never arrival order) so the result is bitwise reproducible. Averaging is float32;
 * the accumulator is allocated once, in the shard kernel (SIMD where available). Non-finite
 * values (NaN, ±Inf) are detected in the same pass and reported per contribution, so a bad
 * gradient is rejected before it touches weights.
 *
 * The division by the sample count is left to the consumer (`sum` + `total`), which folds it
 * into its own pass: Adam reads `fround(sum[i] / total)`.
 */
import { createShardKernel, type ShardKernel } from './shard-kernel.js';

export interface Contribution {
  sampleCount: number;
  values: Float32Array;
}

/** Contributions (by index in the list given) holding NaN or infinite values. */
export class NonFiniteGradientError extends Error {
  override readonly name = 'NonFiniteGradientError';
  constructor(readonly indices: number[]) {
    super(`gradient with NaN or infinite values from contribution(s) ${indices.join(', ')}`);
  }
}

export interface WeightedSum {
  /** sum_r(n_r * g_r), float32, shared between calls. */
  sum: Float32Array;
  /** sum_r(n_r). */
  total: number;
}

export class GradientAggregator {
  private readonly acc: Float32Array;

  /** `kernel`: where the sum is formed (shared with the shard's Adam, which reads it from there). */
  constructor(readonly size: number, private readonly kernel: ShardKernel = createShardKernel(size)) {
    if (kernel.size !== size) throw new RangeError(`kernel of ${kernel.size} floats for a sum over ${size}`);
    this.acc = kernel.g;
  }

  /** `contributions` must be in rank order. */
  sum(contributions: readonly Contribution[]): WeightedSum {
    let total = 0;
    const bad: number[] = [];
    for (let index = 0; index < contributions.length; index++) {
      const { sampleCount, values } = contributions[index]!;
      if (values.length !== this.size) throw new RangeError(`gradient has ${values.length} floats; expected ${this.size}`);
      if (sampleCount <= 0) continue;
      const finite = this.kernel.accumulate(values, sampleCount, total === 0);
      total += sampleCount;
      if (!finite) bad.push(index);
    }
    if (bad.length > 0) throw new NonFiniteGradientError(bad);
    if (total === 0) throw new RangeError('no samples in this step');
    return { sum: this.acc, total };
  }

  /** The mean itself, as a new array (tests and tools; the hot path uses sum()). */
  average(contributions: readonly Contribution[]): Float32Array {
    const { sum, total } = this.sum(contributions);
    return sum.map((v) => Math.fround(v / total));
  }
}
