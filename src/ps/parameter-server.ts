/**
 * The in-process parameter server: the model variables split over K shards (views of one flat
 * weights buffer), their optimizer slots and the version. One committed step = prepare every
 * shard (sum in rank order, check for NaN/Inf), and only if all succeed commit all (Adam, version
 * bump); otherwise abort all, so a step is applied to every shard or to none. Adam and the sum
 * are element-wise, so K shards give bitwise the same weights as one.
 */
import type { AdamOptions } from './adam.js';
import { NonFiniteGradientError, type Contribution } from './aggregator.js';
import { createShardKernel } from './shard-kernel.js';
import { VariableShard } from './shard.js';
import { shardLayout, type ShardRange } from './shard-layout.js';

export interface OptimizerState {
  m: Float32Array;
  v: Float32Array;
  iterations: number;
}

export class ParameterServer {
  readonly weights: Float32Array;
  readonly shards: readonly VariableShard[];
  readonly layout: readonly ShardRange[];
  private round = 0;

  constructor(initialWeights: Float32Array, optimizer: AdamOptions = {}, shardCount = 1) {
    this.layout = shardLayout(initialWeights.length, shardCount);
    if (this.layout.length === 1) {
      // One shard: the weights live in its kernel's memory, so a step copies no weights.
      const kernel = createShardKernel(initialWeights.length, optimizer.simd ?? true);
      kernel.w.set(initialWeights);
      this.weights = kernel.w;
      this.shards = [new VariableShard(this.layout[0]!, this.weights, optimizer, kernel)];
    } else {
      this.weights = Float32Array.from(initialWeights);
      this.shards = this.layout.map((r) => new VariableShard(r, this.weights.subarray(r.offset, r.offset + r.length), optimizer));
    }
  }

  get size(): number {
    return this.weights.length;
  }

  /** Version of `weights`: the number of committed steps. */
  get version(): number {
    return this.shards[0]!.version;
  }

  /** Adam's slots in the flat layout (the shard's own arrays with one shard, a copy with several) and its step count. */
  get optimizer(): OptimizerState {
    if (this.shards.length === 1) return this.shards[0]!.optimizer;
    const m = new Float32Array(this.size);
    const v = new Float32Array(this.size);
    for (const s of this.shards) {
      m.set(s.optimizer.m, s.range.offset);
      v.set(s.optimizer.v, s.range.offset);
    }
    return { m, v, iterations: this.shards[0]!.optimizer.iterations };
  }

  /** Puts back the state of a checkpoint. */
  restore(state: { weights: Float32Array; m: Float32Array; v: Float32Array; iterations: number; version: number }): void {
    for (const [name, a] of [['weights', state.weights], ['m', state.m], ['v', state.v]] as const) {
      if (a.length !== this.size) throw new RangeError(`${name} has ${a.length} floats; the model has ${this.size}`);
    }
    for (const s of this.shards) {
      const { offset, length } = s.range;
      const part = (a: Float32Array) => a.subarray(offset, offset + length);
      s.restore({ weights: part(state.weights), m: part(state.m), v: part(state.v), iterations: state.iterations, version: state.version });
    }
  }

  /** Commits one synchronous step on every shard or on none; returns the new version. */
  commit(contributions: readonly Contribution[]): number {
    const round = ++this.round;
    if (this.shards.length === 1) {
      const shard = this.shards[0]!;
      const result = shard.prepare(round, contributions);
      if (!result.ok) throw new NonFiniteGradientError(result.nonFinite);
      return shard.commit(round);
    }
    for (const c of contributions) {
      if (c.values.length !== this.size) throw new RangeError(`gradient has ${c.values.length} floats; expected ${this.size}`);
    }
    const bad = new Set<number>();
    try {
      for (const shard of this.shards) {
        const { offset, length } = shard.range;
        const result = shard.prepare(round, contributions.map((c) => ({ sampleCount: c.sampleCount, values: c.values.subarray(offset, offset + length) })));
        for (const i of result.nonFinite) bad.add(i);
      }
      if (bad.size > 0) throw new NonFiniteGradientError([...bad].sort((a, b) => a - b));
    } catch (err) {
      for (const shard of this.shards) shard.abort(round);
      throw err;
    }
    let version = 0;
    for (const shard of this.shards) version = shard.commit(round);
    return version;
  }
}
