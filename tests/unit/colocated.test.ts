/** Co-located shards: addresses from the peer a worker connects from, options, and a shard's local exchange. */
import { networkInterfaces } from 'node:os';
import { describe, expect, it } from 'vitest';
import { compileCoordinatorOptions } from '../../src/coordinator/options.js';
import { shardAddressOf } from '../../src/coordinator/server.js';
import { ShardServer } from '../../src/ps/shard-server.js';
import type { ShardDownload } from '../../src/rpc/proto.js';
import { shardBindHosts } from '../../src/worker/worker.js';

describe('shardAddressOf', () => {
  it('puts the worker\'s shard port on the address its stream comes from', () => {
    expect(shardAddressOf('127.0.0.1:54321', 40001)).toBe('127.0.0.1:40001');
    expect(shardAddressOf('10.1.2.3:1', 7)).toBe('10.1.2.3:7');
    expect(shardAddressOf('::ffff:10.0.0.7:5555', 40002)).toBe('10.0.0.7:40002');
    expect(shardAddressOf('::1:5555', 40003)).toBe('[::1]:40003');
    expect(shardAddressOf('[fd00::5]:5555', 40004)).toBe('[fd00::5]:40004');
    expect(shardAddressOf('fd00::5:5555', 40005)).toBe('[fd00::5]:40005');
  });
});

describe('colocated options', () => {
  const base = { workers: 2, insecure: true, psMode: 'colocated' };
  it('takes the shard count from the members and keeps a rollback point every 50 steps by default', () => {
    const o = compileCoordinatorOptions(base);
    expect(o.psMode).toBe('colocated');
    expect(o.psShards).toBe(1);
    expect(o.snapshotEvery).toBe(50);
    expect(compileCoordinatorOptions({ ...base, snapshotEvery: 5 }).snapshotEvery).toBe(5);
  });
  it('refuses a shard count, TLS and a zero snapshot interval with a clear error', () => {
    expect(() => compileCoordinatorOptions({ ...base, psShards: 2 })).toThrow(/number of members/);
    expect(() => compileCoordinatorOptions({ ...base, insecure: false, token: 't', tlsCert: 'c.pem', tlsKey: 'k.pem' })).toThrow(/does not support TLS/);
    expect(() => compileCoordinatorOptions({ ...base, snapshotEvery: 0 })).toThrow(/snapshotEvery/);
  });
});

describe('ShardServer.connectLocal', () => {
  it('delivers the weights on attach and after every commit, and takes gradient chunks as an exchange connection would', async () => {
    const server = new ShardServer({ token: undefined });
    const got: ShardDownload[] = [];
    const local = server.connectLocal('w0', (msg) => got.push(structuredClone(msg)));
    expect(got).toEqual([]); // not initialized yet: nothing to send
    await server.flushed(); // nothing in flight
    local.close();
    // A gradient before Init is a protocol error, as on the wire
    const again = server.connectLocal('w0', () => undefined);
    expect(() => again.send({ kind: 'gradient', gradient: { step: 0, round: 1, chunk: { offset: 0, totalBytes: 4, data: Buffer.alloc(4) } } })).toThrow(/initialized/);
    again.close();
    await server.close();
  });
});

describe('shardBindHosts', () => {
  it('listens on the loopback the coordinator is reached on, else on every interface', () => {
    expect(shardBindHosts('127.0.0.1:50051')).toEqual({ hosts: ['127.0.0.1'] });
    expect(shardBindHosts('[::1]:50051')).toEqual({ hosts: ['::1'] });
    expect(shardBindHosts('localhost:50051')).toEqual({ hosts: ['127.0.0.1', '::1'] });
    expect(shardBindHosts('tensorfleet-coordinator:50051')).toEqual({ hosts: ['::'], fallback: '0.0.0.0' });
    expect(shardBindHosts('10.0.0.7:50051')).toEqual({ hosts: ['::'], fallback: '0.0.0.0' });
  });

  const ipv6Loopback = Object.values(networkInterfaces()).some((list) => list?.some((i) => i.address === '::1'));
  it.skipIf(!ipv6Loopback)('a shard bound as for localhost answers on both loopback families, on one port', async () => {
    const { createConnection } = await import('node:net');
    const server = new ShardServer({ token: undefined });
    try {
      const port = await server.start('127.0.0.1', 0);
      await server.start('::1', port);
      for (const host of ['127.0.0.1', '::1']) {
        await new Promise<void>((resolve, reject) => {
          const socket = createConnection({ host, port }, () => {
            socket.destroy();
            resolve();
          });
          socket.on('error', reject);
        });
      }
    } finally {
      await server.close();
    }
  });
});
