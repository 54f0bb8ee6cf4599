/**
 * The data plan: which training samples each step uses. Epoch e walks a permutation seeded by
 * (seed, e); step t takes the next W x B indices (W = world size of that step), split into
 * contiguous per-rank slices. The last step of an epoch is smaller, never dropped. The cursor
 * only moves when a step commits, so aborted steps never lose or repeat data.
 */
import { epochPermutation } from '../data/random.js';

export interface StepPlan {
  epoch: number;
  /** Position of the step's first sample in the epoch's permutation. */
  cursor: number;
  /** One slice of sample indices per rank; a rank may get an empty slice on a tiny last step. */
  slices: Uint32Array[];
  sampleCount: number;
}

export class DataPlan {
  private perm: Uint32Array;
  epoch = 0;
  cursor = 0;

  constructor(
    readonly seed: number,
    readonly trainSize: number,
    readonly batchSize: number,
  ) {
    if (trainSize <= 0) throw new RangeError('the training set is empty');
    this.perm = epochPermutation(seed, 0, trainSize);
  }

  get epochDone(): boolean {
    return this.cursor >= this.trainSize;
  }

  /** The next step's slices for `worldSize` ranks (does not move the cursor). */
  plan(worldSize: number): StepPlan {
    if (this.epochDone) throw new RangeError(`epoch ${this.epoch} has no samples left`);
    const count = Math.min(worldSize * this.batchSize, this.trainSize - this.cursor);
    const base = Math.floor(count / worldSize);
    const extra = count % worldSize;
    const slices: Uint32Array[] = [];
    let at = this.cursor;
    for (let r = 0; r < worldSize; r++) {
      const n = base + (r < extra ? 1 : 0);
      slices.push(this.perm.subarray(at, at + n));
      at += n;
    }
    return { epoch: this.epoch, cursor: this.cursor, slices, sampleCount: count };
  }

  /** Moves past a committed step. */
  commit(step: StepPlan): void {
    if (step.epoch !== this.epoch || step.cursor !== this.cursor) throw new RangeError('committing a step that is not the next one');
    this.cursor += step.sampleCount;
  }

  /** Moves to a checkpointed position. */
  restore(epoch: number, cursor: number): void {
    if (cursor < 0 || cursor > this.trainSize) throw new RangeError(`cursor ${cursor} is outside 0..${this.trainSize}`);
    this.epoch = epoch;
    this.cursor = cursor;
    this.perm = epochPermutation(this.seed, epoch, this.trainSize);
  }

  /** Starts the next epoch with its own permutation. */
  nextEpoch(): void {
    this.epoch++;
    this.cursor = 0;
    this.perm = epochPermutation(this.seed, this.epoch, this.trainSize);
  }

  stepsPerEpoch(worldSize: number): number {
    return Math.ceil(this.trainSize / (worldSize * this.batchSize));
  }
}
