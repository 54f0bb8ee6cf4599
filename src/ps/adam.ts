/**
 * Adam over flat float32 buffers, with TensorFlow.js' update rule (bias-corrected moments,
 * epsilon 1e-7 added to sqrt(v_hat)). Slots are allocated once; a step allocates nothing.
 */

export interface AdamOptions {
  /** Learning rate; default 1e-3. */
  lr?: number;
  beta1?: number;
  beta2?: number;
  epsilon?: number;
}

export class Adam {
  readonly lr: number;
  readonly beta1: number;
  readonly beta2: number;
  readonly epsilon: number;
  /** First and second moment slots, in the weights' flat layout. */
  readonly m: Float32Array;
  readonly v: Float32Array;
  /** Number of updates applied so far. */
  iterations = 0;

  constructor(size: number, options: AdamOptions = {}) {
    this.lr = options.lr ?? 1e-3;
    this.beta1 = options.beta1 ?? 0.9;
    this.beta2 = options.beta2 ?? 0.999;
    this.epsilon = options.epsilon ?? 1e-7;
    this.m = new Float32Array(size);
    this.v = new Float32Array(size);
  }

  /**
   * weights -= lr * m_hat / (sqrt(v_hat) + eps), in place, with the gradient g = fround(sum / total)
   * (the float32 mean; pass total 1 for a gradient that is already a mean).
   */
  apply(weights: Float32Array, sum: Float32Array, total = 1): void {
    const { m, v, beta1, beta2, epsilon, lr } = this;
    this.iterations++;
    const c1 = 1 / (1 - Math.pow(beta1, this.iterations));
    const c2 = 1 / (1 - Math.pow(beta2, this.iterations));
    const b1c = 1 - beta1;
    const b2c = 1 - beta2;
    for (let i = 0; i < weights.length; i++) {
      const g = Math.fround(sum[i]! / total);
      const mi = (m[i] = beta1 * m[i]! + b1c * g);
      const vi = (v[i] = beta2 * v[i]! + b2c * g * g);
      weights[i] = weights[i]! - (lr * (mi * c1)) / (Math.sqrt(vi * c2) + epsilon);
    }
  }
}
