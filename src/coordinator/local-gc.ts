/**
 * V8 flags for the processes `--launch local` starts (workers, parameter-server shards).
 *
 * Each such process computes on one thread, but V8 also collects garbage on background threads
 * (concurrent marking, parallel scavenges, concurrent sweeping). When the busy processes of a
 * run outnumber the cores, those threads take a core from another process's step, and every
 * other worker waits for that step. Step timelines of two co-located workers on two cores
 * showed it: a quarter of the steps ran 1.5-2x slower, almost all with a collection in one of the
 * processes, and their compute took 21 instead of 12.5 ms. `--single-threaded-gc` keeps the
 * collector on the process's own thread (paired runs: see the README's measured figures).
 *
 * TENSORFLEET_SINGLE_THREADED_GC: `auto` (the default: on when the local processes, the
 * coordinator included, outnumber the cores), `1` (always), `0` (never).
 */
import { availableParallelism } from 'node:os';

export const SINGLE_THREADED_GC_FLAG = '--single-threaded-gc';

/** The node flags of a local child when `processes` busy processes (coordinator included) share `cores`. */
export function localNodeFlags(processes: number, cores = availableParallelism(), setting = process.env.TENSORFLEET_SINGLE_THREADED_GC ?? 'auto'): string[] {
  if (setting !== 'auto' && setting !== '0' && setting !== '1') {
    throw new TypeError(`TENSORFLEET_SINGLE_THREADED_GC must be auto, 0 or 1; got '${setting}'`);
  }
  const on = setting === '1' || (setting === 'auto' && processes > cores);
  return on ? [SINGLE_THREADED_GC_FLAG] : [];
}
