/**
 * The synchronous step barrier: one per dispatched step. It resolves when every expected rank
 * has delivered its contribution, handing them back in rank order, or rejects when aborted
 * (for example because the membership changed), after which late deliveries are ignored.
 */
import type { Contribution } from './aggregator.js';

export interface RankedContribution extends Contribution {
  rank: number;
  loss: number;
}

export class StepBarrier {
  readonly done: Promise<RankedContribution[]>;
  private readonly received = new Map<number, RankedContribution>();
  private settled = false;
  private resolveDone!: (value: RankedContribution[]) => void;
  private rejectDone!: (err: Error) => void;

  constructor(readonly expectedRanks: readonly number[]) {
    this.done = new Promise((resolve, reject) => {
      this.resolveDone = resolve;
      this.rejectDone = reject;
    });
    // A barrier may be aborted before anyone awaits it.
    this.done.catch(() => undefined);
    if (expectedRanks.length === 0) this.abort(new RangeError('a step needs at least one rank'));
  }

  get isSettled(): boolean {
    return this.settled;
  }

  deliver(contribution: RankedContribution): void {
    if (this.settled) return;
    if (!this.expectedRanks.includes(contribution.rank)) throw new RangeError(`rank ${contribution.rank} is not part of this step`);
    this.received.set(contribution.rank, contribution);
    if (this.received.size === this.expectedRanks.length) {
      this.settled = true;
      this.resolveDone([...this.expectedRanks].sort((a, b) => a - b).map((r) => this.received.get(r)!));
    }
  }

  abort(reason: Error): void {
    if (this.settled) return;
    this.settled = true;
    this.rejectDone(reason);
  }
}
