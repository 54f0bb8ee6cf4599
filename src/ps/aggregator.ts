/**
 * The sample-weighted mean of the workers' gradients, sum_r(n_r * g_r) / sum_r(n_r), summed in
 * rank order (never arrival order) so the result is bitwise reproducible. Averaging is float32;
 * the accumulator is allocated once. Non-finite values (NaN, ±Inf) are detected in the same
 * pass and reported per contribution, so a bad gradient is rejected before it touches weights.
 *
 * The division by the sample count is left to the consumer (`sum` + `total`), which folds it
 * into its own pass: Adam reads `fround(sum[i] / total)`.
 */

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

// x * 0 is 0 for finite x and NaN for NaN or ±Inf: the check rides along the summing pass.
function assign(acc: Float32Array, values: Float32Array, n: number): number {
  let check = 0;
  for (let i = 0; i < acc.length; i++) {
    const x = values[i]!;
    acc[i] = n * x;
    check += x * 0;
  }
  return check;
}

function accumulate(acc: Float32Array, values: Float32Array, n: number): number {
  let check = 0;
  for (let i = 0; i < acc.length; i++) {
    const x = values[i]!;
    acc[i] = acc[i]! + n * x;
    check += x * 0;
  }
  return check;
}

export class GradientAggregator {
  private readonly acc: Float32Array;

  /** `into`: the accumulator to use (for example Adam's gradientBuffer, which saves a copy); allocated when omitted. */
  constructor(readonly size: number, into?: Float32Array) {
    if (into && into.length !== size) throw new RangeError(`accumulator has ${into.length} floats; expected ${size}`);
    this.acc = into ?? new Float32Array(size);
  }

  /** `contributions` must be in rank order. */
  sum(contributions: readonly Contribution[]): WeightedSum {
    let total = 0;
    const bad: number[] = [];
    for (let index = 0; index < contributions.length; index++) {
      const { sampleCount, values } = contributions[index]!;
      if (values.length !== this.size) throw new RangeError(`gradient has ${values.length} floats; expected ${this.size}`);
      if (sampleCount <= 0) continue;
      const check = total === 0 ? assign(this.acc, values, sampleCount) : accumulate(this.acc, values, sampleCount);
      total += sampleCount;
      if (check !== 0) bad.push(index);
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
