import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { encodeIdx, readIdxFile } from '../../src/data/idx.js';
import { loadMnist, MNIST_FILE_NAMES } from '../../src/data/mnist.js';

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'tf-idx-'));
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

const images = (n: number) => encodeIdx([n, 28, 28], Uint8Array.from({ length: n * 784 }, (_, i) => i % 256));
const labels = (n: number) => encodeIdx([n], Uint8Array.from({ length: n }, (_, i) => i % 10));

function writeSet(files: Partial<Record<keyof typeof MNIST_FILE_NAMES, Uint8Array>>, gz = false): void {
  const all = { trainImages: images(5), trainLabels: labels(5), testImages: images(3), testLabels: labels(3), ...files };
  for (const [k, v] of Object.entries(all)) {
    const name = MNIST_FILE_NAMES[k as keyof typeof MNIST_FILE_NAMES];
    writeFileSync(join(dir, gz ? `${name}.gz` : name), gz ? gzipSync(v) : v);
  }
}

describe('IDX reader', () => {
  it('reads raw files', () => {
    writeFileSync(join(dir, 'a'), images(2));
    const a = readIdxFile(join(dir, 'a'), 3);
    expect(a.dims).toEqual([2, 28, 28]);
    expect(a.data.length).toBe(2 * 784);
    expect(a.data[300]).toBe(300 % 256);
  });

  it('reads gzipped files and a gzipped data folder', () => {
    writeSet({}, true);
    const data = loadMnist({ dataDir: dir });
    expect(data.train.count).toBe(5);
    expect(data.test.count).toBe(3);
    expect(Array.from(data.train.labels)).toEqual([0, 1, 2, 3, 4]);
  });

  it('applies train and test limits as prefixes', () => {
    writeSet({});
    const data = loadMnist({ dataDir: dir, trainLimit: 2, testLimit: 1 });
    expect(data.train.count).toBe(2);
    expect(data.train.images.length).toBe(2 * 784);
    expect(data.test.count).toBe(1);
  });

  it('rejects a truncated file, naming it', () => {
    const bytes = images(2);
    writeFileSync(join(dir, 'short'), bytes.subarray(0, bytes.length - 10));
    expect(() => readIdxFile(join(dir, 'short'), 3)).toThrow(/short: truncated: dimensions 2x28x28 need 1568 data bytes, the file has 1558/);
    writeFileSync(join(dir, 'tiny'), bytes.subarray(0, 9));
    expect(() => readIdxFile(join(dir, 'tiny'), 3)).toThrow(/tiny: truncated: 9 bytes, the header alone needs 16/);
  });

  it('rejects a wrong magic number', () => {
    const bytes = images(1);
    bytes[0] = 0x1a;
    writeFileSync(join(dir, 'bad'), bytes);
    expect(() => readIdxFile(join(dir, 'bad'), 3)).toThrow(/bad: not an IDX file: magic starts 0x1a00/);
    const typed = images(1);
    typed[2] = 0x0d;
    writeFileSync(join(dir, 'float'), typed);
    expect(() => readIdxFile(join(dir, 'float'), 3)).toThrow(/unsupported IDX element type 0x0d/);
  });

  it('rejects wrong dimensions', () => {
    writeFileSync(join(dir, 'labels-as-images'), labels(4));
    expect(() => readIdxFile(join(dir, 'labels-as-images'), 3)).toThrow(/wrong dimensions: the file has 1, expected 3/);
    writeSet({ trainImages: encodeIdx([5, 14, 14], new Uint8Array(5 * 196)) });
    expect(() => loadMnist({ dataDir: dir })).toThrow(/train-images-idx3-ubyte: wrong image size 14x14, expected 28x28/);
  });

  it('rejects trailing data, mismatched counts, bad labels, corrupt gzip and missing files', () => {
    writeFileSync(join(dir, 'long'), Buffer.concat([images(1), Buffer.alloc(3)]));
    expect(() => readIdxFile(join(dir, 'long'), 3)).toThrow(/trailing data/);
    writeSet({ trainLabels: labels(4) });
    expect(() => loadMnist({ dataDir: dir })).toThrow(/has 4 labels but .* has 5 images/);
    writeSet({ testLabels: encodeIdx([3], Uint8Array.from([1, 12, 3])) });
    expect(() => loadMnist({ dataDir: dir })).toThrow(/label 12 at index 1 is outside 0..9/);
    writeFileSync(join(dir, 'gz'), Buffer.from([0x1f, 0x8b, 1, 2, 3]));
    expect(() => readIdxFile(join(dir, 'gz'), 1)).toThrow(/gz: corrupt gzip data/);
    expect(() => loadMnist({ dataDir: join(dir, 'nope') })).toThrow(/nope: data folder not found/);
    rmSync(join(dir, MNIST_FILE_NAMES.testImages));
    expect(() => loadMnist({ dataDir: dir })).toThrow(/t10k-images-idx3-ubyte: file not found \(also looked for t10k-images-idx3-ubyte.gz\)/);
  });

  it('the embedded MNIST is the canonical one', () => {
    const data = loadMnist();
    expect(data.train.count).toBe(60000);
    expect(data.test.count).toBe(10000);
    const counts = new Array(10).fill(0);
    for (const l of data.train.labels) counts[l]++;
    expect(counts).toEqual([5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]);
  });
});
