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

  it('--resume re-initializes fresh shard servers from the checkpoint: 1 epoch + resumed epoch 2 = 2 epochs in-process, bitwise', async () => {
    const { mkdtempSync, rmSync } = await import('node:fs');
    const { tmpdir } = await import('node:os');
    const { join } = await import('node:path');
    const { ShardServer } = await import('../../src/ps/shard-server.js');
    const { TEST_TOKEN } = await import('../helpers/cluster.js');
    const dir = mkdtempSync(join(tmpdir(), 'tf-shard-resume-'));
    const common = { workers: 2, batchSize: 16, trainLimit: 96, testLimit: 50, seed: 8, model: 'mlp' } as const;
    const serve = async () => {
      const servers = [new ShardServer({ token: TEST_TOKEN }), new ShardServer({ token: TEST_TOKEN })];
      const ports = await Promise.all(servers.map((s) => s.start('127.0.0.1', 0)));
      return { servers, psAddresses: ports.map((p) => `127.0.0.1:${p}`) };
    };
    try {
      const whole = await trainInProcess({ ...common, epochs: 2 });
      const first = await serve();
      await trainInProcess({ ...common, epochs: 1, psShards: 2, psMode: 'process', psAddresses: first.psAddresses, checkpointDir: dir });
      await Promise.all(first.servers.map((s) => s.close()));
      const second = await serve();
      const resumed = await trainInProcess({ ...common, epochs: 2, psShards: 2, psMode: 'process', psAddresses: second.psAddresses, checkpointDir: dir, resume: true });
      await Promise.all(second.servers.map((s) => s.close()));
      expect(resumed.report.resumedFromStep).toBe(3);
      expect(resumed.report.steps).toBe(6);
      expect(second.servers.map((s) => s.version)).toEqual([6, 6]);
      expect(bits(resumed.weights).equals(bits(whole.weights))).toBe(true);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
