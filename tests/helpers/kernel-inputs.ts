/** What the wasm-kernel tests share: a tolerance, shapes, seeded inputs identical on every backend, and running one computation on a backend. */
import * as tf from '@tensorflow/tfjs';

export const TOL = 1e-4;
export type Backend = 'cpu' | 'wasm';
export type Shape4 = [number, number, number, number];

/** Deterministic uniform values in [-0.5, 0.5) (mulberry32). */
export function randomArray(size: number, seed: number): Float32Array {
  let s = seed >>> 0;
  const out = new Float32Array(size);
  for (let i = 0; i < size; i++) {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    out[i] = ((t ^ (t >>> 14)) >>> 0) / 4294967296 - 0.5;
  }
  return out;
}

export const size = (shape: number[]): number => shape.reduce((p, d) => p * d, 1);

export interface BackendResult {
  values: Float32Array;
  shape: number[];
  dtype: string;
}

/** Runs `fn` on `backend` (switching to it) and returns a copy of the result. */
export async function runOn(backend: Backend, fn: () => tf.Tensor): Promise<BackendResult> {
  await tf.setBackend(backend);
  const out = fn();
  const result = { values: Float32Array.from(out.dataSync()), shape: out.shape, dtype: out.dtype };
  out.dispose();
  return result;
}

/** max_i |a_i - b_i| (over the shorter of the two). */
export function maxAbsDiff(a: Float32Array, b: Float32Array): number {
  let m = 0;
  for (let i = 0; i < Math.min(a.length, b.length); i++) m = Math.max(m, Math.abs(a[i]! - b[i]!));
  return m;
}

/** How many elements differ bitwise (an assertion on the count keeps a failure's report short). */
export function countDifferent(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let n = Math.abs(a.length - b.length);
  for (let i = 0; i < Math.min(a.length, b.length); i++) if (!Object.is(a[i], b[i])) n++;
  return n;
}
