/**
 * One parameter-server shard: the variables of one element range (a view into the caller's
 * buffer, or its own), their Adam slots and a version. A step commits in two phases so that K
 * shards commit atomically: `prepare` sums the contributions (in rank order) into the
 * accumulator and checks them for NaN/Inf without touching the weights; `commit` applies Adam to
 * the prepared sum and bumps the version; `abort` forgets the prepared sum.
 */
import { Adam, type AdamOptions } from './adam.js';
import { GradientAggregator, NonFiniteGradientError, type Contribution } from './aggregator.js';
import { ShardStateError } from './errors.js';
import { createShardKernel, type ShardKernel } from './shard-kernel.js';
import type { ShardRange } from './shard-layout.js';

export interface PrepareResult {
  ok: boolean;
  /** Indices (in the list given to prepare) of contributions holding NaN or infinite values. */
  nonFinite: number[];
}

export interface ShardState {
  weights: Float32Array;
  m: Float32Array;
  v: Float32Array;
  iterations: number;
  version: number;
}

export class VariableShard {
  readonly weights: Float32Array;
  readonly optimizer: Adam;
  private readonly aggregator: GradientAggregator;
  /** Version of `weights`: the number of committed steps. */
  version = 0;
  /** The round whose sum is prepared (undefined: none). */
  private prepared: { round: number; sum: Float32Array; total: number } | undefined;

  /**
   * `weights` (range.length elements) is used in place, not copied; when it is `kernel.w` (see
   * ParameterServer) a step copies no weights at all.
   */
  constructor(readonly range: ShardRange, weights: Float32Array, optimizer: AdamOptions = {}, kernel: ShardKernel = createShardKernel(range.length, optimizer.simd ?? true)) {
    if (weights.length !== range.length) throw new RangeError(`shard ${range.index} holds ${range.length} elements; got ${weights.length}`);
    this.weights = weights;
    this.optimizer = new Adam(range.length, optimizer, kernel);
    this.aggregator = new GradientAggregator(range.length, kernel);
  }

  get size(): number {
    return this.range.length;
  }

  get preparedRound(): number | undefined {
    return this.prepared?.round;
  }

  /**
   * Phase one: sums `contributions` (this shard's slices, in rank order). Never touches the
   * weights. A non-finite contribution leaves nothing prepared and is reported, not thrown.
   */
  prepare(round: number, contributions: readonly Contribution[]): PrepareResult {
    this.prepared = undefined;
    try {
      const { sum, total } = this.aggregator.sum(contributions);
      this.prepared = { round, sum, total };
      return { ok: true, nonFinite: [] };
    } catch (err) {
      if (err instanceof NonFiniteGradientError) return { ok: false, nonFinite: err.indices };
      throw err;
    }
  }

  /** Phase two: applies Adam to the sum prepared for `round`; returns the new version. */
  commit(round: number): number {
    const p = this.prepared;
    if (!p || p.round !== round) {
      throw new ShardStateError(`shard ${this.range.index}: commit of round ${round} without a successful prepare${p ? ` (round ${p.round} is prepared)` : ''}`);
    }
    this.prepared = undefined;
    this.optimizer.apply(this.weights, p.sum, p.total);
    this.version++;
    return this.version;
  }

  /** Forgets what was prepared for `round` (a no-op when nothing, or another round, is). */
  abort(round: number): void {
    if (this.prepared?.round === round) this.prepared = undefined;
  }

  restore(state: ShardState): void {
    for (const [name, a] of [['weights', state.weights], ['m', state.m], ['v', state.v]] as const) {
      if (a.length !== this.size) throw new RangeError(`shard ${this.range.index}: ${name} has ${a.length} floats; the shard has ${this.size}`);
    }
    this.prepared = undefined;
    this.weights.set(state.weights);
    this.optimizer.m.set(state.m);
    this.optimizer.v.set(state.v);
    this.optimizer.iterations = state.iterations;
    this.version = state.version;
  }
}
