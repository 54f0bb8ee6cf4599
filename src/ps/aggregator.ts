/**
 * The sample-weighted mean of the workers' gradients, sum_r(n_r * g_r) / sum_r(n_r), summed in
 * rank order (never arrival order) so the result is bitwise reproducible. Averaging is float32;
 * the accumulator is allocated once. Non-finite values (NaN, ±Inf) are detected in the same
 * pass and reported per contribution, so a bad gradient is rejected before it touches weights.
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

export class GradientAggregator {
  readonly mean: Float32Array;

  constructor(readonly size: number) {
    this.mean = new Float32Array(size);
  }

  /** `contributions` must be in rank order. Returns the shared `mean` buffer. */
  average(contributions: readonly Contribution[]): Float32Array {
    const acc = this.mean;
    let total = 0;
    const bad: number[] = [];
    acc.fill(0);
    contributions.forEach(({ sampleCount, values }, index) => {
      if (values.length !== this.size) throw new RangeError(`gradient has ${values.length} floats; expected ${this.size}`);
      if (sampleCount <= 0) return;
      total += sampleCount;
      // x * 0 is 0 for finite x and NaN for NaN or ±Inf: one check folded into the summing pass.
      let check = 0;
      for (let i = 0; i < acc.length; i++) {
        const x = values[i]!;
        acc[i] = acc[i]! + sampleCount * x;
        check += x * 0;
      }
      if (check !== 0) bad.push(index);
    });
    if (bad.length > 0) throw new NonFiniteGradientError(bad);
    if (total === 0) throw new RangeError('no samples in this step');
    for (let i = 0; i < acc.length; i++) acc[i] = acc[i]! / total;
    return acc;
  }
}
