import { describe, expect, it } from 'vitest';
import { ChunkAssembler, splitIntoChunks } from '../../src/rpc/chunks.js';

describe('tensor chunks', () => {
  it('split into views and reassemble bit for bit', () => {
    const values = Float32Array.from({ length: 1000 }, (_, i) => Math.sin(i) * 1e3);
    const chunks = splitIntoChunks(values, 1024);
    expect(chunks.map((c) => c.data.length)).toEqual([1024, 1024, 1024, 928]);
    expect(chunks[1]!.data.buffer).toBe(values.buffer); // zero-copy views
    const asm = new ChunkAssembler(4000);
    const done = chunks.map((c) => asm.add({ offset: c.offset, totalBytes: c.totalBytes, data: Buffer.from(c.data) }));
    expect(done).toEqual([false, false, false, true]);
    expect(asm.values).toEqual(values);
  });

  it('reject out-of-order, oversized and mis-sized chunks', () => {
    const asm = new ChunkAssembler(16);
    expect(() => asm.add({ offset: 4, totalBytes: 16, data: Buffer.alloc(4) })).toThrow(/offset 4; expected the next at 0/);
    expect(() => asm.add({ offset: 0, totalBytes: 20, data: Buffer.alloc(4) })).toThrow(/20 bytes; expected 16/);
    expect(() => asm.add({ offset: 0, totalBytes: 16, data: Buffer.alloc(17) })).toThrow(/overruns/);
    expect(() => asm.add(undefined)).toThrow(/missing chunk/);
  });
});
