/** Start-up checks: the cgroup memory limit (v2 and v1, as containers lay them out) against the estimates. */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { pino } from 'pino';
import { afterAll, describe, expect, it } from 'vitest';
import { cgroupMemoryLimit, MEMORY_NEEDED_BYTES, runStartupChecks, type CgroupPaths } from '../../src/common/startup-checks.js';
import type { Logger } from '../../src/telemetry/logger.js';

const MiB = 2 ** 20;
const base = mkdtempSync(join(tmpdir(), 'tf-cgroup-'));
afterAll(() => rmSync(base, { recursive: true, force: true }));

let n = 0;
/** A fake /sys/fs/cgroup and /proc/self/cgroup: `files` maps paths under the root to contents. */
function fakeCgroup(files: Record<string, string>, selfCgroup = '0::/\n'): CgroupPaths {
  const root = join(base, `c${n++}`);
  mkdirSync(root, { recursive: true });
  for (const [path, text] of Object.entries(files)) {
    mkdirSync(dirname(join(root, path)), { recursive: true });
    writeFileSync(join(root, path), text);
  }
  const self = join(root, 'proc-self-cgroup');
  writeFileSync(self, selfCgroup);
  return { root, selfCgroup: self };
}

function capture(): { log: Logger; lines: () => Array<Record<string, unknown>> } {
  const out: string[] = [];
  const log: Logger = pino({ level: 'info' }, { write: (s: string) => void out.push(s) });
  return { log, lines: () => out.map((s) => JSON.parse(s) as Record<string, unknown>) };
}

describe('cgroupMemoryLimit', () => {
  it('reads cgroup v2 memory.max at the mount root (a container with its own cgroup namespace)', () => {
    expect(cgroupMemoryLimit(fakeCgroup({ 'memory.max': '536870912\n' }))).toBe(512 * MiB);
    expect(cgroupMemoryLimit(fakeCgroup({ 'memory.max': 'max\n' }))).toBe(Infinity);
  });

  it("prefers the process's own v2 cgroup named in /proc/self/cgroup", () => {
    const paths = fakeCgroup({ 'memory.max': 'max', 'kubepods/pod1/c1/memory.max': '1073741824' }, '0::/kubepods/pod1/c1\n');
    expect(cgroupMemoryLimit(paths)).toBe(1024 * MiB);
  });

  it('reads cgroup v1 memory.limit_in_bytes; the page-rounded 2^63 means no limit', () => {
    expect(cgroupMemoryLimit(fakeCgroup({ 'memory/memory.limit_in_bytes': '268435456' }, '4:memory:/\n'))).toBe(256 * MiB);
    expect(cgroupMemoryLimit(fakeCgroup({ 'memory/memory.limit_in_bytes': '9223372036854771712' }))).toBe(Infinity);
    const own = fakeCgroup({ 'memory/memory.limit_in_bytes': '9223372036854771712', 'memory/docker/abc/memory.limit_in_bytes': '104857600' }, '5:cpuacct,memory:/docker/abc\n0::/\n');
    expect(cgroupMemoryLimit(own)).toBe(100 * MiB);
  });

  it('is undefined when there is no cgroup file to read', () => {
    expect(cgroupMemoryLimit(fakeCgroup({}))).toBeUndefined();
    expect(cgroupMemoryLimit({ root: join(base, 'nowhere'), selfCgroup: join(base, 'nowhere', 'cgroup') })).toBeUndefined();
  });
});

describe('runStartupChecks', () => {
  it('warns, with both numbers, when the limit is below what the process needs', () => {
    const { log, lines } = capture();
    const result = runStartupChecks('worker', log, fakeCgroup({ 'memory.max': String(256 * MiB) }));
    expect(result).toEqual({ memoryLimitBytes: 256 * MiB, memoryNeededBytes: MEMORY_NEEDED_BYTES.worker, memoryOk: false });
    const [warning] = lines();
    expect(warning).toMatchObject({ level: 40, memoryLimitBytes: 256 * MiB, memoryNeededBytes: MEMORY_NEEDED_BYTES.worker });
    expect(warning!.msg).toMatch(/memory limit \(256 MiB\) is below what a worker needs \(about 500 MiB\).*resources\.limits\.memory/);
  });

  it('logs the limit at info when it is enough, and nothing without a limit', () => {
    const enough = capture();
    expect(runStartupChecks('coordinator', enough.log, fakeCgroup({ 'memory.max': String(1024 * MiB) })).memoryOk).toBe(true);
    expect(enough.lines()).toMatchObject([{ level: 30, msg: 'container memory limit', memoryLimitBytes: 1024 * MiB }]);
    const none = capture();
    expect(runStartupChecks('coordinator', none.log, fakeCgroup({ 'memory.max': 'max' })).memoryOk).toBe(true);
    expect(runStartupChecks('worker', none.log, fakeCgroup({})).memoryOk).toBe(true);
    expect(none.lines()).toEqual([]);
  });

  it('estimates: a worker needs more than the coordinator, both at least the measured 300 MB peak', () => {
    expect(MEMORY_NEEDED_BYTES.worker).toBeGreaterThan(MEMORY_NEEDED_BYTES.coordinator);
    expect(MEMORY_NEEDED_BYTES.coordinator).toBeGreaterThanOrEqual(300e6);
  });
});
