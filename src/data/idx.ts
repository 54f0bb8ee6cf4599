/**
 * Reader for the IDX format of the MNIST files: a 4-byte magic (0, 0, type code, number of
 * dimensions), one big-endian uint32 per dimension, then the data. Files may be gzipped.
 */
import { readFileSync } from 'node:fs';
import { gunzipSync } from 'node:zlib';
import { DataFileError } from './errors.js';

export interface IdxArray {
  dims: number[];
  data: Uint8Array;
}

const UNSIGNED_BYTE = 0x08;

/** Parses IDX bytes holding unsigned bytes with `expectedRank` dimensions. `name` is used in errors. */
export function parseIdx(bytes: Uint8Array, name: string, expectedRank: number): IdxArray {
  if (bytes.length < 4) throw new DataFileError(name, `truncated: ${bytes.length} bytes, too short for an IDX header`);
  if (bytes[0] !== 0 || bytes[1] !== 0) {
    throw new DataFileError(name, `not an IDX file: magic starts 0x${hex(bytes[0]!)}${hex(bytes[1]!)}, expected 0x0000`);
  }
  const type = bytes[2]!;
  const rank = bytes[3]!;
  if (type !== UNSIGNED_BYTE) {
    throw new DataFileError(name, `unsupported IDX element type 0x${hex(type)}: only unsigned bytes (0x08) are accepted`);
  }
  if (rank !== expectedRank) {
    throw new DataFileError(name, `wrong dimensions: the file has ${rank}, expected ${expectedRank}`);
  }
  const headerBytes = 4 + 4 * rank;
  if (bytes.length < headerBytes) {
    throw new DataFileError(name, `truncated: ${bytes.length} bytes, the header alone needs ${headerBytes}`);
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const dims: number[] = [];
  for (let i = 0; i < rank; i++) dims.push(view.getUint32(4 + 4 * i, false));
  const expected = dims.reduce((a, b) => a * b, 1);
  const actual = bytes.length - headerBytes;
  if (actual < expected) {
    throw new DataFileError(name, `truncated: dimensions ${dims.join('x')} need ${expected} data bytes, the file has ${actual}`);
  }
  if (actual > expected) {
    throw new DataFileError(name, `corrupt: dimensions ${dims.join('x')} need ${expected} data bytes, the file has ${actual} (trailing data)`);
  }
  return { dims, data: bytes.subarray(headerBytes) };
}

/** Reads an IDX file, gunzipping it when it starts with the gzip magic. */
export function readIdxFile(path: string, expectedRank: number): IdxArray {
  let raw: Uint8Array;
  try {
    raw = readFileSync(path);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new DataFileError(path, code === 'ENOENT' ? 'file not found' : `cannot read (${code ?? String(err)})`, { cause: err });
  }
  if (raw.length >= 2 && raw[0] === 0x1f && raw[1] === 0x8b) {
    try {
      raw = gunzipSync(raw);
    } catch (err) {
      throw new DataFileError(path, `corrupt gzip data (${(err as Error).message})`, { cause: err });
    }
  }
  return parseIdx(raw, path, expectedRank);
}

/** Encodes unsigned bytes as an IDX file (used to write test fixtures and subsets). */
export function encodeIdx(dims: number[], data: Uint8Array): Uint8Array {
  const out = new Uint8Array(4 + 4 * dims.length + data.length);
  out[2] = UNSIGNED_BYTE;
  out[3] = dims.length;
  const view = new DataView(out.buffer);
  dims.forEach((d, i) => view.setUint32(4 + 4 * i, d, false));
  out.set(data, 4 + 4 * dims.length);
  return out;
}

function hex(n: number): string {
  return n.toString(16).padStart(2, '0');
}
