/**
 * Adam over flat float32 buffers, with TensorFlow.js' update rule (bias-corrected moments,
 * epsilon 1e-7 added to sqrt(v_hat)). Slots are allocated once; a step allocates nothing. The
 * arithmetic is the shard kernel's (WebAssembly SIMD, or the bitwise-equal JavaScript rule).
 */
import { createShardKernel, type ShardKernel } from './shard-kernel.js';

export interface AdamOptions {
  /** Learning rate; default 1e-3. */
  lr?: number;
  beta1?: number;
  beta2?: number;
  epsilon?: number;
  /** Use WebAssembly SIMD when the runtime has it. Default true. */
  simd?: boolean;
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

  /** `kernel`: one shared with the shard's aggregator (its `g` is the sum Adam reads). */
  constructor(readonly size: number, options: AdamOptions = {}, readonly kernel: ShardKernel = createShardKernel(size, options.simd ?? true)) {
    if (kernel.size !== size) throw new RangeError(`kernel of ${kernel.size} floats for Adam over ${size}`);
    this.lr = options.lr ?? 1e-3;
    this.beta1 = options.beta1 ?? 0.9;
    this.beta2 = options.beta2 ?? 0.999;
    this.epsilon = options.epsilon ?? 1e-7;
    this.m = kernel.m;
    this.v = kernel.v;
  }

  /** True when updates run in WebAssembly SIMD. */
  get usesSimd(): boolean {
    return this.kernel.simd;
  }

  /**
   * weights -= lr * m_hat / (sqrt(v_hat) + eps), in place, with the gradient g = fround(sum / total)
   * (the float32 mean; pass total 1 for a gradient that is already a mean). `sum` may be the
   * kernel's own `g` (no copy).
   */
  apply(weights: Float32Array, sum: Float32Array, total = 1): void {
    if (weights.length !== this.size || sum.length !== this.size) {
      throw new RangeError(`Adam over ${this.size} floats got weights of ${weights.length} and a gradient of ${sum.length}`);
    }
    const g = this.kernel.g;
    if (sum.buffer !== g.buffer || sum.byteOffset !== g.byteOffset) g.set(sum);
    this.iterations++;
    const c1 = 1 / (1 - Math.pow(this.beta1, this.iterations));
    const c2 = 1 / (1 - Math.pow(this.beta2, this.iterations));
    this.kernel.adam(weights, total, { lr: this.lr, beta1: this.beta1, beta2: this.beta2, epsilon: this.epsilon, c1, c2 });
  }
}
