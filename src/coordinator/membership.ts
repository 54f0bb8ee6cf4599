/**
 * Who is in the job. Members are ordered by admission; a member's rank in a step is its
 * position in that order at the step's start. Emits 'joined' and 'left'.
 */
import { EventEmitter } from 'node:events';
import type { WorkerSession } from './worker-session.js';

export interface MembershipEvents {
  joined: [WorkerSession];
  left: [WorkerSession, string];
  /** Co-located shards: the member's shard listens (its shardAddress is set). */
  shardReady: [WorkerSession];
}

export class Membership extends EventEmitter<MembershipEvents> {
  private readonly members = new Map<string, WorkerSession>();
  /** Every session ever admitted, for the report. */
  readonly history: WorkerSession[] = [];
  changes = 0;
  private nextSeq = 0;

  get size(): number {
    return this.members.size;
  }

  has(id: string): boolean {
    return this.members.has(id);
  }

  get(id: string): WorkerSession | undefined {
    return this.members.get(id);
  }

  nextJoinSeq(): number {
    return this.nextSeq++;
  }

  add(session: WorkerSession): void {
    this.members.set(session.id, session);
    this.history.push(session);
    this.changes++;
    this.emit('joined', session);
  }

  remove(session: WorkerSession, reason: string): void {
    if (this.members.get(session.id) !== session) return;
    this.members.delete(session.id);
    this.changes++;
    this.emit('left', session, reason);
  }

  /** Current members in rank order. */
  ranked(): WorkerSession[] {
    return [...this.members.values()].sort((a, b) => a.joinSeq - b.joinSeq);
  }

  /** Co-located shards: the members, in rank order, once every one serves its shard. Rejects on abort. */
  async readyMembers(signal: AbortSignal): Promise<WorkerSession[]> {
    for (;;) {
      signal.throwIfAborted();
      const members = this.ranked();
      if (members.length > 0 && members.every((s) => s.shardAddress !== undefined)) return members;
      await new Promise<void>((resolve, reject) => {
        const cleanup = () => {
          this.off('shardReady', done).off('left', done).off('joined', done);
          signal.removeEventListener('abort', onAbort);
        };
        const done = () => {
          cleanup();
          resolve();
        };
        const onAbort = () => {
          cleanup();
          reject(signal.reason instanceof Error ? signal.reason : new Error('aborted'));
        };
        this.on('shardReady', done).on('left', done).on('joined', done);
        signal.addEventListener('abort', onAbort, { once: true });
      });
    }
  }

  /** Resolves once at least `count` members are present; rejects on abort. */
  waitForAtLeast(count: number, signal?: AbortSignal): Promise<void> {
    if (this.size >= count) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const onJoin = () => {
        if (this.size >= count) finish();
      };
      const onAbort = () => {
        this.off('joined', onJoin);
        reject(signal!.reason instanceof Error ? signal!.reason : new Error('aborted'));
      };
      const finish = () => {
        this.off('joined', onJoin);
        signal?.removeEventListener('abort', onAbort);
        resolve();
      };
      this.on('joined', onJoin);
      if (signal?.aborted) onAbort();
      else signal?.addEventListener('abort', onAbort, { once: true });
    });
  }
}
