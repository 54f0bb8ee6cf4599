/**
 * How the flat float32 variable buffer (P elements, variables concatenated in layout order) is
 * split over K parameter-server shards: K contiguous element ranges of nearly equal size (the
 * first P mod K ranges hold one element more). The split ignores variable boundaries on
 * purpose: the reference CNN's dense kernel alone is 99% of its parameters.
 */

export interface ShardRange {
  /** Position of the shard, 0..K-1. */
  index: number;
  /** First element of the flat buffer this shard owns. */
  offset: number;
  /** Number of elements it owns. */
  length: number;
}

/** Validates a shard count for a model of `size` elements; TypeError naming `field` otherwise. */
export function checkShardCount(shards: number, size: number, field = 'psShards'): number {
  if (!Number.isInteger(shards) || shards < 1 || shards > size) {
    throw new TypeError(`${field} must be an integer from 1 to ${size} (the model's parameter count); got ${shards}`);
  }
  return shards;
}

export function shardLayout(size: number, shards: number): ShardRange[] {
  if (!Number.isInteger(size) || size < 1) throw new TypeError(`size must be a positive integer; got ${size}`);
  checkShardCount(shards, size);
  const base = Math.floor(size / shards);
  const extra = size % shards;
  const ranges: ShardRange[] = [];
  let offset = 0;
  for (let index = 0; index < shards; index++) {
    const length = base + (index < extra ? 1 : 0);
    ranges.push({ index, offset, length });
    offset += length;
  }
  return ranges;
}
