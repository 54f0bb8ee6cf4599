/**
 * Whether a worker sends a heartbeat before computing a step (computing blocks its thread,
 * heartbeat timer included). The coordinator removes a worker silent for 4 heartbeat intervals,
 * and gives one that said it started a step room for a few of its steps' compute. A worker whose
 * previous step of this stream computed in a small part of the interval (`lastComputeMs`), and
 * whose last heartbeat or gradient went out moments ago (`lastReportMs`), needs no such room: its
 * gradient arrives long before the limit. That saves the coordinator a message per worker and
 * step; the first step of every stream, and slow steps, still announce themselves.
 */
export function startingHeartbeatNeeded(now: number, lastReportMs: number, lastComputeMs: number | undefined, intervalMs: number): boolean {
  if (lastComputeMs === undefined || !(intervalMs > 0)) return true;
  return now - lastReportMs + 4 * lastComputeMs >= intervalMs;
}
