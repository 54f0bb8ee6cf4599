/**
 * Parameter-server shards in a real cluster (coordinator + workers over loopback gRPC): the
 * variables split over K shards train to bitwise the same weights as one parameter server.
 */
import { describe, expect, it } from 'vitest';
import { trainInProcess } from '../helpers/cluster.js';

const bits = (a: Float32Array) => Buffer.from(a.buffer, a.byteOffset, a.byteLength);

describe('parameter-server shards', () => {
  it('K=3 in-process shards give bitwise the weights of K=1', async () => {
    const common = { workers: 2, batchSize: 16, trainLimit: 192, testLimit: 50, seed: 5, model: 'mlp' } as const;
    const one = await trainInProcess({ ...common, psShards: 1 });
    const three = await trainInProcess({ ...common, psShards: 3 });
    expect(one.report.steps).toBe(6);
    expect(three.report.psShards).toBe(3);
    expect(three.report.psMode).toBe('in-process');
    expect(bits(three.weights).equals(bits(one.weights))).toBe(true);
    // a different seed moves them: the comparison can fail
    const other = await trainInProcess({ ...common, psShards: 3, seed: 6 });
    expect(bits(other.weights).equals(bits(one.weights))).toBe(false);
  });
});
