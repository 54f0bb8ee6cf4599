/**
 * A shard's exchange connection (frames over TCP or TLS, shard.proto) as a worker, or anyone
 * else, sees it: the job token is required, bytes that do not parse are refused with
 * INVALID_ARGUMENT, a newer connection of the same worker replaces the older, and with TLS the
 * port speaks nothing but TLS.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import * as net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { RemoteShard } from '../../src/ps/shard-client.js';
import { ShardServer } from '../../src/ps/shard-server.js';
import { connectFrames, FrameReader, FrameWriter, writeFrame } from '../../src/rpc/frames.js';
import { exchangeCodecs, type ShardDownload__Output, type ShardUpload } from '../../src/rpc/proto.js';
import { SharedRegionWriter, sharedRegionTuning } from '../../src/rpc/shared-region.js';
import type { TlsFiles } from '../../src/rpc/tls.js';
import { silentLogger } from '../../src/telemetry/logger.js';
import { ShardLinks } from '../../src/worker/shard-links.js';
import { FlatWeightsTarget } from '../../src/model/weights-target.js';
import { makeTestPki, type TestPki } from '../helpers/certs.js';
import { mutate, prng, randomBytes } from '../helpers/fuzz.js';

const TOKEN = 'exchange-test-token';
const N = 300_000; // elements: a 1.2 MB slice, two chunks
const cleanups: Array<() => Promise<void> | void> = [];
let pki: TestPki;
let dir: string;

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'tf-exchange-'));
  pki = makeTestPki(dir);
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
  sharedRegionTuning.enabled = true;
});

/** A shard server initialized over its Control stream with weights w[i] = i / N. */
async function startShard(tls: TlsFiles = {}, clientTls: TlsFiles = {}): Promise<{ server: ShardServer; port: number; control: RemoteShard }> {
  const server = new ShardServer({ token: TOKEN, tls });
  const port = await server.start('127.0.0.1', 0);
  cleanups.push(() => server.close(100));
  const control = new RemoteShard({ address: `127.0.0.1:${port}`, range: { index: 0, offset: 0, length: N }, token: TOKEN, tls: clientTls, connectTimeoutMs: 10_000 });
  cleanups.push(() => control.close());
  const weights = Float32Array.from({ length: N }, (_, i) => i / N);
  await control.init({ jobId: 'j', gradDtype: 'float32', chunkBytes: 1 << 20, adam: { lr: 1e-3, beta1: 0.9, beta2: 0.999, epsilon: 1e-7 } }, { weights, m: new Float32Array(N), v: new Float32Array(N), iterations: 0, version: 0 });
  expect(control.exchangePort).toBe(server.exchangePort);
  return { server, port: server.exchangePort, control };
}

interface Session {
  socket: net.Socket;
  messages: ShardDownload__Output[];
  closed: Promise<void>;
  send(msg: ShardUpload): void;
  until(predicate: (m: ShardDownload__Output[]) => boolean): Promise<void>;
}

function open(port: number, tls: TlsFiles = {}): Session {
  const socket = connectFrames('127.0.0.1', port, tls);
  const messages: ShardDownload__Output[] = [];
  const waiters: Array<() => void> = [];
  const reader = new FrameReader((f) => {
    messages.push(exchangeCodecs().download.decode(Buffer.from(f)));
    for (const w of waiters.splice(0)) w();
  });
  socket.on('data', (c: Buffer) => reader.push(c));
  socket.on('error', () => undefined);
  const closed = new Promise<void>((resolve) => socket.on('close', () => resolve()));
  cleanups.push(() => void socket.destroy());
  return {
    socket,
    messages,
    closed,
    send: (msg) => new FrameWriter(socket).write(exchangeCodecs().upload.frame(msg)),
    until: async (predicate) => {
      while (!predicate(messages)) await Promise.race([new Promise<void>((r) => waiters.push(r)), closed.then(() => Promise.reject(new Error(`closed after ${messages.length} messages`)))]);
    },
  };
}

/** A TCP relay to `port` that counts the bytes each way, and whose connections can be cut. */
async function startRelay(port: number): Promise<{ port: number; up: () => number; down: () => number; cut: () => void }> {
  const relayed = new Set<net.Socket>();
  let up = 0;
  let down = 0;
  const relay = net.createServer((inbound) => {
    const outbound = net.connect(port, '127.0.0.1');
    relayed.add(inbound).add(outbound);
    inbound.on('data', (b: Buffer) => (up += b.length));
    outbound.on('data', (b: Buffer) => (down += b.length));
    inbound.pipe(outbound).pipe(inbound);
    const cut = () => (inbound.destroy(), outbound.destroy());
    inbound.on('error', cut).on('close', cut);
    outbound.on('error', cut).on('close', cut);
  });
  await new Promise<void>((r) => relay.listen(0, '127.0.0.1', r));
  cleanups.push(() => new Promise<void>((r) => relay.close(() => r())));
  return {
    port: (relay.address() as net.AddressInfo).port,
    up: () => up,
    down: () => down,
    cut: () => {
      for (const socket of relayed) socket.destroy();
      relayed.clear();
    },
  };
}

const refusal = (s: Session) => s.messages.find((m) => m.kind === 'refused')?.refused;

function weightsOf(messages: ShardDownload__Output[]): Float32Array {
  const bytes = Buffer.concat(messages.filter((m) => m.kind === 'weights').map((m) => m.weights!.chunk!.data));
  return new Float32Array(bytes.buffer, bytes.byteOffset, bytes.byteLength / 4);
}

describe('shard exchange connection', () => {
  it('sends the weights slice to a worker that says hello with the job token', async () => {
    const { port } = await startShard();
    const s = open(port);
    s.send({ hello: { workerId: 'w0', token: TOKEN } });
    await s.until((m) => weightsOf(m).length === N);
    expect(s.messages.every((m) => m.kind === 'weights' && Number(m.weights!.version) === 0)).toBe(true);
    const w = weightsOf(s.messages);
    expect([w[0], w[1], w[N - 1]]).toEqual([0, Math.fround(1 / N), Math.fround((N - 1) / N)]);
  });

  it.each([
    ['a wrong token', { hello: { workerId: 'w0', token: 'guess' } }, grpc.status.UNAUTHENTICATED, /wrong job token/],
    ['no token', { hello: { workerId: 'w0', token: '' } }, grpc.status.UNAUTHENTICATED, /missing job token/],
    ['a gradient before hello', { gradient: { step: 0, round: 1, chunk: { offset: 0, totalBytes: 4, data: Buffer.alloc(4) } } }, grpc.status.INVALID_ARGUMENT, /first message must be hello/],
    ['an invalid worker id', { hello: { workerId: '../x', token: TOKEN } }, grpc.status.INVALID_ARGUMENT, /valid worker id/],
  ] as const)('refuses %s with a status and closes, sending no weights', async (_name, msg, code, details) => {
    const { port } = await startShard();
    const s = open(port);
    s.send(msg as ShardUpload);
    await s.closed;
    expect(refusal(s)).toEqual({ code, details: expect.stringMatching(details) });
    expect(s.messages.filter((m) => m.kind === 'weights')).toEqual([]);
  });

  it('refuses bytes that do not parse, and a frame over the size limit, with INVALID_ARGUMENT', async () => {
    const { port } = await startShard();
    const garbage = open(port);
    writeFrame(garbage.socket, Buffer.from([0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f, 0x01]));
    await garbage.closed;
    expect(refusal(garbage)?.code).toBe(grpc.status.INVALID_ARGUMENT);
    const huge = open(port);
    huge.socket.write(Buffer.from([0x7f, 0xff, 0xff, 0xff]));
    await huge.closed;
    expect(refusal(huge)).toEqual({ code: grpc.status.INVALID_ARGUMENT, details: expect.stringMatching(/exceeds the 8388608-byte limit/) });
  });

  it('a newer connection of the same worker replaces the older one (ABORTED)', async () => {
    const { port } = await startShard();
    const first = open(port);
    first.send({ hello: { workerId: 'w0', token: TOKEN } });
    await first.until((m) => weightsOf(m).length === N);
    const second = open(port);
    second.send({ hello: { workerId: 'w0', token: TOKEN } });
    await first.closed;
    expect(refusal(first)).toEqual({ code: grpc.status.ABORTED, details: expect.stringMatching(/newer connection/) });
    await second.until((m) => weightsOf(m).length === N);
  });

  it('with TLS (mutual): a client with the CA and a client certificate gets the weights; plain TCP and a client without a certificate get nothing', async () => {
    const serverTls = { cert: pki.serverCert, key: pki.serverKey, ca: pki.caCert };
    const clientTls = { ca: pki.caCert, cert: pki.clientCert, key: pki.clientKey };
    const { port } = await startShard(serverTls, clientTls);
    const good = open(port, clientTls);
    good.send({ hello: { workerId: 'w0', token: TOKEN } });
    await good.until((m) => weightsOf(m).length === N);
    const plain = open(port);
    plain.send({ hello: { workerId: 'w1', token: TOKEN } });
    await plain.closed;
    expect(plain.messages).toEqual([]);
    const anonymous = open(port, { ca: pki.caCert });
    anonymous.send({ hello: { workerId: 'w2', token: TOKEN } });
    await anonymous.closed;
    expect(anonymous.messages).toEqual([]);
  });

  it('survives 2,400 random and mutated frames from authenticated connections, then still commits a well-formed step', async () => {
    const { port, control } = await startShard();
    const rand = prng(20261129);
    const { upload } = exchangeCodecs();
    const gradient = (round: number, offset: number, n: number) => {
      const f = upload.frame({ gradient: { step: 0, round, chunk: { offset, totalBytes: N * 4, data: Buffer.alloc(n, 1) } } });
      return f instanceof Uint8Array ? f : Buffer.concat([f.head, f.payload]);
    };
    let refused = 0;
    for (let c = 0; c < 300; c++) {
      const s = open(port);
      s.send({ hello: { workerId: `f${c % 7}`, token: TOKEN } });
      for (let f = 0; f < 8; f++) {
        const valid = gradient(1 + Math.floor(rand() * 3), Math.floor(rand() * 2) * 4096, 4096 + Math.floor(rand() * 4) * 4);
        writeFrame(s.socket, rand() < 0.3 ? randomBytes(rand, Math.floor(rand() * 200)) : mutate(rand, valid));
      }
      s.socket.end();
      await s.closed;
      if (refusal(s)) refused++;
    }
    expect(refused).toBeGreaterThan(100); // most connections were refused with a status, none crashed the shard
    // A well-formed step still goes through: w0 sends its whole slice, the shard prepares and commits.
    const good = open(port);
    good.send({ hello: { workerId: 'w0', token: TOKEN } });
    await good.until((m) => weightsOf(m).length === N);
    const prepared = control.prepare(0, 5, [{ workerId: 'w0', rank: 0, sampleCount: 32 }]);
    for (let offset = 0; offset < N * 4; offset += 1 << 20) {
      const n = Math.min(1 << 20, N * 4 - offset);
      good.send({ gradient: { step: 0, round: 5, chunk: { offset, totalBytes: N * 4, data: Buffer.alloc(n) } } });
    }
    expect(await prepared).toEqual({ ok: true, nonFiniteWorkerIds: [] });
    expect(await control.commit(5)).toBe(1);
  });

  it("a worker's links reconnect after the connection drops, take the weights again, and go on sending slices", async () => {
    const { port, control } = await startShard();
    // A TCP relay between the worker and the shard, whose connections the test cuts.
    const relay = await startRelay(port);
    const target = new FlatWeightsTarget(N, () => undefined);
    const weights = target.values;
    const links = new ShardLinks([{ address: '127.0.0.1:1', exchangePort: relay.port, offset: 0, length: N }], target, 'w0', TOKEN, {}, silentLogger);
    cleanups.push(() => links.close());
    await links.waitForVersion(0);
    expect(weights[N - 1]).toBe(Math.fround((N - 1) / N));
    weights.fill(0);
    relay.cut(); // the network drops the connection
    // Reconnected (after a backoff of about 100 ms): the shard sends version 0 again on hello.
    await new Promise<void>((resolve) => {
      const poll = setInterval(() => {
        if (weights[N - 1] !== 0) (clearInterval(poll), resolve());
      }, 20);
    });
    await links.waitForVersion(0);
    expect(weights[N - 1]).toBe(Math.fround((N - 1) / N));
    // And the step protocol works over the new connection.
    const prepared = control.prepare(0, 1, [{ workerId: 'w0', rank: 0, sampleCount: 32 }]);
    links.send(0, 1, new Float32Array(N), 1 << 20);
    expect(await prepared).toEqual({ ok: true, nonFiniteWorkerIds: [] });
    expect(await control.commit(1)).toBe(1);
    await links.waitForVersion(1);
  });
});

describe('shared regions between a worker and a shard on one host', () => {
  /** Three steps of one worker through a counting relay; the weights it ends with and the bytes the connection carried after the first weights. */
  async function threeSteps(shared: boolean): Promise<{ weights: Float32Array; up: number; down: number }> {
    sharedRegionTuning.enabled = shared;
    const { port, control } = await startShard();
    const relay = await startRelay(port);
    const target = new FlatWeightsTarget(N, () => undefined);
    const links = new ShardLinks([{ address: '127.0.0.1:1', exchangePort: relay.port, offset: 0, length: N }], target, 'w0', TOKEN, {}, silentLogger);
    cleanups.push(() => links.close());
    await links.waitForVersion(0);
    const [up0, down0] = [relay.up(), relay.down()];
    for (let step = 0; step < 3; step++) {
      const prepared = control.prepare(step, step + 1, [{ workerId: 'w0', rank: 0, sampleCount: 32 }]);
      links.send(step, step + 1, Float32Array.from({ length: N }, (_, i) => Math.sin(i * 0.001 + step)), 1 << 20);
      expect(await prepared).toEqual({ ok: true, nonFiniteWorkerIds: [] });
      expect(await control.commit(step + 1)).toBe(step + 1);
      await links.waitForVersion(step + 1);
    }
    return { weights: Float32Array.from(target.values), up: relay.up() - up0, down: relay.down() - down0 };
  }

  it('moves the slices through shared regions: the same weights, bit for bit, and only small frames on the connection', async () => {
    const framed = await threeSteps(false);
    const shared = await threeSteps(true);
    expect(framed.up).toBeGreaterThan(3 * N * 4);
    expect(framed.down).toBeGreaterThan(3 * N * 4);
    expect(shared.up).toBeLessThan(1_000);
    expect(shared.down).toBeLessThan(1_000);
    expect(Buffer.compare(Buffer.from(shared.weights.buffer), Buffer.from(framed.weights.buffer))).toBe(0);
    expect(shared.weights[0]).not.toBe(0); // three Adam steps moved it
  });

  it('a region offered with the wrong probe is not accepted (frames go on), and a shared gradient without an accepted region is refused', async () => {
    const { port } = await startShard();
    const region = SharedRegionWriter.create(N * 4);
    expect(region).toBeDefined();
    cleanups.push(() => region!.close());
    const probe = Buffer.from(region!.offer.probe);
    probe[0] ^= 0xff;
    const s = open(port);
    s.send({ hello: { workerId: 'w0', token: TOKEN, shared: { ...region!.offer, probe } } });
    await s.until((m) => weightsOf(m).length === N);
    expect(s.messages.some((m) => m.kind === 'sharedAccepted')).toBe(false);
    s.send({ sharedGradient: { step: 0, round: 1, sequence: region!.write(new Uint8Array(N * 4)), totalBytes: N * 4 } });
    await s.closed;
    expect(refusal(s)).toEqual({ code: grpc.status.INVALID_ARGUMENT, details: expect.stringMatching(/without an accepted shared region/) });
  });
});
