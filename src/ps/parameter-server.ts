/**
 * The parameter server: owns the model variables, the optimizer slots and the version. One
 * committed step = average the contributions (in rank order), apply Adam, bump the version.
 */
import { Adam, type AdamOptions } from './adam.js';
import { GradientAggregator, type Contribution } from './aggregator.js';

export class ParameterServer {
  readonly weights: Float32Array;
  readonly optimizer: Adam;
  private readonly aggregator: GradientAggregator;
  /** Version of `weights`: the number of committed steps. */
  version = 0;

  constructor(initialWeights: Float32Array, optimizer: AdamOptions = {}) {
    this.weights = Float32Array.from(initialWeights);
    this.optimizer = new Adam(initialWeights.length, optimizer);
    this.aggregator = new GradientAggregator(initialWeights.length);
  }

  get size(): number {
    return this.weights.length;
  }

  /** Puts back the state of a checkpoint. */
  restore(state: { weights: Float32Array; m: Float32Array; v: Float32Array; iterations: number; version: number }): void {
    for (const [name, a] of [['weights', state.weights], ['m', state.m], ['v', state.v]] as const) {
      if (a.length !== this.size) throw new RangeError(`${name} has ${a.length} floats; the model has ${this.size}`);
    }
    this.weights.set(state.weights);
    this.optimizer.m.set(state.m);
    this.optimizer.v.set(state.v);
    this.optimizer.iterations = state.iterations;
    this.version = state.version;
  }

  /** Commits one synchronous step; returns the new version. */
  commit(contributions: readonly Contribution[]): number {
    const { sum, total } = this.aggregator.sum(contributions);
    this.optimizer.apply(this.weights, sum, total);
    this.version++;
    return this.version;
  }
}
