/**
 * Checkpoints: everything needed to continue a run as if it never stopped. One file per
 * checkpoint, `ckpt-<step>.tfck`: an 8-byte magic, a uint32 header length, a JSON header, the
 * float32 weights and Adam slots (4-byte aligned), and a SHA-256 of all of it. Written to a
 * temp file, fsynced, renamed, and the folder fsynced, so a crash leaves the old or the new
 * checkpoint, never half of one. The newest KEEP are kept.
 */
import { createHash } from 'node:crypto';
import { closeSync, fsyncSync, mkdirSync, openSync, readdirSync, readFileSync, renameSync, rmSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import type { EpochSummary } from './report.js';

const MAGIC = Buffer.from('TFCKPT01', 'ascii');
const KEEP = 2;
const FILE = /^ckpt-(\d{12})\.tfck$/;
const TMP = /^ckpt-\d{12}\.tfck\.tmp-\d+$/;

export interface CheckpointHeader {
  configHash: string;
  /** Human-readable form of what the hash covers, for error messages. */
  config: string;
  /** Committed steps so far (the next step's number). */
  step: number;
  epoch: number;
  cursor: number;
  version: number;
  adamIterations: number;
  seed: number;
  trainedSamples: number;
  trainMs: number;
  abortedSteps: number;
  membershipChanges: number;
  history: EpochSummary[];
  /** The current epoch's committed steps, samples and loss sum so far. */
  epochProgress: { steps: number; samples: number; lossSum: number };
  size: number;
  savedAt: string;
}

export interface Checkpoint {
  header: CheckpointHeader;
  weights: Float32Array;
  m: Float32Array;
  v: Float32Array;
  path: string;
}

export class CheckpointError extends Error {
  override readonly name = 'CheckpointError';
  constructor(readonly path: string, problem: string, options?: { cause?: unknown }) {
    super(`checkpoint ${path}: ${problem}`, options);
  }
}

function fsyncDir(dir: string): void {
  const fd = openSync(dir, 'r');
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

export function saveCheckpoint(dir: string, header: CheckpointHeader, weights: Float32Array, m: Float32Array, v: Float32Array): string {
  mkdirSync(dir, { recursive: true });
  const json = Buffer.from(JSON.stringify(header), 'utf8');
  const pad = (4 - ((MAGIC.length + 4 + json.length) % 4)) % 4;
  const head = Buffer.alloc(MAGIC.length + 4 + json.length + pad, 0x20);
  MAGIC.copy(head, 0);
  head.writeUInt32LE(json.length + pad, MAGIC.length);
  json.copy(head, MAGIC.length + 4);
  const parts = [head, ...[weights, m, v].map((a) => Buffer.from(a.buffer, a.byteOffset, a.byteLength))];
  const hash = createHash('sha256');
  for (const p of parts) hash.update(p);
  parts.push(hash.digest());
  const path = join(dir, `ckpt-${String(header.step).padStart(12, '0')}.tfck`);
  const tmp = `${path}.tmp-${process.pid}`;
  const fd = openSync(tmp, 'w');
  try {
    for (const p of parts) writeSync(fd, p);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  renameSync(tmp, path);
  fsyncDir(dir);
  for (const old of listCheckpoints(dir).slice(KEEP)) rmSync(join(dir, old), { force: true });
  // Temp files of writers that died mid-write (never this process's own: it just renamed it).
  for (const name of readdirSync(dir)) if (TMP.test(name)) rmSync(join(dir, name), { force: true });
  return path;
}

/** Checkpoint file names, newest first. */
export function listCheckpoints(dir: string): string[] {
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw new CheckpointError(dir, `cannot list the folder (${(err as NodeJS.ErrnoException).code})`, { cause: err });
  }
  return names.filter((n) => FILE.test(n)).sort().reverse();
}

export function readCheckpoint(path: string): Checkpoint {
  let bytes: Buffer;
  try {
    bytes = readFileSync(path);
  } catch (err) {
    throw new CheckpointError(path, `cannot read (${(err as NodeJS.ErrnoException).code})`, { cause: err });
  }
  if (bytes.length < MAGIC.length + 4 + 32 || !bytes.subarray(0, MAGIC.length).equals(MAGIC)) {
    throw new CheckpointError(path, 'not a tensorfleet checkpoint (bad magic or too short)');
  }
  const body = bytes.subarray(0, bytes.length - 32);
  if (!createHash('sha256').update(body).digest().equals(bytes.subarray(bytes.length - 32))) {
    throw new CheckpointError(path, 'corrupt: checksum mismatch');
  }
  const headerLength = body.readUInt32LE(MAGIC.length);
  const start = MAGIC.length + 4 + headerLength;
  let header: CheckpointHeader;
  try {
    header = JSON.parse(body.subarray(MAGIC.length + 4, start).toString('utf8')) as CheckpointHeader;
  } catch (err) {
    throw new CheckpointError(path, 'corrupt header', { cause: err });
  }
  const floats = header.size;
  if (!Number.isInteger(floats) || body.length - start !== 3 * 4 * floats) {
    throw new CheckpointError(path, `holds ${body.length - start} tensor bytes; the header says 3 x ${floats} floats`);
  }
  const copy = (i: number) => new Float32Array(body.buffer.slice(body.byteOffset + start + i * 4 * floats, body.byteOffset + start + (i + 1) * 4 * floats));
  return { header, weights: copy(0), m: copy(1), v: copy(2), path };
}

/** The newest checkpoint in `dir`, or undefined when there is none. */
export function readLatestCheckpoint(dir: string): Checkpoint | undefined {
  const newest = listCheckpoints(dir)[0];
  return newest ? readCheckpoint(join(dir, newest)) : undefined;
}
