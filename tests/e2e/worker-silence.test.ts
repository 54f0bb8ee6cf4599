/**
 * A coordinator that blocks for longer than the heartbeat timeout (on webgpu its first
 * evaluation compiles GPU shaders synchronously: 12 s measured on lavapipe with a cold shader
 * cache) must not cost its workers: a worker whose silence watchdog fires reconnects and
 * rejoins, it does not take its own cancellation for a refusal and exit 1.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { Coordinator } from '../../src/coordinator/trainer.js';
import { jsonLogs, requireBuild, worker } from '../helpers/process.js';

const TOKEN = 'silence-test-token-0123456789';
let coordinator: Coordinator | undefined;
afterEach(async () => {
  await coordinator?.close();
  coordinator = undefined;
});

describe('worker and a coordinator that blocks', () => {
  it('a worker process reconnects when the coordinator is silent past the timeout, and training completes', async () => {
    requireBuild();
    const busyMs = 2500; // the worker gives up on silence after 4 x 250 ms = 1 s
    let blocked = false;
    coordinator = new Coordinator(
      { backend: 'wasm', launch: 'none', port: 0, token: TOKEN, workers: 1, batchSize: 16, trainLimit: 160, testLimit: 50, model: 'mlp', heartbeatTimeoutMs: 1000 },
      {
        onStep: (e) => {
          if (e.step !== 3 || blocked) return;
          blocked = true;
          const until = performance.now() + busyMs;
          while (performance.now() < until); // the whole coordinator process is busy, as in a long compile
        },
      },
    );
    const port = await coordinator.start();
    const w = worker(['--coordinator', `127.0.0.1:${port}`, '--backend', 'wasm', '--id', 'w0', '--log-level', 'info'], { TENSORFLEET_TOKEN: TOKEN }, 120_000);
    // A worker that gives up exits 1 and the coordinator would wait for it forever: fail fast.
    const gaveUp = w.result().then((r) => (r.exitCode === 0 ? new Promise<never>(() => {}) : Promise.reject(new Error(`the worker exited ${r.exitCode}:\n${r.stderr.slice(-2000)}`))));
    const report = await Promise.race([coordinator.run(), gaveUp]);
    const run = await w.result();
    expect(blocked).toBe(true);
    expect(report.status).toBe('completed');
    expect(run.exitCode, run.stderr).toBe(0);
    const logs = jsonLogs(run.stderr);
    expect(logs.some((l) => l.msg === 'coordinator silent; reconnecting')).toBe(true);
    expect(logs.some((l) => l.msg === 'rejoined the job')).toBe(true);
  });
});
