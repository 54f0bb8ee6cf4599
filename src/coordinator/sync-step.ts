/**
 * One synchronous step (DESIGN.md, "Synchronous step protocol"): snapshot the members in rank
 * order, plan their slices, send weights where needed and the step, wait on the barrier for
 * every rank with samples, then commit on the parameter server. A member leaving, or a
 * non-finite gradient (rejected and its sender removed), aborts the step with
 * MembershipChangedError: nothing is committed and the caller redoes it.
 */
import * as grpc from '@grpc/grpc-js';
import { NonFiniteGradientError } from '../ps/aggregator.js';
import type { ParameterServer } from '../ps/parameter-server.js';
import type { ShardGroup } from '../ps/shard-group.js';
import { StepBarrier } from '../ps/step-barrier.js';
import type { Logger } from '../telemetry/logger.js';
import { attributeSlowest } from '../telemetry/straggler.js';
import type { StepDetail } from '../telemetry/types.js';
import type { DataPlan } from './data-plan.js';
import { MembershipChangedError, TrainingFailedError } from './errors.js';
import type { Membership } from './membership.js';

export interface SyncStepContext {
  membership: Membership;
  plan: DataPlan;
  /** The in-process parameter server, or (undefined) `shards`. */
  ps: ParameterServer | undefined;
  /** Shard processes holding the variables instead of `ps` (two-phase commit over all of them). */
  shards?: ShardGroup;
  chunkBytes: number;
  log: Logger;
  /** Called once per rejected (non-finite) contribution. */
  onRejected: () => void;
  onStepDetail?: (d: StepDetail) => void;
}

/** Runs step `step` as dispatch `round`; resolves once it is committed (the plan's cursor has moved). */
export async function runSyncStep(ctx: SyncStepContext, step: number, round: number, signal: AbortSignal): Promise<{ samples: number; loss: number }> {
  const { membership, ps, shards } = ctx;
  signal.throwIfAborted();
  const members = membership.ranked();
  const plan = ctx.plan.plan(members.length);
  const ranks = members.map((_, r) => r).filter((r) => plan.slices[r]!.length > 0);
  const barrier = new StepBarrier(ranks);
  // Rejects when the step is aborted, also after the barrier (while shards prepare).
  let cancel!: (err: Error) => void;
  const cancelled = new Promise<never>((_, reject) => (cancel = reject));
  cancelled.catch(() => undefined);
  const stop = (err: Error) => {
    barrier.abort(err);
    cancel(err);
  };
  const onLeft = (session: unknown, reason: string) => {
    const s = members.find((m) => m === session);
    if (s) stop(new MembershipChangedError(step, `worker ${s.id} left (${reason})`));
  };
  const onAbort = () => stop(signal.reason instanceof Error ? signal.reason : new TrainingFailedError('training was stopped'));
  membership.on('left', onLeft);
  signal.addEventListener('abort', onAbort, { once: true });
  const dispatchedAt = performance.now();
  const version = shards ? shards.version : ps!.version;
  /** Set once Commit went out to the shards: from then on the round is not aborted. */
  let committing = false;
  try {
    // Shards first learn whose slices to expect: a slice may reach a shard before its Prepare.
    const prepared = shards?.prepare(step, round, ranks.map((r) => ({ workerId: members[r]!.id, rank: r, sampleCount: plan.slices[r]!.length })));
    prepared?.catch(() => undefined);
    for (const r of ranks) {
      const session = members[r]!;
      const slice = plan.slices[r]!;
      if (ps && session.versionHeld !== ps.version) session.sendWeights(ps.version, ps.weights, ctx.chunkBytes);
      session.assign(
        { round, step, rank: r, sampleCount: slice.length, deliver: (c) => barrier.deliver(c) },
        { step, round, version, epoch: plan.epoch, indices: Array.from(slice) },
      );
    }
    const contributions = await barrier.done;
    const optimizerStart = performance.now();
    try {
      if (shards) {
        const answer = await Promise.race([prepared!, cancelled]);
        if (!answer.ok) {
          const ids = new Set(answer.nonFiniteWorkerIds);
          throw new NonFiniteGradientError(ranks.flatMap((r, i) => (ids.has(members[r]!.id) ? [i] : [])));
        }
        committing = true;
        // Decided: every shard holds every finite contribution. A member leaving now changes nothing.
        shards.commitAndContinue(round);
      } else {
        ps!.commit(contributions);
      }
    } catch (err) {
      if (!(err instanceof NonFiniteGradientError)) throw err;
      // Reject the contributions (the parameter server is unchanged), drop their senders, redo the step.
      const culprits = err.indices.map((i) => members[contributions[i]!.rank]!);
      for (const s of culprits) {
        ctx.onRejected();
        ctx.log.warn({ workerId: s.id, step }, 'gradient with NaN or Inf rejected; removing the worker');
        s.fail(grpc.status.INVALID_ARGUMENT, `gradient for step ${step} contains NaN or infinite values`);
        membership.remove(s, 'sent a non-finite gradient');
      }
      throw new MembershipChangedError(step, `rejected non-finite gradient(s) from ${culprits.map((s) => s.id).join(', ')}`);
    }
    const committedAt = performance.now();
    const lastDelivered = Math.max(...ranks.map((r) => members[r]!.deliveredAtMs));
    const phases = ranks.map((r) => members[r]!.recordPhases(committedAt - dispatchedAt, committedAt - optimizerStart, lastDelivered, r, plan.slices[r]!.length));
    const straggler = attributeSlowest(phases);
    if (straggler.slowest >= 0) {
      const s = members[ranks[straggler.slowest]!]!;
      s.stragglerSteps++;
      s.waitCausedMs += straggler.waitCausedMs;
      s.delayCausedMs += straggler.delayMs;
    }
    ctx.plan.commit(plan);
    ctx.onStepDetail?.({ step, epoch: plan.epoch, round, dispatchedAtMs: dispatchedAt, optimizerStartMs: optimizerStart, committedAtMs: committedAt, workers: phases, ...straggler });
    let loss = 0;
    for (const c of contributions) loss += c.loss * c.sampleCount;
    return { samples: plan.sampleCount, loss: loss / plan.sampleCount };
  } catch (err) {
    if (shards && !committing) shards.abort(round);
    throw err;
  } finally {
    membership.off('left', onLeft);
    signal.removeEventListener('abort', onAbort);
  }
}
