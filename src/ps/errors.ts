/** Errors of the parameter-server component (NonFiniteGradientError lives beside the aggregator). */

/** A shard was asked for a transition its state does not allow (commit without prepare, wrong round...). */
export class ShardStateError extends Error {
  override readonly name = 'ShardStateError';
}

/** A remote shard went away or broke its protocol: training cannot go on without its variables. */
export class ShardLostError extends Error {
  override readonly name = 'ShardLostError';
  constructor(readonly shard: number, readonly address: string, reason: string) {
    super(`parameter-server shard ${shard} at ${address} lost: ${reason}`);
  }
}
