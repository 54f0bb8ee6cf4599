/** Brings a coordinator and N in-process workers up on 127.0.0.1:0, trains, and tears all down. */
import { Coordinator } from '../../src/coordinator/trainer.js';
import type { CoordinatorOptions } from '../../src/coordinator/options.js';
import type { RunReport } from '../../src/coordinator/report.js';
import { TrainingWorker } from '../../src/worker/worker.js';

export interface ClusterRun {
  report: RunReport;
  weights: Float32Array;
}

export const TEST_TOKEN = 'test-token-0123456789';

export async function trainInProcess(options: CoordinatorOptions): Promise<ClusterRun> {
  const coordinator = new Coordinator({ backend: 'wasm', launch: 'none', port: 0, token: TEST_TOKEN, ...options });
  const workers: TrainingWorker[] = [];
  try {
    const port = await coordinator.start();
    const n = coordinator.options.workers;
    for (let i = 0; i < n; i++) workers.push(new TrainingWorker({ coordinator: `127.0.0.1:${port}`, backend: coordinator.options.backend, id: `w${i}`, token: TEST_TOKEN }));
    const runs = workers.map((w) => w.run());
    const report = await coordinator.run();
    const results = await Promise.all(runs);
    for (const r of results) if (!r.completed) throw new Error(`a worker ended without completing: ${r.reason}`);
    return { report, weights: Float32Array.from(coordinator.weights) };
  } finally {
    for (const w of workers) w.close();
    await coordinator.close();
  }
}

/** max_i |a_i - b_i| / max_i |b_i|, per the whole buffer. */
/** The bytes of a typed array's own elements (a view may sit inside a larger buffer, such as a WebAssembly memory). */
export function bytesOf(a: ArrayBufferView): Buffer {
  return Buffer.from(a.buffer, a.byteOffset, a.byteLength);
}

export function maxRelativeDifference(a: Float32Array, b: Float32Array): number {
  if (a.length !== b.length) throw new RangeError('lengths differ');
  let diff = 0;
  let scale = 0;
  for (let i = 0; i < a.length; i++) {
    diff = Math.max(diff, Math.abs(a[i]! - b[i]!));
    scale = Math.max(scale, Math.abs(b[i]!));
  }
  return diff / scale;
}
