/**
 * Shared regions: how the exchange moves a slice between two processes on the same host
 * without pushing its bytes through the loopback TCP stack (shard.proto, "Shared regions").
 *
 * The writer owns a file in tmpfs (/dev/shm): created, filled with zeros (so later writes never
 * need memory), and unlinked at once, so nothing is left behind whatever ends the process. The
 * peer opens it through `/proc/<writer pid>/fd/<fd>` and proves it reached the writer's file by
 * reading the random probe the writer sent it over the connection. Processes that do not share
 * a host, a /proc or a /dev/shm (other machines, other pods) fail that proof and keep the
 * connection's frames.
 *
 * Layout: [0, 16) the probe; [16, 24) the sequence number of the data now complete (a float64;
 * 0 while the writer rewrites it); from byte 64, the data. A message names the sequence it
 * sent: the reader checks it before and after reading the data (a sequence lock), so data the
 * writer replaced meanwhile (its peer had moved on to a newer message) is never taken.
 *
 * Bytes cost one copy into the page cache and one out of it: about a quarter of the CPU of a
 * loopback TCP transfer (`npx tsx bench/transport.ts`).
 */
import { randomBytes, timingSafeEqual } from 'node:crypto';
import * as fs from 'node:fs';

const SHM_DIR = '/dev/shm';
const TMPFS_MAGIC = 0x01021994;
const PROBE_BYTES = 16;
const SEQUENCE_AT = 16;
export const SHARED_DATA_AT = 64;
const ADDRESS = /^\/proc\/[1-9]\d{0,9}\/fd\/\d{1,9}$/;

/** Switch for comparisons and tests; TENSORFLEET_SHARED_EXCHANGE=0 keeps every byte on the connections. */
export const sharedRegionTuning = { enabled: process.env.TENSORFLEET_SHARED_EXCHANGE !== '0' };

/** What a writer tells its peer (over the authenticated connection) so the peer can open the region. */
export interface SharedRegionOffer {
  address: string;
  probe: Buffer;
  bytes: number;
}

let tmpfsChecked: boolean | undefined;

function shmIsTmpfs(): boolean {
  if (tmpfsChecked === undefined) {
    try {
      tmpfsChecked = fs.statfsSync(SHM_DIR).type === TMPFS_MAGIC;
    } catch {
      tmpfsChecked = false;
    }
  }
  return tmpfsChecked;
}

/** The writing side of a region of `bytes` data bytes. */
export class SharedRegionWriter {
  private sequence = 0;
  private readonly word = new Float64Array(1);
  private readonly wordBytes = new Uint8Array(this.word.buffer);
  private closed = false;

  private constructor(private readonly fd: number, readonly offer: SharedRegionOffer) {}

  /** A new region, or undefined where this host has none to give (no tmpfs /dev/shm, turned off, an error). */
  static create(bytes: number): SharedRegionWriter | undefined {
    if (!sharedRegionTuning.enabled || process.platform !== 'linux' || !(bytes > 0) || !shmIsTmpfs()) return undefined;
    const path = `${SHM_DIR}/tensorfleet-${process.pid}-${randomBytes(8).toString('hex')}`;
    let fd: number | undefined;
    try {
      fd = fs.openSync(path, fs.constants.O_RDWR | fs.constants.O_CREAT | fs.constants.O_EXCL | fs.constants.O_NOFOLLOW, 0o600);
      fs.unlinkSync(path);
      const probe = randomBytes(PROBE_BYTES);
      // Every page now, so a write during training never finds tmpfs full.
      const zeros = Buffer.alloc(Math.min(SHARED_DATA_AT + bytes, 1 << 20));
      for (let at = 0; at < SHARED_DATA_AT + bytes; at += zeros.length) writeAll(fd, zeros.subarray(0, Math.min(zeros.length, SHARED_DATA_AT + bytes - at)), at);
      writeAll(fd, probe, 0);
      return new SharedRegionWriter(fd, { address: `/proc/${process.pid}/fd/${fd}`, probe, bytes });
    } catch {
      if (fd !== undefined) fs.closeSync(fd);
      try {
        fs.unlinkSync(path);
      } catch {
        // created nothing, or already unlinked
      }
      return undefined;
    }
  }

  /** Writes `parts` (in order, at most `bytes` in all) as the region's data; returns their sequence number. */
  write(...parts: Uint8Array[]): number {
    if (this.closed) throw new Error('shared region closed');
    this.setSequence(0);
    let at = SHARED_DATA_AT;
    for (const part of parts) {
      if (at + part.byteLength > SHARED_DATA_AT + this.offer.bytes) throw new RangeError(`${at - SHARED_DATA_AT + part.byteLength} bytes do not fit a ${this.offer.bytes}-byte shared region`);
      writeAll(this.fd, part, at);
      at += part.byteLength;
    }
    this.setSequence(++this.sequence);
    return this.sequence;
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    fs.closeSync(this.fd);
  }

  private setSequence(value: number): void {
    this.word[0] = value;
    writeAll(this.fd, this.wordBytes, SEQUENCE_AT);
  }
}

/** The reading side: the peer's region, proven by its probe. */
export class SharedRegionReader {
  private readonly word = new Float64Array(1);
  private readonly wordBytes = new Uint8Array(this.word.buffer);
  private closed = false;

  private constructor(private readonly fd: number, readonly bytes: number) {}

  /**
   * Opens the region `offer` describes, or undefined when it is not the offering process's
   * region on this host (another machine or pod, a wrong probe or size, an address of another
   * form): the caller then keeps the connection's frames.
   */
  static open(offer: { address: string; probe: Uint8Array; bytes: number }): SharedRegionReader | undefined {
    if (!sharedRegionTuning.enabled || !ADDRESS.test(offer.address) || offer.probe.length !== PROBE_BYTES || !(offer.bytes > 0)) return undefined;
    let fd: number | undefined;
    try {
      fd = fs.openSync(offer.address, fs.constants.O_RDONLY | fs.constants.O_NONBLOCK);
      const stat = fs.fstatSync(fd);
      const probe = Buffer.alloc(PROBE_BYTES);
      if (!stat.isFile() || stat.size !== SHARED_DATA_AT + offer.bytes || fs.readSync(fd, probe, 0, PROBE_BYTES, 0) !== PROBE_BYTES || !timingSafeEqual(probe, offer.probe)) {
        fs.closeSync(fd);
        return undefined;
      }
      return new SharedRegionReader(fd, offer.bytes);
    } catch {
      if (fd !== undefined) fs.closeSync(fd);
      return undefined;
    }
  }

  /**
   * Reads the data of message `sequence`: `fill` is called with a `read(dst, from)` that copies
   * dst.byteLength bytes of the data, from byte `from` of it, into dst. True when every byte
   * read belongs to that message; false when the writer has replaced it (the bytes in the
   * destinations are then unusable, and a newer message follows).
   */
  read(sequence: number, fill: (read: (dst: Uint8Array, from: number) => void) => void): boolean {
    if (this.closed) return false;
    if (this.sequence() !== sequence) return false;
    fill((dst, from) => {
      if (from < 0 || from + dst.byteLength > this.bytes) throw new RangeError(`bytes ${from}..${from + dst.byteLength} are outside a ${this.bytes}-byte shared region`);
      readAll(this.fd, dst, SHARED_DATA_AT + from);
    });
    return this.sequence() === sequence;
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    fs.closeSync(this.fd);
  }

  private sequence(): number {
    readAll(this.fd, this.wordBytes, SEQUENCE_AT);
    return this.word[0]!;
  }
}

function writeAll(fd: number, bytes: Uint8Array, position: number): void {
  for (let done = 0; done < bytes.byteLength; ) {
    const n = fs.writeSync(fd, bytes, done, bytes.byteLength - done, position + done);
    if (n <= 0) throw new Error('shared region: short write');
    done += n;
  }
}

function readAll(fd: number, dst: Uint8Array, position: number): void {
  for (let done = 0; done < dst.byteLength; ) {
    const n = fs.readSync(fd, dst, done, dst.byteLength - done, position + done);
    if (n <= 0) throw new Error('shared region: short read');
    done += n;
  }
}
