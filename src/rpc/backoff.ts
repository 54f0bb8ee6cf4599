/**
 * Retries: capped exponential backoff with full jitter, and which gRPC codes are worth
 * retrying at all (a wrong token or a malformed message will not get better by retrying).
 */
import * as grpc from '@grpc/grpc-js';

export const RETRYABLE_CODES: ReadonlySet<grpc.status> = new Set([
  grpc.status.UNAVAILABLE,
  grpc.status.RESOURCE_EXHAUSTED,
  grpc.status.DEADLINE_EXCEEDED,
  grpc.status.ABORTED,
]);

export function isRetryable(code: grpc.status): boolean {
  return RETRYABLE_CODES.has(code);
}

export interface BackoffOptions {
  initialMs?: number;
  maxMs?: number;
  multiplier?: number;
  random?: () => number;
}

export class Backoff {
  private attempt = 0;
  private readonly initialMs: number;
  private readonly maxMs: number;
  private readonly multiplier: number;
  private readonly random: () => number;

  constructor(options: BackoffOptions = {}) {
    this.initialMs = options.initialMs ?? 100;
    this.maxMs = options.maxMs ?? 5000;
    this.multiplier = options.multiplier ?? 2;
    this.random = options.random ?? Math.random;
  }

  /** The next delay: uniform in [0, min(max, initial * multiplier^attempt)]. */
  next(): number {
    const ceiling = Math.min(this.maxMs, this.initialMs * Math.pow(this.multiplier, this.attempt));
    this.attempt++;
    return Math.round(this.random() * ceiling);
  }

  reset(): void {
    this.attempt = 0;
  }
}

/** Resolves after `ms`, or rejects when the signal aborts. */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason);
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal!.reason);
    };
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}
