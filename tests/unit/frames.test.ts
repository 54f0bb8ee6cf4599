/** Length-prefixed frames (the shard exchange connection) and the host of an address. */
import * as net from 'node:net';
import { describe, expect, it } from 'vitest';
import { FrameError, FrameReader, FrameWriter, hostOf } from '../../src/rpc/frames.js';

function frame(n: number, seed: number): Buffer {
  const b = Buffer.allocUnsafe(4 + n);
  b.writeUInt32BE(n, 0);
  for (let i = 0; i < n; i++) b[4 + i] = (i * 13 + seed) & 255;
  return b;
}

/** A deterministic generator of piece sizes (a small LCG). */
function pieces(total: number, seed: number, max: number): number[] {
  const out: number[] = [];
  let s = seed;
  let left = total;
  while (left > 0) {
    s = (s * 1103515245 + 12345) % 2 ** 31;
    const n = Math.min(left, 1 + (s % max));
    out.push(n);
    left -= n;
  }
  return out;
}

describe('FrameReader', () => {
  const sizes = [0, 1, 3, 4, 5, 70_000, 1 << 20, 17];
  const stream = Buffer.concat(sizes.map((n, i) => frame(n, i)));

  it.each([
    ['one buffer', stream.length],
    ['1-byte pieces', 1],
    ['pieces up to 7 bytes', 7],
    ['pieces up to 64 KiB', 65_536],
  ])('gives the frames back whole and in order from %s', (_name, max) => {
    const got: Buffer[] = [];
    const reader = new FrameReader((f) => got.push(Buffer.from(f)));
    let pos = 0;
    for (const n of max === stream.length ? [stream.length] : pieces(stream.length, 7, max)) {
      reader.push(stream.subarray(pos, pos + n));
      pos += n;
    }
    expect(got.map((f) => f.length)).toEqual(sizes);
    got.forEach((f, i) => expect(f.equals(frame(sizes[i]!, i).subarray(4))).toBe(true));
  });

  it('refuses a frame over the limit from its length prefix alone', () => {
    const reader = new FrameReader(() => undefined, 1000);
    reader.push(frame(1000, 1));
    const big = Buffer.alloc(4);
    big.writeUInt32BE(1001, 0);
    expect(() => reader.push(big.subarray(0, 2))).not.toThrow();
    expect(() => reader.push(big.subarray(2))).toThrow(FrameError);
    expect(() => new FrameReader(() => undefined).push(Buffer.from([0xff, 0xff, 0xff, 0xff]))).toThrow(/exceeds the 8388608-byte limit/);
  });
});

describe('hostOf', () => {
  it('takes the host of host:port, [v6]:port and bare hosts', () => {
    expect(hostOf('127.0.0.1:5000')).toBe('127.0.0.1');
    expect(hostOf('shard-0.tensorfleet:7000')).toBe('shard-0.tensorfleet');
    expect(hostOf('[::1]:5000')).toBe('::1');
    expect(hostOf('[fd00::5]:1')).toBe('fd00::5');
    expect(hostOf('localhost')).toBe('localhost');
    expect(hostOf('fd00::5')).toBe('fd00::5');
  });
});

describe('FrameWriter', () => {
  it('delivers every frame intact through a socket whose reader is paused, large payloads sent as they are', async () => {
    const server = net.createServer();
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const accepted = new Promise<net.Socket>((r) => server.once('connection', r));
    const client = net.connect((server.address() as net.AddressInfo).port, '127.0.0.1');
    const peer = await accepted;
    try {
      peer.pause(); // the kernel buffers fill: later writes stay queued in the socket
      const writer = new FrameWriter(client);
      const sizes = Array.from({ length: 60 }, (_, i) => [(1 << 20) + 7, 400_000, 10][i % 3]!);
      let flushed = 0;
      sizes.forEach((n, i) => {
        // Large messages as a head and an uncopied payload (each frame's bytes all equal i & 255).
        const message = n > 100 ? { head: Buffer.alloc(5, i & 255), payload: new Uint8Array(n - 5).fill(i & 255) } : Buffer.alloc(n, i & 255);
        writer.write(message, () => flushed++);
      });
      expect(client.writableLength).toBeGreaterThan(0);
      const got: Array<[number, boolean]> = [];
      const reader = new FrameReader((f) => got.push([f.length, f.every((b) => b === (got.length & 255))]));
      const all = new Promise<void>((resolve) => {
        const giveUp = setTimeout(resolve, 10_000); // a corrupted length prefix would leave the reader waiting
        peer.on('data', (c: Buffer) => {
          try {
            reader.push(c);
          } catch {
            resolve(); // a corrupted length prefix over the limit
          }
          if (got.length === sizes.length) {
            clearTimeout(giveUp);
            resolve();
          }
        });
      });
      peer.resume();
      await all;
      expect(got.map(([n]) => n)).toEqual(sizes);
      expect(got.every(([, intact]) => intact)).toBe(true);
      expect(flushed).toBe(sizes.length);
    } finally {
      client.destroy();
      peer.destroy();
      server.close();
    }
  });
});
