/**
 * Where the model's variables live during a run (`psMode`), behind one face for the run loop:
 * the in-process ParameterServer, a ShardGroup of `parameter-server` processes, or shards
 * served by the workers themselves (ColocatedShards). It starts them from a fresh or resumed
 * state, says what the Attach server tells workers about them, hands the step protocol the
 * group to drive, and reads their full state (evaluation, checkpoints, the saved model).
 *
 * Co-located shards also keep the rollback point: the state and the run's progress at the last
 * snapshot. A member that leaves takes its shard along, and the run goes back there.
 */
import { initialWeights } from '../model/init.js';
import type { VariableLayout } from '../model/variables.js';
import { ShardLostError } from '../ps/errors.js';
import { ParameterServer } from '../ps/parameter-server.js';
import type { ShardState } from '../ps/shard.js';
import { ShardGroup, type ShardGroupOptions } from '../ps/shard-group.js';
import type { Logger } from '../telemetry/logger.js';
import { ColocatedShards } from './colocated.js';
import type { Membership } from './membership.js';
import type { CompiledCoordinatorOptions } from './options.js';

/** The run's position that goes back with a rollback point. */
export interface RunProgress {
  step: number;
  epoch: number;
  cursor: number;
  epochProgress: { steps: number; samples: number; lossSum: number };
  trainedSamples: number;
}

export class VariableHost {
  /** psMode in-process. */
  readonly ps: ParameterServer | undefined;
  /** psMode process. */
  private shards: ShardGroup | undefined;
  /** psMode colocated. */
  private colocated: ColocatedShards | undefined;
  private rollbackPoint: { state: ShardState; progress: RunProgress } | undefined;
  /** Committed steps undone by going back to a rollback point. */
  rolledBackSteps = 0;
  /** The weights of the last snapshot (shard processes and co-located shards). */
  private snapshotWeights: Float32Array | undefined;
  /** Aborted with the ShardLostError when a shard process is lost (the run cannot go on). */
  readonly lost = new AbortController();

  constructor(
    private readonly options: CompiledCoordinatorOptions,
    private readonly layout: VariableLayout,
    private readonly membership: Membership,
    private readonly log: Logger,
    /** Reads and moves the run's progress (the rollback point's counters). */
    private readonly progress: { get(): RunProgress; set(p: RunProgress): void },
  ) {
    const o = options;
    if (o.psMode === 'in-process') this.ps = new ParameterServer(initialWeights(layout, o.seed), { lr: o.lr }, o.psShards);
  }

  /** Puts the variables in place from `resumed` (a checkpoint) or fresh initial weights. */
  async open(jobId: string, psAddresses: string[], resumed: ShardState | undefined): Promise<void> {
    const o = this.options;
    const size = this.layout.totalSize;
    const state = resumed ?? { weights: initialWeights(this.layout, o.seed), m: new Float32Array(size), v: new Float32Array(size), iterations: 0, version: 0 };
    const group: Omit<ShardGroupOptions, 'addresses'> = {
      size,
      token: o.token,
      tls: o.tls.cert ? { ca: o.tls.ca ?? o.tls.cert, cert: o.tls.ca ? o.tls.cert : undefined, key: o.tls.ca ? o.tls.key : undefined } : {},
      jobId,
      gradDtype: o.gradDtype,
      chunkBytes: o.chunkBytes,
      adam: { lr: o.lr },
    };
    if (o.psMode === 'in-process') {
      if (resumed) this.ps!.restore(resumed);
    } else if (o.psMode === 'colocated') {
      // The group forms before the first step; until then the rollback point holds the state.
      this.colocated = new ColocatedShards(this.membership, group, this.log);
      this.capture(state);
    } else {
      if (psAddresses.length !== o.psShards) throw new TypeError(`psAddresses names ${psAddresses.length} shard(s); psShards is ${o.psShards}`);
      // Shard processes do not compute: one silent for a heartbeat timeout is hung, and lost.
      const shards = new ShardGroup({ ...group, addresses: psAddresses, silenceTimeoutMs: o.heartbeatTimeoutMs });
      this.shards = shards;
      void shards.lost.then((err) => {
        this.log.error({ err: err.message }, 'parameter-server shard lost');
        this.lost.abort(err);
      });
      await Promise.race([shards.init(state), shards.lost.then((err) => Promise.reject(err))]);
      this.log.info({ shards: psAddresses, version: state.version }, 'parameter-server shards initialized');
    }
  }

  /** What the Attach server tells workers: gradient tensors bypass the coordinator unless it holds the variables. */
  get serverSettings(): { modelSize: number; shards: ReturnType<ShardGroup['endpoints']> | undefined; colocated: boolean } {
    return { modelSize: this.ps ? this.layout.totalSize : 0, shards: this.shards?.endpoints(), colocated: this.colocated !== undefined };
  }

  /** The shards the step protocol drives (undefined: the in-process parameter server). */
  get group(): ShardGroup | undefined {
    return this.shards ?? this.colocated?.group;
  }

  /** Whether a shard's loss is a member's loss (co-located shards), not the run's end. */
  get shardsAreMembers(): boolean {
    return this.colocated !== undefined;
  }

  /** The current weights (flat layout); away from the coordinator, as of the last snapshot. */
  get weights(): Float32Array {
    return this.ps?.weights ?? this.snapshotWeights ?? new Float32Array(0);
  }

  /**
   * Co-located shards: forms the group over the current members if they changed. Returns true
   * when it started from the rollback point (the data cursor may have moved back).
   */
  async ensureGroup(signal: AbortSignal): Promise<boolean> {
    return this.colocated ? this.colocated.ensure(signal, () => this.rollBack()) : false;
  }

  /** Co-located shards: takes a snapshot, which becomes the rollback point. */
  async snapshot(): Promise<void> {
    if (this.colocated) await this.state();
  }

  /**
   * The full state: views of the in-process parameter server, or a snapshot of the shards.
   * Co-located shards with no sound group give the rollback point, and the progress goes back
   * with it.
   */
  async state(): Promise<ShardState> {
    if (this.ps) return { weights: this.ps.weights, ...this.ps.optimizer, version: this.ps.version };
    let state: ShardState;
    if (this.colocated) {
      const group = this.colocated.group;
      try {
        state = group ? await group.snapshot() : this.rollBack();
      } catch (err) {
        if (!(err instanceof ShardLostError)) throw err;
        state = this.rollBack();
      }
      this.capture(state);
    } else {
      if (!this.shards) throw new RangeError('no parameter server yet');
      state = await this.shards.snapshot();
    }
    this.snapshotWeights = state.weights;
    return state;
  }

  /** The workers serving co-located shards are about to stop: their shards' end is no failure. */
  release(): void {
    this.colocated?.close();
  }

  close(): void {
    this.shards?.close();
    this.colocated?.close();
  }

  private capture(state: ShardState): void {
    this.rollbackPoint = { state, progress: this.progress.get() };
  }

  /** Goes back to the rollback point (progress and data cursor); returns its state. */
  private rollBack(): ShardState {
    const { state, progress } = this.rollbackPoint!;
    const now = this.progress.get().step;
    if (now > progress.step) {
      this.rolledBackSteps += now - progress.step;
      this.log.warn({ from: now, to: progress.step }, 'a member left with its shard; going back to the rollback point');
    }
    this.progress.set(progress);
    return state;
  }
}
