/**
 * K shard processes driven as one parameter server, two-phase: prepare on every shard, and
 * commit only when every shard has all contributions and found them finite; otherwise abort
 * on every shard. Snapshots reassemble the full flat state (evaluation, checkpoints, the saved
 * model). A shard that is lost ends everything: `lost` resolves with its ShardLostError.
 */
import type { GradDtype } from '../rpc/tensor-codec.js';
import type { TlsFiles } from '../rpc/tls.js';
import type { AdamOptions } from './adam.js';
import { RemoteShard } from './shard-client.js';
import type { ShardState } from './shard.js';
import { shardLayout, type ShardRange } from './shard-layout.js';
import { ShardLostError } from './errors.js';
import type { ExpectedSlice } from './slice-collector.js';

export interface ShardGroupOptions {
  addresses: string[];
  size: number;
  token: string | undefined;
  tls: TlsFiles;
  jobId: string;
  gradDtype: GradDtype;
  chunkBytes: number;
  adam: AdamOptions;
  connectTimeoutMs?: number;
  /** See RemoteShardOptions.silenceTimeoutMs (shard processes only). */
  silenceTimeoutMs?: number;
}

export class ShardGroup {
  readonly layout: ShardRange[];
  readonly shards: RemoteShard[];
  /** Resolves when any shard is lost. */
  readonly lost: Promise<ShardLostError>;
  version = 0;
  private closed = false;

  constructor(private readonly options: ShardGroupOptions) {
    this.layout = shardLayout(options.size, options.addresses.length);
    this.shards = this.layout.map(
      (range, i) => new RemoteShard({ address: options.addresses[i]!, range, token: options.token, tls: options.tls, connectTimeoutMs: options.connectTimeoutMs ?? 60_000, silenceTimeoutMs: options.silenceTimeoutMs }),
    );
    let broken!: (err: ShardLostError) => void;
    this.broken = (err) => broken(err);
    this.lost = Promise.race([...this.shards.map((s) => s.lost), new Promise<ShardLostError>((resolve) => (broken = resolve))]);
  }

  /** Ends the group as a lost shard would (a commit that went wrong after the step moved on). */
  private readonly broken: (err: ShardLostError) => void;

  get size(): number {
    return this.options.size;
  }

  /** Where workers find each shard and what it holds. */
  endpoints(): { address: string; exchangePort: number; offset: number; length: number }[] {
    return this.shards.map((s) => ({ address: s.address, exchangePort: s.exchangePort, offset: s.range.offset, length: s.range.length }));
  }

  /** (Re)initializes every shard with its part of `state` (a fresh start or a checkpoint). */
  async init(state: ShardState): Promise<void> {
    const a = this.options.adam;
    const base = { jobId: this.options.jobId, gradDtype: this.options.gradDtype, chunkBytes: this.options.chunkBytes, adam: { lr: a.lr ?? 1e-3, beta1: a.beta1 ?? 0.9, beta2: a.beta2 ?? 0.999, epsilon: a.epsilon ?? 1e-7 } };
    await Promise.all(
      this.shards.map((s) => {
        const { offset, length } = s.range;
        const part = (x: Float32Array) => x.subarray(offset, offset + length);
        return s.init(base, { weights: part(state.weights), m: part(state.m), v: part(state.v), iterations: state.iterations, version: state.version });
      }),
    );
    this.version = state.version;
  }

  /** Phase one on every shard: resolves when all hold every expected slice; ok only if all are finite. */
  async prepare(step: number, round: number, expected: ExpectedSlice[]): Promise<{ ok: boolean; nonFiniteWorkerIds: string[] }> {
    const answers = await Promise.all(this.shards.map((s) => s.prepare(step, round, expected)));
    const bad = new Set(answers.flatMap((a) => a.nonFiniteWorkerIds));
    return { ok: answers.every((a) => a.ok), nonFiniteWorkerIds: [...bad] };
  }

  /**
   * Phase two, decided: sends Commit to every shard and moves `version` on at once, so the next
   * step goes out without waiting for the answers (every shard applies its commands in order,
   * and workers wait for the weights of the version their step names). A shard that fails to
   * commit, or disagrees on the version, ends the group through `lost`.
   */
  commitAndContinue(round: number): number {
    const expected = this.version + 1;
    this.version = expected;
    Promise.all(this.shards.map((s) => s.commit(round))).then(
      (versions) => {
        if (versions.some((v) => v !== expected)) this.broken(new ShardLostError(0, this.shards[0]!.address, `shards disagree on the version after round ${round}: ${versions.join(', ')}; expected ${expected}`));
      },
      (err: Error) => this.broken(err instanceof ShardLostError ? err : new ShardLostError(0, this.shards[0]!.address, err.message)),
    );
    return expected;
  }

  abort(round: number): void {
    for (const s of this.shards) {
      try {
        s.abort(round);
      } catch {
        // a lost shard: `lost` reports it
      }
    }
  }

  /** The full flat state, reassembled from every shard. */
  async snapshot(): Promise<ShardState> {
    const parts = await Promise.all(this.shards.map((s) => s.snapshot()));
    const n = this.options.size;
    const state = { weights: new Float32Array(n), m: new Float32Array(n), v: new Float32Array(n), iterations: parts[0]!.iterations, version: parts[0]!.version };
    parts.forEach((p, i) => {
      const offset = this.layout[i]!.offset;
      state.weights.set(p.weights, offset);
      state.m.set(p.m, offset);
      state.v.set(p.v, offset);
    });
    return state;
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    for (const s of this.shards) s.close();
  }
}
