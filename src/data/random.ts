/**
 * Seeded randomness: a small counter-free PRNG (mulberry32) whose whole state is one uint32, so
 * it can be checkpointed, and per-epoch permutations derived from (seed, epoch) alone.
 */

export class Random {
  constructor(private state: number) {
    this.state = state >>> 0;
  }

  static fromSeed(...parts: number[]): Random {
    let h = 0x9e3779b9;
    for (const p of parts) h = mix32(h ^ (p >>> 0));
    return new Random(h);
  }

  get snapshot(): number {
    return this.state;
  }

  /** Next uint32. */
  nextUint32(): number {
    this.state = (this.state + 0x6d2b79f5) >>> 0;
    let t = this.state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return (t ^ (t >>> 14)) >>> 0;
  }

  /** Uniform in [0, 1). */
  next(): number {
    return this.nextUint32() / 4294967296;
  }

  /** Uniform integer in [0, n) without modulo bias. */
  nextInt(n: number): number {
    const limit = 4294967296 - (4294967296 % n);
    let x: number;
    do x = this.nextUint32();
    while (x >= limit);
    return x % n;
  }
}

function mix32(x: number): number {
  x = Math.imul(x ^ (x >>> 16), 0x85ebca6b);
  x = Math.imul(x ^ (x >>> 13), 0xc2b2ae35);
  return (x ^ (x >>> 16)) >>> 0;
}

/** The epoch's order of the training set: a Fisher-Yates shuffle seeded by (seed, epoch). */
export function epochPermutation(seed: number, epoch: number, size: number): Uint32Array {
  const perm = new Uint32Array(size);
  for (let i = 0; i < size; i++) perm[i] = i;
  const rng = Random.fromSeed(seed, epoch, 0x5eed);
  for (let i = size - 1; i > 0; i--) {
    const j = rng.nextInt(i + 1);
    const t = perm[i]!;
    perm[i] = perm[j]!;
    perm[j] = t;
  }
  return perm;
}
