/**
 * The sample-weighted mean of the workers' gradients, sum_r(n_r * g_r) / sum_r(n_r), summed in
 * rank order (never arrival order) so the result is bitwise reproducible. Averaging is float32;
 * the accumulator is allocated once.
 */

export interface Contribution {
  sampleCount: number;
  values: Float32Array;
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
    acc.fill(0);
    for (const { sampleCount, values } of contributions) {
      if (values.length !== this.size) throw new RangeError(`gradient has ${values.length} floats; expected ${this.size}`);
      if (sampleCount <= 0) continue;
      total += sampleCount;
      for (let i = 0; i < acc.length; i++) acc[i] = acc[i]! + sampleCount * values[i]!;
    }
    if (total === 0) throw new RangeError('no samples in this step');
    for (let i = 0; i < acc.length; i++) acc[i] = acc[i]! / total;
    return acc;
  }
}
