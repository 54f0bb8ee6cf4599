/**
 * The arithmetic of one parameter-server shard per step, over float32 buffers: summing the
 * workers' gradients (with the NaN/Inf check riding along) and Adam's update. It runs in
 * WebAssembly SIMD (src/ps/wasm/shard-kernel.wat: four lanes at a time, ~5x the scalar loops)
 * on buffers in the module's own memory: weights `w`, the gradient sum `g`, Adam's slots `m`
 * and `v`, and `x` for a contribution being added. Callers that keep their data in those
 * regions (a single shard's weights, the sum) save the copies in and out.
 *
 * Where WebAssembly SIMD is missing, the same rules run in JavaScript with every constant and
 * every operation rounded to float32 as the module computes them: both paths give bitwise the
 * same results (tested).
 */
import { compileBase64, instantiate, type WasmModule } from '../common/wasm.js';
import { WASM_BASE64 } from './generated/shard-kernel-wasm.js';

/** Adam's hyper-parameters and this update's bias corrections. */
export interface AdamStep {
  lr: number;
  beta1: number;
  beta2: number;
  epsilon: number;
  /** 1 / (1 - beta1^t) and 1 / (1 - beta2^t). */
  c1: number;
  c2: number;
}

export interface ShardKernel {
  readonly size: number;
  readonly simd: boolean;
  /** Regions of `size` floats (views that stay valid for the kernel's life). */
  readonly w: Float32Array;
  readonly g: Float32Array;
  readonly m: Float32Array;
  readonly v: Float32Array;
  /** g = scale * values (first) or g + scale * values; returns false when values hold NaN or ±Inf. */
  accumulate(values: Float32Array, scale: number, first: boolean): boolean;
  /**
   * Adam with the gradient fround(g / total): weights -= lr * m_hat / (sqrt(v_hat) + eps), in
   * place. Subnormal moments are flushed to zero (arithmetic on them is ~100x slower on x86).
   */
  adam(weights: Float32Array, total: number, step: AdamStep): void;
}

interface KernelExports {
  memory: { readonly buffer: ArrayBuffer; grow(pages: number): number };
  accumulate: (n: number, acc: number, x: number, scale: number, first: number) => number;
  adam: (n: number, w: number, g: number, m: number, v: number, total: number, beta1: number, b1c: number, beta2: number, b2c: number, lr: number, c1: number, c2: number, eps: number) => void;
}

let compiled: WasmModule | null | undefined;

/** The compiled module, or null where WebAssembly SIMD is unavailable. */
function kernelModule(): WasmModule | null {
  if (compiled === undefined) compiled = compileBase64(WASM_BASE64);
  return compiled;
}

/** 2^-126: subnormal gradient inputs and Adam moments below it are flushed to zero, as the module does (see the .wat). */
const SMALLEST_NORMAL = 2 ** -126;
/** 2^-56: smaller mean gradients count as zero, so that (1 - beta2) * g * g stays normal. */
const SMALLEST_GRADIENT = 2 ** -56;

const same = (a: Float32Array, b: Float32Array) => a.buffer === b.buffer && a.byteOffset === b.byteOffset;

class SimdKernel implements ShardKernel {
  readonly simd = true;
  readonly w: Float32Array;
  readonly g: Float32Array;
  readonly m: Float32Array;
  readonly v: Float32Array;
  private readonly x: Float32Array;
  private readonly exports: KernelExports;
  /** Floats per region, padded to whole lanes (the padding stays zero). */
  private readonly padded: number;

  constructor(module: WasmModule, readonly size: number) {
    this.exports = instantiate<KernelExports>(module);
    this.padded = Math.ceil(size / 4) * 4;
    const pages = Math.ceil((5 * this.padded * 4) / 65536);
    const have = this.exports.memory.buffer.byteLength / 65536;
    if (pages > have) this.exports.memory.grow(pages - have);
    // The memory never grows again, so these views stay valid.
    const region = (i: number) => new Float32Array(this.exports.memory.buffer, i * this.padded * 4, size);
    [this.w, this.g, this.m, this.v, this.x] = [region(0), region(1), region(2), region(3), region(4)];
  }

  accumulate(values: Float32Array, scale: number, first: boolean): boolean {
    if (!same(values, this.x)) this.x.set(values);
    return this.exports.accumulate(this.padded, this.g.byteOffset, this.x.byteOffset, scale, first ? 1 : 0) === 0;
  }

  adam(weights: Float32Array, total: number, s: AdamStep): void {
    const inPlace = same(weights, this.w);
    if (!inPlace) this.w.set(weights);
    this.exports.adam(this.padded, this.w.byteOffset, this.g.byteOffset, this.m.byteOffset, this.v.byteOffset, total, s.beta1, 1 - s.beta1, s.beta2, 1 - s.beta2, s.lr, s.c1, s.c2, s.epsilon);
    if (!inPlace) weights.set(this.w);
  }
}

class ScalarKernel implements ShardKernel {
  readonly simd = false;
  readonly w: Float32Array;
  readonly g: Float32Array;
  readonly m: Float32Array;
  readonly v: Float32Array;

  constructor(readonly size: number) {
    [this.w, this.g, this.m, this.v] = [0, 1, 2, 3].map(() => new Float32Array(size)) as [Float32Array, Float32Array, Float32Array, Float32Array];
  }

  accumulate(values: Float32Array, scale: number, first: boolean): boolean {
    const f = Math.fround;
    const acc = this.g;
    const s = f(scale);
    let finite = true;
    for (let i = 0; i < acc.length; i++) {
      let x = values[i]!;
      if (!Number.isFinite(x)) finite = false;
      else if (Math.abs(x) < SMALLEST_NORMAL) x = 0; // subnormals and -0 become +0, as in the module
      acc[i] = first ? f(s * x) : f(acc[i]! + f(s * x));
    }
    return finite;
  }

  adam(weights: Float32Array, total: number, step: AdamStep): void {
    const f = Math.fround;
    const { g, m, v } = this;
    const [beta1, beta2, epsilon, lr, b1c, b2c, t, c1, c2] = [step.beta1, step.beta2, step.epsilon, step.lr, 1 - step.beta1, 1 - step.beta2, total, step.c1, step.c2].map(f) as number[] as [number, number, number, number, number, number, number, number, number];
    for (let i = 0; i < weights.length; i++) {
      let gi = f(g[i]! / t);
      if (Math.abs(gi) < SMALLEST_GRADIENT) gi = 0;
      let mi = f(f(beta1 * m[i]!) + f(b1c * gi));
      let vi = f(f(beta2 * v[i]!) + f(f(b2c * gi) * gi));
      if (Math.abs(mi) < SMALLEST_NORMAL) mi = 0;
      if (Math.abs(vi) < SMALLEST_NORMAL) vi = 0;
      m[i] = mi;
      v[i] = vi;
      weights[i] = f(weights[i]! - f(f(lr * f(mi * c1)) / f(f(Math.sqrt(f(vi * c2))) + epsilon)));
    }
  }
}

/** A kernel for `size` floats: WebAssembly SIMD unless `simd` is false or the runtime lacks it. */
export function createShardKernel(size: number, simd = true): ShardKernel {
  const module = simd ? kernelModule() : null;
  return module ? new SimdKernel(module, size) : new ScalarKernel(size);
}
