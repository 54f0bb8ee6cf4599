import { describe, expect, it } from 'vitest';
import { localNodeFlags, SINGLE_THREADED_GC_FLAG } from '../../src/coordinator/local-gc.js';

describe('node flags of local workers and shards', () => {
  it('auto: single-threaded GC only when the busy processes outnumber the cores', () => {
    expect(localNodeFlags(3, 2, 'auto')).toEqual([SINGLE_THREADED_GC_FLAG]); // coordinator + 2 workers on 2 cores
    expect(localNodeFlags(2, 2, 'auto')).toEqual([]); // coordinator + 1 worker on 2 cores
    expect(localNodeFlags(5, 8, 'auto')).toEqual([]);
    expect(localNodeFlags(9, 8, 'auto')).toEqual([SINGLE_THREADED_GC_FLAG]);
  });

  it('1 and 0 force it on and off', () => {
    expect(localNodeFlags(2, 64, '1')).toEqual([SINGLE_THREADED_GC_FLAG]);
    expect(localNodeFlags(64, 2, '0')).toEqual([]);
  });

  it('refuses other settings with the variable named', () => {
    expect(() => localNodeFlags(3, 2, 'yes')).toThrow(/TENSORFLEET_SINGLE_THREADED_GC must be auto, 0 or 1; got 'yes'/);
  });

  it('is a flag this node accepts', async () => {
    const { execFileSync } = await import('node:child_process');
    expect(execFileSync(process.execPath, [SINGLE_THREADED_GC_FLAG, '-e', 'process.stdout.write("ok")']).toString()).toBe('ok');
  });
});
