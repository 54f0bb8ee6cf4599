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

describe('parameter-server shard servers', () => {
  it('K=2 shard servers (process mode over loopback gRPC) give bitwise the weights of K=1 in-process, float16 gradients included', async () => {
    const { ShardServer } = await import('../../src/ps/shard-server.js');
    const { TEST_TOKEN } = await import('../helpers/cluster.js');
    const common = { workers: 2, batchSize: 16, trainLimit: 192, testLimit: 50, seed: 5, model: 'mlp' } as const;
    for (const gradDtype of ['float32', 'float16'] as const) {
      const servers = [new ShardServer({ token: TEST_TOKEN }), new ShardServer({ token: TEST_TOKEN })];
      try {
        const ports = await Promise.all(servers.map((s) => s.start('127.0.0.1', 0)));
        const one = await trainInProcess({ ...common, gradDtype, psShards: 1 });
        const two = await trainInProcess({ ...common, gradDtype, psShards: 2, psMode: 'process', psAddresses: ports.map((p) => `127.0.0.1:${p}`) });
        expect(two.report.status).toBe('completed');
        expect(two.report.steps).toBe(6);
        expect(two.report.psMode).toBe('process');
        expect(servers.map((s) => s.version)).toEqual([6, 6]);
        expect(two.weights.length).toBe(one.weights.length);
        expect(bits(two.weights).equals(bits(one.weights))).toBe(true);
        // the tensors went to the shards, and the report still counts their bytes
        expect(two.report.bytesPerStepPerWorker.sent).toBe(one.report.bytesPerStepPerWorker.sent);
        expect(two.report.bytesPerStepPerWorker.received).toBeGreaterThan(0);
      } finally {
        await Promise.all(servers.map((s) => s.close()));
      }
    }
  });
});
