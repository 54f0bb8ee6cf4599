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

  /** Commits one synchronous step; returns the new version. */
  commit(contributions: readonly Contribution[]): number {
    const mean = this.aggregator.average(contributions);
    this.optimizer.apply(this.weights, mean);
    this.version++;
    return this.version;
  }
}
