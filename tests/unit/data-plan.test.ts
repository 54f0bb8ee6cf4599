import { describe, expect, it } from 'vitest';
import { DataPlan } from '../../src/coordinator/data-plan.js';
import { epochPermutation, Random } from '../../src/data/random.js';

describe('permutations', () => {
  it('are seeded permutations, different per epoch and seed', () => {
    const a = epochPermutation(1, 0, 1000);
    expect([...a].sort((x, y) => x - y)).toEqual([...Array(1000).keys()]);
    expect(epochPermutation(1, 0, 1000)).toEqual(a);
    expect(epochPermutation(1, 1, 1000)).not.toEqual(a);
    expect(epochPermutation(2, 0, 1000)).not.toEqual(a);
  });

  it('Random.nextInt stays in range and is roughly uniform', () => {
    const r = Random.fromSeed(9);
    const counts = new Array(7).fill(0);
    for (let i = 0; i < 70000; i++) counts[r.nextInt(7)]++;
    for (const c of counts) expect(Math.abs(c - 10000)).toBeLessThan(500);
  });
});

describe('data plan', () => {
  it('covers every sample exactly once per epoch, whatever the world size does', () => {
    const plan = new DataPlan(5, 1003, 8);
    const worlds = [4, 4, 3, 1, 2, 4];
    for (let epoch = 0; epoch < 2; epoch++) {
      if (epoch) plan.nextEpoch();
      const seen = new Uint8Array(1003);
      let i = 0;
      while (!plan.epochDone) {
        const w = worlds[i++ % worlds.length]!;
        const step = plan.plan(w);
        expect(step.slices).toHaveLength(w);
        // contiguous, balanced slices
        const sizes = step.slices.map((s) => s.length);
        expect(Math.max(...sizes) - Math.min(...sizes)).toBeLessThanOrEqual(1);
        if (i % 5 === 0) continue; // an aborted step: never committed, its samples come again
        for (const s of step.slices) for (const idx of s) seen[idx]!++;
        plan.commit(step);
      }
      expect(seen.every((c) => c === 1)).toBe(true);
    }
  });

  it('gives the last partial batch instead of dropping it', () => {
    const plan = new DataPlan(1, 10, 4);
    const first = plan.plan(2);
    expect(first.sampleCount).toBe(8);
    plan.commit(first);
    const last = plan.plan(2);
    expect(last.sampleCount).toBe(2);
    expect(last.slices.map((s) => s.length)).toEqual([1, 1]);
    plan.commit(last);
    expect(plan.epochDone).toBe(true);
    expect(() => plan.commit(last)).toThrow(/not the next one/);
  });
});
