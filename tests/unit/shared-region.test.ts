/**
 * Shared regions (src/rpc/shared-region.ts): what a writer puts in is what a reader on the same
 * host takes out, also from another process; a region is never opened without its probe and
 * size; data the writer replaced during or before a read is never taken as the message read;
 * and nothing is left in /dev/shm.
 */
import { readdirSync } from 'node:fs';
import { afterEach, describe, expect, it } from 'vitest';
import { execa } from 'execa';
import { SharedRegionReader, SharedRegionWriter, sharedRegionTuning } from '../../src/rpc/shared-region.js';
import { requireBuild } from '../helpers/process.js';

const open: Array<{ close(): void }> = [];
afterEach(() => {
  for (const r of open.splice(0)) r.close();
  sharedRegionTuning.enabled = true;
});

function writer(bytes: number): SharedRegionWriter {
  const w = SharedRegionWriter.create(bytes);
  if (!w) throw new Error('this host has no tmpfs /dev/shm: the shared regions cannot be tested here');
  open.push(w);
  return w;
}

function reader(offer: { address: string; probe: Uint8Array; bytes: number }): SharedRegionReader | undefined {
  const r = SharedRegionReader.open(offer);
  if (r) open.push(r);
  return r;
}

const pattern = (n: number, seed: number) => Uint8Array.from({ length: n }, (_, i) => (i * 31 + seed) & 0xff);
const ownFiles = () => readdirSync('/dev/shm').filter((f) => f.startsWith(`tensorfleet-${process.pid}-`));

describe('shared regions', () => {
  it('a reader takes exactly the bytes of the message it names, in pieces from any offset', () => {
    const w = writer(10_000);
    const r = reader(w.offer)!;
    expect(r).toBeDefined();
    const data = pattern(10_000, 7);
    const seq = w.write(data.subarray(0, 4_000), data.subarray(4_000));
    const a = new Uint8Array(6_000);
    const b = new Uint8Array(4_000);
    expect(r.read(seq, (read) => (read(a, 0), read(b, 6_000)))).toBe(true);
    expect(Buffer.compare(Buffer.concat([a, b]), Buffer.from(data))).toBe(0);
    expect(() => r.read(seq, (read) => read(new Uint8Array(8), 9_996))).toThrow(RangeError);
    expect(() => w.write(new Uint8Array(10_001))).toThrow(RangeError);
  });

  it('refuses a message the writer has replaced, before or during the read', () => {
    const w = writer(4_096);
    const r = reader(w.offer)!;
    const first = w.write(pattern(4_096, 1));
    const second = w.write(pattern(4_096, 2));
    const dst = new Uint8Array(4_096);
    expect(r.read(first, (read) => read(dst, 0))).toBe(false);
    expect(r.read(second, (read) => read(dst, 0))).toBe(true);
    expect(Buffer.compare(dst, pattern(4_096, 2))).toBe(0);
    // The writer replaces the data between the reader's check and its last look at the sequence.
    let third = 0;
    expect(r.read(second, (read) => (read(dst, 0), (third = w.write(pattern(4_096, 3)))))).toBe(false);
    expect(r.read(third, (read) => read(dst, 0))).toBe(true);
    expect(Buffer.compare(dst, pattern(4_096, 3))).toBe(0);
  });

  it('is opened only with its probe, its size and an address of the /proc/<pid>/fd/<fd> form', () => {
    const w = writer(1_024);
    const { address, probe, bytes } = w.offer;
    const wrongProbe = Buffer.from(probe);
    wrongProbe[3] ^= 1;
    expect(reader({ address, probe: wrongProbe, bytes })).toBeUndefined();
    expect(reader({ address, probe, bytes: bytes + 4 })).toBeUndefined();
    expect(reader({ address, probe: probe.subarray(0, 8), bytes })).toBeUndefined();
    for (const bad of ['/etc/passwd', `${address}/../../1`, `/proc/${process.pid}/fd/${2 ** 31}`, `/proc/self/fd/0`, `/proc/4194304999/fd/3`]) {
      expect(reader({ address: bad, probe, bytes })).toBeUndefined();
    }
    expect(reader({ address, probe, bytes })).toBeDefined();
    sharedRegionTuning.enabled = false;
    expect(reader({ address, probe, bytes })).toBeUndefined();
    expect(SharedRegionWriter.create(1_024)).toBeUndefined();
  });

  it('leaves nothing in /dev/shm: the file is unlinked as soon as it is made', () => {
    const before = ownFiles().length;
    const w = writer(1 << 20);
    expect(ownFiles().length).toBe(before);
    w.close();
    const r = SharedRegionReader.open(w.offer);
    expect(r).toBeUndefined(); // closed: the region is gone
  });

  it('another process on this host reads what this one wrote, through its /proc address', async () => {
    requireBuild();
    const w = writer(1 << 20);
    const data = pattern(1 << 20, 9);
    const seq = w.write(data);
    const child = `
      const { SharedRegionReader } = await import(${JSON.stringify(new URL('../../dist/rpc/shared-region.js', import.meta.url).href)});
      const r = SharedRegionReader.open({ address: process.argv[1], probe: Buffer.from(process.argv[2], 'hex'), bytes: Number(process.argv[3]) });
      if (!r) { console.log('not opened'); process.exit(0); }
      const dst = new Uint8Array(Number(process.argv[3]));
      const ok = r.read(Number(process.argv[4]), (read) => read(dst, 0));
      let sum = 0; for (const b of dst) sum = (sum * 31 + b) >>> 0;
      console.log(JSON.stringify({ ok, sum }));`;
    const { stdout } = await execa(process.execPath, ['--input-type=module', '-e', child, w.offer.address, w.offer.probe.toString('hex'), String(w.offer.bytes), String(seq)]);
    let sum = 0;
    for (const b of data) sum = (sum * 31 + b) >>> 0;
    expect(JSON.parse(stdout)).toEqual({ ok: true, sum });
  });
});
