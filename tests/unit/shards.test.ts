import { describe, expect, it } from 'vitest';
import { Random } from '../../src/data/random.js';
import { NonFiniteGradientError } from '../../src/ps/aggregator.js';
import { ShardStateError } from '../../src/ps/errors.js';
import { ParameterServer } from '../../src/ps/parameter-server.js';
import { VariableShard } from '../../src/ps/shard.js';
import { shardLayout } from '../../src/ps/shard-layout.js';

function randomArray(n: number, seed: number): Float32Array {
  const r = Random.fromSeed(seed);
  return Float32Array.from({ length: n }, () => r.next() * 2 - 1);
}

const bits = (a: Float32Array) => Buffer.from(a.buffer, a.byteOffset, a.byteLength);

describe('shard layout', () => {
  it('cuts the flat buffer into K contiguous, nearly equal ranges that cover it exactly', () => {
    expect(shardLayout(10, 3)).toEqual([
      { index: 0, offset: 0, length: 4 },
      { index: 1, offset: 4, length: 3 },
      { index: 2, offset: 7, length: 3 },
    ]);
    expect(shardLayout(7, 1)).toEqual([{ index: 0, offset: 0, length: 7 }]);
    for (const [p, k] of [[694_922, 4], [101_770, 7], [5, 5]] as const) {
      const ranges = shardLayout(p, k);
      expect(ranges).toHaveLength(k);
      let next = 0;
      for (const r of ranges) {
        expect(r.offset).toBe(next);
        next += r.length;
      }
      expect(next).toBe(p);
      const lengths = ranges.map((r) => r.length);
      expect(Math.max(...lengths) - Math.min(...lengths)).toBeLessThanOrEqual(1);
    }
  });

  it('rejects shard counts outside 1..P with a TypeError naming the field', () => {
    for (const k of [0, -1, 1.5, 11, NaN]) expect(() => shardLayout(10, k)).toThrow(/psShards must be an integer from 1 to 10/);
    expect(() => shardLayout(10, 0)).toThrow(TypeError);
  });
});

describe('two-phase shard', () => {
  const range = { index: 0, offset: 0, length: 4 };
  const g = (...x: number[]) => ({ sampleCount: 1, values: Float32Array.from(x) });

  it('prepare leaves the weights alone; abort leaves them bit-identical; commit applies and bumps the version', () => {
    const weights = Float32Array.from([1, 2, 3, 4]);
    const shard = new VariableShard(range, weights);
    const before = Float32Array.from(weights);
    expect(shard.prepare(1, [g(1, 1, 1, 1), g(-3, 0, 1, 2)])).toEqual({ ok: true, nonFinite: [] });
    expect(bits(weights).equals(bits(before))).toBe(true);
    shard.abort(1);
    expect(bits(weights).equals(bits(before))).toBe(true);
    expect(shard.version).toBe(0);
    expect(shard.optimizer.iterations).toBe(0);
    expect(() => shard.commit(1)).toThrow(ShardStateError);
    shard.prepare(2, [g(1, 1, 1, 1)]);
    expect(shard.commit(2)).toBe(1);
    expect(shard.weights).toBe(weights);
    expect(weights[0]).toBeLessThan(1);
    expect(shard.optimizer.iterations).toBe(1);
  });

  it('a commit without a matching prepare throws', () => {
    const shard = new VariableShard(range, new Float32Array(4));
    expect(() => shard.commit(1)).toThrow(/commit of round 1 without a successful prepare/);
    shard.prepare(1, [g(1, 1, 1, 1)]);
    expect(() => shard.commit(2)).toThrow(ShardStateError);
    expect(shard.commit(1)).toBe(1);
    expect(() => shard.commit(1)).toThrow(ShardStateError);
  });

  it('a non-finite contribution is reported by index and leaves nothing to commit', () => {
    const shard = new VariableShard(range, new Float32Array(4));
    expect(shard.prepare(1, [g(1, 1, 1, 1), g(0, NaN, 0, 0), g(Infinity, 0, 0, 0)])).toEqual({ ok: false, nonFinite: [1, 2] });
    expect(() => shard.commit(1)).toThrow(ShardStateError);
  });
});

describe('sharded parameter server', () => {
  it('K = 1, 2, 3, 7 shards give bitwise-identical weights and optimizer state over many steps', () => {
    const n = 1001;
    const initial = randomArray(n, 5);
    const runs = [1, 2, 3, 7].map((k) => {
      const ps = new ParameterServer(initial, { lr: 0.01 }, k);
      for (let step = 0; step < 30; step++) {
        ps.commit([
          { sampleCount: 3, values: randomArray(n, 1000 + step) },
          { sampleCount: 5, values: randomArray(n, 2000 + step) },
        ]);
      }
      return ps;
    });
    const [one, ...others] = runs;
    expect(one!.version).toBe(30);
    for (const ps of others) {
      expect(ps.version).toBe(30);
      expect(bits(ps.weights).equals(bits(one!.weights))).toBe(true);
      expect(bits(ps.optimizer.m).equals(bits(one!.optimizer.m))).toBe(true);
      expect(bits(ps.optimizer.v).equals(bits(one!.optimizer.v))).toBe(true);
      expect(ps.optimizer.iterations).toBe(30);
    }
    expect(bits(one!.weights).equals(bits(initial))).toBe(false);
  });

  it('a non-finite value in one shard leaves every shard untouched', () => {
    const n = 30;
    const ps = new ParameterServer(randomArray(n, 9), {}, 3);
    ps.commit([{ sampleCount: 1, values: randomArray(n, 10) }]);
    const weights = Float32Array.from(ps.weights);
    const { m, v } = ps.optimizer;
    const bad = randomArray(n, 11);
    bad[25] = NaN; // only the last shard (elements 20..29) sees it
    const err = (() => {
      try {
        ps.commit([{ sampleCount: 1, values: randomArray(n, 12) }, { sampleCount: 2, values: bad }]);
      } catch (e) {
        return e;
      }
    })();
    expect(err).toBeInstanceOf(NonFiniteGradientError);
    expect((err as NonFiniteGradientError).indices).toEqual([1]);
    expect(bits(ps.weights).equals(bits(weights))).toBe(true);
    expect(bits(ps.optimizer.m).equals(bits(m))).toBe(true);
    expect(bits(ps.optimizer.v).equals(bits(v))).toBe(true);
    expect(ps.version).toBe(1);
    for (const s of ps.shards) expect(s.version).toBe(1);
    // and the next good step commits everywhere
    expect(ps.commit([{ sampleCount: 1, values: randomArray(n, 13) }])).toBe(2);
  });

  it('restore puts each shard its part of the state', () => {
    const n = 10;
    const ps = new ParameterServer(new Float32Array(n), {}, 3);
    const state = { weights: randomArray(n, 1), m: randomArray(n, 2), v: randomArray(n, 3).map(Math.abs), iterations: 4, version: 9 };
    ps.restore(state);
    expect(bits(ps.weights).equals(bits(state.weights))).toBe(true);
    expect(bits(ps.optimizer.m).equals(bits(state.m))).toBe(true);
    expect(ps.version).toBe(9);
    expect(ps.shards.map((s) => s.optimizer.iterations)).toEqual([4, 4, 4]);
  });
});

describe('coordinator shard options', async () => {
  const { compileCoordinatorOptions } = await import('../../src/coordinator/options.js');
  const base = { insecure: true } as const;
  it('default to one in-process shard and validate with a TypeError naming the field', () => {
    const o = compileCoordinatorOptions(base);
    expect([o.psShards, o.psMode, o.psAddresses]).toEqual([1, 'in-process', []]);
    expect(() => compileCoordinatorOptions({ ...base, psShards: 0 })).toThrow(/^psShards must be an integer/);
    expect(() => compileCoordinatorOptions({ ...base, psMode: 'threads' })).toThrow(/^psMode must be one of in-process, process/);
    expect(() => compileCoordinatorOptions({ ...base, psMode: 'process', launch: 'none', psShards: 2 })).toThrow(/^psAddresses must name the 2/);
    expect(() => compileCoordinatorOptions({ ...base, psMode: 'process', launch: 'none', psShards: 2, psAddresses: ['a:1'] })).toThrow(/names 1 shard/);
    expect(() => compileCoordinatorOptions({ ...base, psMode: 'process', launch: 'none', psAddresses: ['nohost'] })).toThrow(/HOST:PORT/);
    expect(() => compileCoordinatorOptions({ ...base, psAddresses: ['a:1'] })).toThrow(/only for psMode process with launch none/);
    expect(compileCoordinatorOptions({ ...base, psMode: 'process', launch: 'none', psShards: 2, psAddresses: ['a:1', 'b:2'] }).psAddresses).toEqual(['a:1', 'b:2']);
  });
});
