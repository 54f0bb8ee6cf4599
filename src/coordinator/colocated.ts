/**
 * Co-located shards (`--ps-mode colocated`): every worker serves one ParameterShard, and the
 * variables are split over the members in rank order, so no process sits between the workers:
 * each sends every other member the slice that member owns and takes back its updated weights
 * (the bytes of a reduce-scatter plus an all-gather). The coordinator drives the group as it
 * drives shard processes (two-phase commit over all of them) and re-forms it whenever the
 * members change:
 *
 * - members joined and every old member is still here: the state is snapshotted from the old
 *   group and handed to the new one, nothing is lost;
 * - a member left (its shard, and that shard's Adam slots, went with it): the group is formed
 *   from the last rollback point, which the coordinator keeps every --snapshot-every steps and
 *   at each epoch end, and the steps since then are redone (`fallback`).
 */
import * as grpc from '@grpc/grpc-js';
import { ShardGroup, type ShardGroupOptions } from '../ps/shard-group.js';
import type { ShardState } from '../ps/shard.js';
import type { Logger } from '../telemetry/logger.js';
import { MembershipChangedError } from './errors.js';
import type { Membership } from './membership.js';
import type { WorkerSession } from './worker-session.js';

export class ColocatedShards {
  /** The current group (undefined before the first step). */
  group: ShardGroup | undefined;
  /** Its members, in rank order: member i serves shard i. */
  private sessions: WorkerSession[] = [];
  /** The group failed as a whole (a commit went wrong): form it again from the rollback point. */
  private broken = false;

  constructor(
    private readonly membership: Membership,
    private readonly options: Omit<ShardGroupOptions, 'addresses'>,
    private readonly log: Logger,
  ) {}

  /**
   * Makes the group match the current members (waiting until each serves its shard). Returns
   * true when it started from `fallback()` (the rollback point, or the initial state).
   * Rejects with the shards' error when a member is lost while the group forms (the member is
   * removed, so the caller redoes this).
   */
  async ensure(signal: AbortSignal, fallback: () => ShardState): Promise<boolean> {
    const members = await this.membership.readyMembers(signal);
    if (this.group && !this.broken && members.length === this.sessions.length && members.every((s, i) => s === this.sessions[i])) return false;
    let state: ShardState | undefined;
    const old = this.group;
    if (old && !this.broken && this.sessions.every((s) => this.membership.get(s.id) === s)) {
      try {
        state = await old.snapshot();
      } catch (err) {
        this.log.warn({ err: (err as Error).message }, 'snapshot of the old shard group failed; using the rollback point');
      }
    }
    const rolledBack = state === undefined;
    state ??= fallback();
    old?.close();
    this.group = undefined;
    this.broken = false;
    const group = new ShardGroup({ ...this.options, addresses: members.map((s) => s.shardAddress!) });
    this.group = group;
    const drop = (i: number, reason: string) => {
      const s = members[i]!;
      if (this.membership.get(s.id) !== s) return;
      this.log.warn({ workerId: s.id, err: reason }, 'co-located shard lost; removing its worker');
      s.fail(grpc.status.UNAVAILABLE, `its co-located shard was lost: ${reason}`);
      this.membership.remove(s, 'its co-located shard was lost');
    };
    group.shards.forEach((shard, i) => {
      void shard.lost.then((err) => {
        if (this.group === group) drop(i, err.message);
      });
    });
    void group.lost.then((err) => {
      if (this.group !== group) return;
      this.log.warn({ err: err.message }, 'co-located shard group failed; forming it again from the rollback point');
      this.broken = true;
    });
    // A member leaving while the group forms ends the wait at once (its shard will never answer).
    let onLeft!: (s: WorkerSession) => void;
    const left = new Promise<never>((_, reject) => {
      onLeft = (s) => {
        if (members.includes(s)) reject(new MembershipChangedError(-1, `worker ${s.id} left while the shard group formed`));
      };
      this.membership.on('left', onLeft);
    });
    left.catch(() => undefined);
    try {
      await Promise.race([group.init(state), left]);
    } catch (err) {
      // The members whose shard failed leave; the group is formed again, from the rollback point, on the next call.
      group.shards.forEach((shard, i) => {
        if (shard.failure) drop(i, shard.failure.message);
      });
      this.group = undefined;
      group.close();
      throw err;
    } finally {
      this.membership.off('left', onLeft);
    }
    this.sessions = members;
    const endpoints = group.endpoints().map((e, i) => ({ ...e, workerId: members[i]!.id }));
    for (const s of members) s.pendingShards = endpoints;
    this.log.info({ members: members.map((s) => s.id), version: state.version, rolledBack }, 'co-located shard group formed');
    return rolledBack;
  }

  close(): void {
    this.group?.close();
    this.group = undefined;
  }
}
