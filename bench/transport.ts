/**
 * What one megabyte costs on each transport the project uses between processes: a round trip of
 * --bytes each way (default 1,387,924: a 2-worker co-located slice of the reference CNN's
 * float32 gradient) in ~1 MiB messages, between this process and a child echoing it back.
 *   grpc:   a grpc-js bidi stream with raw-buffer messages and the project's 16 MiB HTTP/2
 *           windows (how workers reach the coordinator, and how they reached shards before);
 *   frames: length-prefixed frames over TCP (rpc/frames.ts: the shard exchange connection);
 *   shared: the same connection carrying only a small frame per message, the bytes going through
 *           each side's shared region (rpc/shared-region.ts: a worker and a shard on one host).
 * Prints median round-trip time and CPU per round trip (this process and the echo's), and writes
 * bench/results/transport.json.
 *
 *   npx tsx bench/transport.ts [--bytes 1387924] [--rounds 300] [--repeats 3]
 */
import { fork } from 'node:child_process';
import * as net from 'node:net';
import * as grpc from '@grpc/grpc-js';
import { FrameReader, FrameWriter } from '../src/rpc/frames.js';
import { SharedRegionReader, SharedRegionWriter, type SharedRegionOffer } from '../src/rpc/shared-region.js';
import { clientChannelOptions, raiseServerWindows, serverOptions } from '../src/rpc/flow-control.js';
import { median, parseArgs, printTable, writeResult } from './lib.js';

const a = parseArgs(process.argv.slice(2).filter((x) => !x.startsWith('--echo')), { bytes: 1387924, rounds: 300, repeats: 3 });
const CHUNK = 1 << 20;
const identity = (b: Buffer) => b;
const service: grpc.ServiceDefinition = {
  Echo: { path: '/bench.Transport/Echo', requestStream: true, responseStream: true, requestSerialize: identity, requestDeserialize: identity, responseSerialize: identity, responseDeserialize: identity },
};
const payload = Buffer.alloc(a.bytes, 7);
const chunks = (): Buffer[] => Array.from({ length: Math.ceil(a.bytes / CHUNK) }, (_, i) => payload.subarray(i * CHUNK, Math.min(a.bytes, (i + 1) * CHUNK)));

/** Shared regions: the first frame each way is the sender's region offer (JSON), then one frame (the sequence) per message. */
function offerFrame(region: SharedRegionWriter): Buffer {
  return Buffer.from(JSON.stringify({ ...region.offer, probe: region.offer.probe.toString('hex') }));
}

function openOffer(frame: Buffer): SharedRegionReader {
  const o = JSON.parse(frame.toString()) as Omit<SharedRegionOffer, 'probe'> & { probe: string };
  const r = SharedRegionReader.open({ ...o, probe: Buffer.from(o.probe, 'hex') });
  if (!r) throw new Error('the shared region could not be opened: this host has no tmpfs /dev/shm');
  return r;
}

/** Sends `payload` through `region`, announced by a frame with its sequence. */
function sendShared(region: SharedRegionWriter, writer: FrameWriter): void {
  const seq = Buffer.alloc(8);
  seq.writeDoubleLE(region.write(payload));
  writer.write(seq);
}

/** Reads the message a sequence frame announces into `dst`. */
function takeShared(region: SharedRegionReader, frame: Buffer, dst: Uint8Array): void {
  if (!region.read(frame.readDoubleLE(0), (read) => read(dst, 0))) throw new Error('shared region overwritten during a read');
}

/** Counts arriving bytes; calls `full` each time another `a.bytes` have arrived. */
function counter(full: () => void): (n: number) => void {
  let got = 0;
  return (n) => {
    got += n;
    while (got >= a.bytes) {
      got -= a.bytes;
      full();
    }
  };
}

async function echo(kind: string): Promise<void> {
  const cpu = () => {
    const c = process.cpuUsage();
    return (c.user + c.system) / 1000;
  };
  process.on('message', () => process.send!({ cpuMs: cpu() }));
  if (kind === 'grpc') {
    const server = new grpc.Server(serverOptions());
    server.addService(service, {
      Echo: (call: grpc.ServerDuplexStream<Buffer, Buffer>) => {
        const count = counter(() => chunks().forEach((c) => call.write(c)));
        call.on('data', (b: Buffer) => count(b.length));
        call.on('end', () => call.end());
      },
    });
    raiseServerWindows(server, 'beforeBind');
    const port = await new Promise<number>((resolve, reject) => server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p))));
    raiseServerWindows(server, 'afterBind');
    process.send!({ port });
  } else if (kind === 'shared') {
    const server = net.createServer((socket) => {
      socket.setNoDelay(true);
      const writer = new FrameWriter(socket);
      const own = SharedRegionWriter.create(a.bytes)!;
      const dst = new Uint8Array(a.bytes);
      let peer: SharedRegionReader | undefined;
      const reader = new FrameReader((f) => {
        if (!peer) {
          peer = openOffer(f);
          writer.write(offerFrame(own));
          return;
        }
        takeShared(peer, f, dst);
        sendShared(own, writer);
      });
      socket.on('data', (b: Buffer) => reader.push(b));
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    process.send!({ port: (server.address() as net.AddressInfo).port });
  } else {
    const server = net.createServer((socket) => {
      socket.setNoDelay(true);
      const writer = new FrameWriter(socket);
      const count = counter(() => chunks().forEach((c) => writer.write(c)));
      const reader = new FrameReader((f) => count(f.length));
      socket.on('data', (b: Buffer) => reader.push(b));
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    process.send!({ port: (server.address() as net.AddressInfo).port });
  }
}

interface Measured {
  rtMs: number;
  clientCpuMs: number;
  echoCpuMs: number;
}

async function measure(kind: string): Promise<Measured> {
  const child = fork(new URL(import.meta.url).pathname, [`--echo=${kind}`], { execArgv: process.execArgv });
  const { port } = await new Promise<{ port: number }>((r) => child.once('message', r as (m: unknown) => void));
  let roundTrip: () => Promise<void>;
  let close: () => void;
  let done: () => void = () => undefined;
  const arrived = counter(() => done());
  if (kind === 'grpc') {
    const Client = grpc.makeGenericClientConstructor(service, 'Transport');
    const client = new Client(`127.0.0.1:${port}`, grpc.credentials.createInsecure(), clientChannelOptions());
    const call = (client as unknown as { Echo: () => grpc.ClientDuplexStream<Buffer, Buffer> }).Echo();
    call.on('data', (b: Buffer) => arrived(b.length));
    call.on('error', () => undefined);
    roundTrip = () => new Promise<void>((r) => ((done = r), chunks().forEach((c) => call.write(c))));
    close = () => (call.cancel(), client.close());
  } else if (kind === 'shared') {
    const socket = net.connect(port, '127.0.0.1');
    socket.setNoDelay(true);
    await new Promise((r) => socket.once('connect', r));
    const writer = new FrameWriter(socket);
    const own = SharedRegionWriter.create(a.bytes);
    if (!own) throw new Error('this host has no tmpfs /dev/shm: no shared regions to measure');
    const dst = new Uint8Array(a.bytes);
    let peer: SharedRegionReader | undefined;
    const opened = new Promise<void>((resolve) => {
      const reader = new FrameReader((f) => {
        if (!peer) {
          peer = openOffer(f);
          return resolve();
        }
        takeShared(peer, f, dst);
        arrived(a.bytes);
      });
      socket.on('data', (b: Buffer) => reader.push(b));
    });
    writer.write(offerFrame(own));
    await opened;
    roundTrip = () => new Promise<void>((r) => ((done = r), sendShared(own, writer)));
    close = () => (socket.destroy(), own.close(), peer?.close());
  } else {
    const socket = net.connect(port, '127.0.0.1');
    socket.setNoDelay(true);
    await new Promise((r) => socket.once('connect', r));
    const writer = new FrameWriter(socket);
    const reader = new FrameReader((f) => arrived(f.length));
    socket.on('data', (b: Buffer) => reader.push(b));
    roundTrip = () => new Promise<void>((r) => ((done = r), chunks().forEach((c) => writer.write(c))));
    close = () => socket.destroy();
  }
  const echoCpu = () => new Promise<number>((r) => (child.once('message', (m) => r((m as { cpuMs: number }).cpuMs)), child.send('cpu')));
  for (let i = 0; i < 30; i++) await roundTrip();
  const echo0 = await echoCpu();
  const cpu0 = process.cpuUsage();
  const times: number[] = [];
  for (let i = 0; i < a.rounds; i++) {
    const t0 = performance.now();
    await roundTrip();
    times.push(performance.now() - t0);
  }
  const cpu = process.cpuUsage(cpu0);
  const echo1 = await echoCpu();
  close();
  child.kill();
  return { rtMs: median(times), clientCpuMs: (cpu.user + cpu.system) / 1000 / a.rounds, echoCpuMs: (echo1 - echo0) / a.rounds };
}

const echoArg = process.argv.find((x) => x.startsWith('--echo='));
if (echoArg) {
  await echo(echoArg.slice('--echo='.length));
} else {
  const kinds = ['grpc', 'frames', 'shared'];
  const runs: Record<string, Measured[]> = { grpc: [], frames: [], shared: [] };
  for (let r = 0; r < a.repeats; r++) for (const k of kinds) runs[k]!.push(await measure(k));
  const summary = kinds.map((k) => ({
    transport: k,
    roundTripMs: median(runs[k]!.map((m) => m.rtMs)),
    clientCpuMs: median(runs[k]!.map((m) => m.clientCpuMs)),
    echoCpuMs: median(runs[k]!.map((m) => m.echoCpuMs)),
  }));
  console.log(`${a.bytes} bytes each way per round trip, ${a.rounds} round trips x ${a.repeats} (alternating), medians`);
  printTable(
    ['transport', 'round trip ms', 'CPU ms per round trip (this side / echo)'],
    summary.map((s) => [s.transport, s.roundTripMs.toFixed(2), `${s.clientCpuMs.toFixed(2)} / ${s.echoCpuMs.toFixed(2)}`]),
  );
  const path = writeResult('transport', { bytes: a.bytes, rounds: a.rounds, repeats: a.repeats, summary, runs });
  console.log(`written to ${path}`);
  console.log(JSON.stringify(summary));
}
