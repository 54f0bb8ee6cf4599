/**
 * Start-up checks that matter in a container: the memory limit of the process's cgroup against
 * what the process will need, so that an undersized pod says so in its first lines instead of
 * being OOM-killed mid-run. (The compute backend and device are logged by the coordinator and
 * the worker as 'backend selected'; an explicit --backend that cannot load fails there.)
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Logger } from '../telemetry/logger.js';

const MiB = 1024 * 1024;

/**
 * Memory each process needs, with headroom. Measured peak RSS on the full MNIST with mnist-cnn
 * and the wasm backend (bench/results): coordinator 280-300 MB (the data set, the parameter
 * server's weights and Adam slots, evaluation), worker 240-280 MB; native TensorFlow
 * (@tensorflow/tfjs-node) adds its shared library and allocator pools on top.
 */
export const MEMORY_NEEDED_BYTES = { coordinator: 400 * MiB, worker: 500 * MiB } as const;
export type ProcessRole = keyof typeof MEMORY_NEEDED_BYTES;

/** cgroup v1 writes "no limit" as a page-rounded 2^63-1; anything this large means none. */
const NO_LIMIT = 2 ** 60;

export interface CgroupPaths {
  /** Where the cgroup file systems are mounted. */
  root: string;
  /** This process's cgroup membership (`0::/path` on cgroup v2). */
  selfCgroup: string;
}

const DEFAULT_PATHS: CgroupPaths = { root: '/sys/fs/cgroup', selfCgroup: '/proc/self/cgroup' };

function readLimit(file: string): number | undefined {
  let text: string;
  try {
    text = readFileSync(file, 'utf8').trim();
  } catch {
    return undefined;
  }
  if (text === 'max') return Infinity;
  const n = Number(text);
  if (!Number.isFinite(n) || n <= 0) return undefined;
  return n >= NO_LIMIT ? Infinity : n;
}

/**
 * The memory limit in bytes of this process's cgroup: Infinity when the cgroup has none,
 * undefined when no cgroup file can be read (not Linux, or cgroups not mounted). Tries the
 * process's own cgroup as /proc/self/cgroup names it (v2 memory.max, v1
 * memory.limit_in_bytes), then the mount roots, which inside a container are the container's
 * own cgroup.
 */
export function cgroupMemoryLimit(paths: CgroupPaths = DEFAULT_PATHS): number | undefined {
  const v2 = join(paths.root, 'memory.max');
  const v1 = join(paths.root, 'memory', 'memory.limit_in_bytes');
  const candidates: string[] = [];
  try {
    const self = readFileSync(paths.selfCgroup, 'utf8');
    const own2 = /^0::(\/.+)$/m.exec(self)?.[1];
    const own1 = /^\d+:(?:[^:]*,)?memory(?:,[^:]*)?:(\/.+)$/m.exec(self)?.[1];
    if (own2) candidates.push(join(paths.root, own2, 'memory.max'));
    if (own1) candidates.push(join(paths.root, 'memory', own1, 'memory.limit_in_bytes'));
  } catch {
    // no /proc: the mount roots only
  }
  candidates.push(v2, v1);
  for (const file of candidates) {
    const limit = readLimit(file);
    if (limit !== undefined) return limit;
  }
  return undefined;
}

export interface StartupCheckResult {
  /** Bytes, Infinity for no limit, undefined when unknown. */
  memoryLimitBytes: number | undefined;
  memoryNeededBytes: number;
  /** False only when a limit is known and below the need. */
  memoryOk: boolean;
}

/** Runs the checks, logging a warning for each that fails; never throws. */
export function runStartupChecks(role: ProcessRole, log: Logger, paths: CgroupPaths = DEFAULT_PATHS): StartupCheckResult {
  const needed = MEMORY_NEEDED_BYTES[role];
  const limit = cgroupMemoryLimit(paths);
  const memoryOk = limit === undefined || limit >= needed;
  const mib = (n: number) => Math.round(n / MiB);
  if (!memoryOk) {
    log.warn(
      { memoryLimitBytes: limit, memoryNeededBytes: needed },
      `the container's memory limit (${mib(limit!)} MiB) is below what a ${role} needs (about ${mib(needed)} MiB): expect it to be OOM-killed; raise resources.limits.memory`,
    );
  } else if (limit !== undefined && limit !== Infinity) {
    log.info({ memoryLimitBytes: limit, memoryNeededBytes: needed }, 'container memory limit');
  }
  return { memoryLimitBytes: limit, memoryNeededBytes: needed, memoryOk };
}
