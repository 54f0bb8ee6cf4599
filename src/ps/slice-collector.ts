/**
 * What a shard process gathers for one round: each expected worker's gradient slice, which may
 * arrive before or after the coordinator's Prepare (they travel on different connections).
 * Slices of older rounds are dropped; a worker's newer round replaces its older one, in the
 * same buffers.
 */
import { ChunkAssembler } from '../rpc/chunks.js';
import type { Chunk__Output } from '../rpc/proto.js';
import { bytesPerElement, decodeGradient, type GradDtype } from '../rpc/tensor-codec.js';
import type { Contribution } from './aggregator.js';
import { ShardStateError } from './errors.js';

export interface ExpectedSlice {
  workerId: string;
  rank: number;
  sampleCount: number;
}

interface Pending {
  round: number;
  step: number;
  assembler: ChunkAssembler;
  decoded: Float32Array | undefined;
}

export class SliceCollector {
  private readonly pending = new Map<string, Pending>();
  /** Rounds at or below this are over (committed or aborted): their slices are stale. */
  private closedThrough = 0;
  private current: { step: number; round: number; expected: ExpectedSlice[] } | undefined;
  /** Slices dropped because their round was over. */
  stale = 0;

  constructor(private readonly length: number, private readonly dtype: GradDtype) {}

  get round(): number | undefined {
    return this.current?.round;
  }

  /** The coordinator's Prepare: these workers (sorted by rank here) contribute to `round`. */
  expect(step: number, round: number, expected: ExpectedSlice[]): void {
    if (round <= this.closedThrough) throw new ShardStateError(`prepare of round ${round}, which is over`);
    this.current = { step, round, expected: [...expected].sort((a, b) => a.rank - b.rank) };
  }

  /** One chunk of a worker's slice. Throws (ChunkError, ShardStateError) on a malformed one. */
  add(workerId: string, step: number, round: number, chunk: Chunk__Output | null): void {
    const isFirst = Number(chunk?.offset ?? 0) === 0;
    this.slot(workerId, step, round, isFirst)?.assembler.add(chunk);
  }

  /**
   * A worker's whole slice from a shared region: `fill` writes its bytes into the slot it is
   * given and says whether they are good (SharedRegionReader.read). Throws as add() does.
   */
  addWhole(workerId: string, step: number, round: number, totalBytes: number, fill: (dst: Uint8Array) => boolean): void {
    this.slot(workerId, step, round, true)?.assembler.fill(totalBytes, fill);
  }

  /** Where a slice of (workerId, round) goes; undefined for a stale one (dropped). */
  private slot(workerId: string, step: number, round: number, isFirst: boolean): Pending | undefined {
    if (round <= this.closedThrough || (this.current && round < this.current.round)) {
      if (isFirst) this.stale++;
      return undefined;
    }
    if (this.current?.round === round && step !== this.current.step) throw new ShardStateError(`slice of round ${round} names step ${step}; expected ${this.current.step}`);
    let p = this.pending.get(workerId);
    if (!p || p.round !== round) {
      if (p && p.round > round) return undefined;
      p = p ?? { round, step, assembler: new ChunkAssembler(this.length * bytesPerElement(this.dtype)), decoded: this.dtype === 'float32' ? undefined : new Float32Array(this.length) };
      p.round = round;
      p.step = step;
      p.assembler.reset();
      this.pending.set(workerId, p);
    }
    return p;
  }

  /** The current round's contributions in rank order once every expected slice is complete. */
  complete(): { round: number; workerIds: string[]; contributions: Contribution[] } | undefined {
    const c = this.current;
    if (!c) return undefined;
    const contributions: Contribution[] = [];
    for (const e of c.expected) {
      const p = this.pending.get(e.workerId);
      if (!p || p.round !== c.round || !p.assembler.complete) return undefined;
    }
    for (const e of c.expected) {
      const p = this.pending.get(e.workerId)!;
      let values = p.assembler.values;
      if (p.decoded) {
        decodeGradient(p.assembler.uint16, this.dtype, p.decoded);
        values = p.decoded;
      }
      contributions.push({ sampleCount: e.sampleCount, values });
    }
    return { round: c.round, workerIds: c.expected.map((e) => e.workerId), contributions };
  }

  /** The round was committed or aborted: its slices (and any older) are stale from now on. */
  close(round: number): void {
    this.closedThrough = Math.max(this.closedThrough, round);
    if (this.current && this.current.round <= round) this.current = undefined;
    // Each worker's buffers stay for its next slice (a round never matches a closed one): no allocation per step.
  }

  forget(workerId: string): void {
    this.pending.delete(workerId);
  }
}
