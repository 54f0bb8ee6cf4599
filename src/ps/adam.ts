/**
 * Adam over flat float32 buffers, with TensorFlow.js' update rule (bias-corrected moments,
 * epsilon 1e-7 added to sqrt(v_hat)). Slots are allocated once; a step allocates nothing.
 *
 * The update runs in WebAssembly SIMD (src/ps/wasm/adam.wat, four float32 lanes at a time,
 * ~4x the scalar loop) with the slots, a gradient buffer and a weights buffer in the module's
 * own memory. Where WebAssembly SIMD is missing it falls back to the same rule in JavaScript
 * (`AdamOptions.simd: false` forces that path); both are float32-exact up to the last bit of
 * a division or square root.
 */
import { WASM_BASE64 } from './generated/adam-wasm.js';

export interface AdamOptions {
  /** Learning rate; default 1e-3. */
  lr?: number;
  beta1?: number;
  beta2?: number;
  epsilon?: number;
  /** Use the WebAssembly SIMD kernel when the runtime has it. Default true. */
  simd?: boolean;
}

// The few WebAssembly JS-API types used here (this project's TypeScript libs do not declare them).
interface WasmMemory {
  readonly buffer: ArrayBuffer;
  grow(pages: number): number;
}
type WasmModule = object;
interface WasmApi {
  Module: new (bytes: Uint8Array) => WasmModule;
  Instance: new (module: WasmModule) => { exports: unknown };
}
const wasm = (globalThis as unknown as { WebAssembly?: WasmApi }).WebAssembly;

interface AdamExports {
  memory: WasmMemory;
  adam: (n: number, w: number, g: number, m: number, v: number, total: number, beta1: number, b1c: number, beta2: number, b2c: number, lr: number, c1: number, c2: number, eps: number) => void;
}

let compiled: WasmModule | null | undefined;

/** The compiled kernel, or null where WebAssembly SIMD is unavailable. */
function kernelModule(): WasmModule | null {
  if (compiled === undefined) {
    try {
      compiled = wasm ? new wasm.Module(Buffer.from(WASM_BASE64, 'base64')) : null;
    } catch {
      compiled = null;
    }
  }
  return compiled;
}

/** Four regions (weights, gradient, m, v) of `padded` floats each in one instance's memory. */
class SimdRegions {
  readonly exports: AdamExports;
  readonly w: Float32Array;
  readonly g: Float32Array;
  readonly m: Float32Array;
  readonly v: Float32Array;
  constructor(module: WasmModule, readonly padded: number) {
    this.exports = new wasm!.Instance(module).exports as unknown as AdamExports;
    const bytes = 4 * padded * 4;
    const pages = Math.ceil(bytes / 65536);
    const have = this.exports.memory.buffer.byteLength / 65536;
    if (pages > have) this.exports.memory.grow(pages - have);
    // The memory never grows again, so these views stay valid.
    const buffer = this.exports.memory.buffer;
    [this.w, this.g, this.m, this.v] = [0, 1, 2, 3].map((i) => new Float32Array(buffer, i * padded * 4, padded)) as [Float32Array, Float32Array, Float32Array, Float32Array];
  }
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
  private readonly simd: SimdRegions | undefined;

  constructor(readonly size: number, options: AdamOptions = {}) {
    this.lr = options.lr ?? 1e-3;
    this.beta1 = options.beta1 ?? 0.9;
    this.beta2 = options.beta2 ?? 0.999;
    this.epsilon = options.epsilon ?? 1e-7;
    const module = options.simd === false ? null : kernelModule();
    if (module) {
      this.simd = new SimdRegions(module, Math.ceil(size / 4) * 4);
      this.m = this.simd.m.subarray(0, size);
      this.v = this.simd.v.subarray(0, size);
    } else {
      this.m = new Float32Array(size);
      this.v = new Float32Array(size);
    }
  }

  /** True when updates run in WebAssembly SIMD. */
  get usesSimd(): boolean {
    return this.simd !== undefined;
  }

  /**
   * A buffer to sum gradients into: passing it to apply() as `sum` saves a copy. It lives in
   * the kernel's memory (or is undefined on the JavaScript path).
   */
  get gradientBuffer(): Float32Array | undefined {
    return this.simd?.g.subarray(0, this.size);
  }

  /**
   * weights -= lr * m_hat / (sqrt(v_hat) + eps), in place, with the gradient g = fround(sum / total)
   * (the float32 mean; pass total 1 for a gradient that is already a mean).
   */
  apply(weights: Float32Array, sum: Float32Array, total = 1): void {
    if (weights.length !== this.size || sum.length !== this.size) {
      throw new RangeError(`Adam over ${this.size} floats got weights of ${weights.length} and a gradient of ${sum.length}`);
    }
    this.iterations++;
    const c1 = 1 / (1 - Math.pow(this.beta1, this.iterations));
    const c2 = 1 / (1 - Math.pow(this.beta2, this.iterations));
    if (this.simd) this.applySimd(this.simd, weights, sum, total, c1, c2);
    else this.applyScalar(weights, sum, total, c1, c2);
  }

  private applySimd(r: SimdRegions, weights: Float32Array, sum: Float32Array, total: number, c1: number, c2: number): void {
    r.w.set(weights);
    if (sum.buffer !== r.g.buffer || sum.byteOffset !== r.g.byteOffset) r.g.set(sum);
    const base = r.w.byteOffset;
    r.exports.adam(r.padded, base, r.g.byteOffset, r.m.byteOffset, r.v.byteOffset, total, this.beta1, 1 - this.beta1, this.beta2, 1 - this.beta2, this.lr, c1, c2, this.epsilon);
    weights.set(r.w.subarray(0, this.size));
  }

  private applyScalar(weights: Float32Array, sum: Float32Array, total: number, c1: number, c2: number): void {
    // Every constant and every operation rounded to float32, as the WebAssembly kernel computes.
    const f = Math.fround;
    const { m, v } = this;
    const [beta1, beta2, epsilon, lr, b1c, b2c] = [this.beta1, this.beta2, this.epsilon, this.lr, 1 - this.beta1, 1 - this.beta2].map(f) as [number, number, number, number, number, number];
    [total, c1, c2] = [f(total), f(c1), f(c2)];
    for (let i = 0; i < weights.length; i++) {
      const g = f(sum[i]! / total);
      const mi = (m[i] = f(f(beta1 * m[i]!) + f(b1c * g)));
      const vi = (v[i] = f(f(beta2 * v[i]!) + f(f(b2c * g) * g)));
      weights[i] = f(weights[i]! - f(f(lr * f(mi * c1)) / f(f(Math.sqrt(f(vi * c2))) + epsilon)));
    }
  }
}
