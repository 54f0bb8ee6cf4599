/**
 * A coordinator and workers in the test's own process (loopback gRPC, wasm, the mlp model by
 * default), torn down after each test: `const job = inProcessJob()` at the top of a file.
 */
import { afterEach } from 'vitest';
import type { CoordinatorOptions } from '../../src/coordinator/options.js';
import { Coordinator, type StepEvent } from '../../src/coordinator/trainer.js';
import type { RunReport } from '../../src/coordinator/report.js';
import { TrainingWorker, type WorkerResult } from '../../src/worker/worker.js';
import { TEST_TOKEN } from './cluster.js';

export interface InProcessJob {
  coordinator(options: CoordinatorOptions, onStep?: (e: StepEvent) => void): Coordinator;
  worker(port: number, id: string, extra?: { connectTimeoutMs?: number }): TrainingWorker;
  /**
   * A run of workers w0, w1 and w2 where w2 leaves (its signal aborts) once step `leaveAtStep`
   * has been reported; resolves with the coordinator's report and the workers' results.
   */
  runWithLeaver(options: CoordinatorOptions, leaveAtStep: number): Promise<{ report: RunReport; results: WorkerResult[] }>;
  /** Runs `fn` when the test ends (after the workers and coordinators made here are closed). */
  defer(fn: () => unknown): void;
}

/** `defaults` apply to every coordinator of the file (before each call's own options). */
export function inProcessJob(defaults: CoordinatorOptions = {}): InProcessJob {
  const cleanups: Array<() => unknown> = [];
  afterEach(async () => {
    for (const fn of cleanups.splice(0).reverse()) {
      try {
        await fn();
      } catch {
        // best effort
      }
    }
  });
  const job: InProcessJob = {
    coordinator(options, onStep) {
      const c = new Coordinator({ backend: 'wasm', launch: 'none', port: 0, token: TEST_TOKEN, model: 'mlp', testLimit: 200, ...defaults, ...options }, { onStep });
      cleanups.push(() => c.close());
      return c;
    },
    async runWithLeaver(options, leaveAtStep) {
      const leaver = new AbortController();
      const c = job.coordinator(options, (e) => {
        if (e.step === leaveAtStep) leaver.abort();
      });
      const port = await c.start();
      const [w0, w1, w2] = ['w0', 'w1', 'w2'].map((id) => job.worker(port, id));
      const runs = [w0!.run(), w1!.run(), w2!.run(leaver.signal)];
      const report = await c.run();
      return { report, results: await Promise.all(runs) };
    },
    defer(fn) {
      cleanups.push(fn);
    },
    worker(port, id, extra = {}) {
      const w = new TrainingWorker({ coordinator: `127.0.0.1:${port}`, backend: 'wasm', id, token: TEST_TOKEN, ...extra });
      cleanups.push(() => w.close());
      return w;
    },
  };
  return job;
}
