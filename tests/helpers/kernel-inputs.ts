/** What the wasm-kernel tests share: a tolerance, shapes, and seeded inputs identical on every backend. */

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
