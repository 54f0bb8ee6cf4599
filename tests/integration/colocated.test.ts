/**
 * Co-located shards (`psMode: 'colocated'`) in one process over loopback gRPC: every worker
 * serves one shard of the variables. The weights must be bitwise those of the in-process
 * parameter server; a member leaving takes its shard along, so the run goes back to its last
 * rollback point and still trains every sample exactly once per epoch (members joining:
 * faults.test.ts).
 */
import { describe, expect, it } from 'vitest';
import { bytesOf, trainInProcess } from '../helpers/cluster.js';
import { inProcessJob } from '../helpers/in-process-job.js';
import { waitFor } from '../helpers/process.js';

const job = inProcessJob({ psMode: 'colocated', testLimit: 100 });
const newCoordinator = job.coordinator;
const newWorker = job.worker;

describe('co-located shards', () => {
  it('2 and 3 workers serving the shards train to bitwise the weights of the in-process parameter server, moving half (two thirds) of the bytes', async () => {
    for (const workers of [2, 3]) {
      const common = { workers, batchSize: 16, trainLimit: 288, testLimit: 50, seed: 5, model: 'mlp', epochs: 2 } as const;
      const reference = await trainInProcess(common);
      const colocated = await trainInProcess({ ...common, psMode: 'colocated' });
      expect(colocated.report.status).toBe('completed');
      expect(colocated.report.psMode).toBe('colocated');
      expect(colocated.report.steps).toBe(reference.report.steps);
      expect(colocated.report.rolledBackSteps).toBe(0);
      expect(bytesOf(colocated.weights).equals(bytesOf(reference.weights))).toBe(true);
      // each worker keeps its own slice in-process: only the others' slices cross a connection
      const full = reference.report.bytesPerStepPerWorker.sent;
      const sent = colocated.report.bytesPerStepPerWorker.sent;
      expect(Math.abs(sent - (full * (workers - 1)) / workers)).toBeLessThanOrEqual(4 * workers);
      expect(colocated.report.bytesPerStepPerWorker.received).toBe(sent);
    }
  });

  it('one worker serving the only shard moves no tensor bytes over a connection and matches the parameter server bitwise', async () => {
    const common = { workers: 1, batchSize: 16, trainLimit: 160, testLimit: 50, seed: 9, model: 'mlp' } as const;
    const reference = await trainInProcess(common);
    const colocated = await trainInProcess({ ...common, psMode: 'colocated' });
    expect(colocated.report.steps).toBe(10);
    expect(colocated.report.bytesPerStepPerWorker).toEqual({ sent: 0, received: 0 });
    expect(bytesOf(colocated.weights).equals(bytesOf(reference.weights))).toBe(true);
    // a different seed moves them: the comparison can fail
    const other = await trainInProcess({ ...common, seed: 10 });
    expect(bytesOf(other.weights).equals(bytesOf(reference.weights))).toBe(false);
  });

  it('a worker leaving takes its shard: the run goes back to the rollback point, redoes those steps with the others and trains every sample once per epoch', async () => {
    const trainLimit = 1024;
    const { report, results } = await job.runWithLeaver({ workers: 3, minWorkers: 1, trainLimit, batchSize: 8, epochs: 2, snapshotEvery: 4 }, 7);
    const [r0, r1, r2] = results;
    expect(report.status).toBe('completed');
    expect([r0!.completed, r1!.completed, r2!.completed]).toEqual([true, true, false]);
    // the last rollback point was step 4 (snapshots every 4 steps): steps 4.. were redone
    expect(report.rolledBackSteps).toBeGreaterThanOrEqual(3);
    expect(report.rolledBackSteps).toBeLessThanOrEqual(4);
    expect(report.samplesPerEpoch).toEqual([trainLimit, trainLimit]);
    expect(report.testAccuracy).toBeGreaterThan(0.3);
    // the rolled-back steps' time is in the window, the samples of steps kept after it are counted
    expect(report.steadyImagesPerSecond).toBeGreaterThan(0);
  });

  it('a worker whose gradient holds NaN is removed, with its shard: the others go back to the rollback point and finish', async () => {
    const trainLimit = 1024;
    let port = 0;
    const c = newCoordinator({ workers: 3, minWorkers: 1, trainLimit, batchSize: 8, snapshotEvery: 4 });
    port = await c.start();
    const [w0, w1, w2] = ['w0', 'w1', 'w2'].map((id) => newWorker(port, id));
    const runs = [w0!.run(), w1!.run(), w2!.run().catch((err: Error) => ({ completed: false, reason: err.message, steps: 0 }))];
    // Poison w2's sixth gradient (its first element lies in w0's shard).
    type Computer = { computeGradients: (batch: unknown, out: Float32Array) => Promise<number> };
    const computer = await waitFor('w2 to join', () => (w2 as unknown as { job?: { computer: Computer } }).job?.computer, 60_000);
    const original = computer.computeGradients.bind(computer);
    let calls = 0;
    computer.computeGradients = async (batch, out) => {
      const loss = await original(batch, out);
      if (++calls === 6) out[0] = NaN;
      return loss;
    };
    const report = await c.run();
    const [r0, r1, r2] = await Promise.all(runs);
    expect(report.status).toBe('completed');
    expect([r0!.completed, r1!.completed, r2!.completed]).toEqual([true, true, false]);
    expect(r2!.reason).toMatch(/INVALID_ARGUMENT|NaN/);
    expect(report.rejectedContributions).toBe(1);
    expect(report.rolledBackSteps).toBeGreaterThanOrEqual(1);
    expect(report.rolledBackSteps).toBeLessThanOrEqual(4);
    expect(report.samplesPerEpoch).toEqual([trainLimit]);
    expect(Number.isFinite(report.testLoss)).toBe(true);
  });

  it('--resume starts the group from the checkpoint: 1 epoch + a resumed second = 2 epochs of the in-process parameter server, bitwise', async () => {
    const { mkdtempSync, rmSync } = await import('node:fs');
    const { tmpdir } = await import('node:os');
    const { join } = await import('node:path');
    const dir = mkdtempSync(join(tmpdir(), 'tf-colocated-resume-'));
    const common = { workers: 2, batchSize: 16, trainLimit: 96, testLimit: 50, seed: 8, model: 'mlp' } as const;
    try {
      const whole = await trainInProcess({ ...common, epochs: 2 });
      await trainInProcess({ ...common, epochs: 1, psMode: 'colocated', checkpointDir: dir });
      const resumed = await trainInProcess({ ...common, epochs: 2, psMode: 'colocated', checkpointDir: dir, resume: true });
      expect(resumed.report.resumedFromStep).toBe(3);
      expect(resumed.report.steps).toBe(6);
      expect(bytesOf(resumed.weights).equals(bytesOf(whole.weights))).toBe(true);
      // 6 steps have a window after the first 5; 3 since the resume do not
      expect(whole.report.steadyImagesPerSecond).toBeGreaterThan(0);
      expect(resumed.report.imagesPerSecond).toBeGreaterThan(0);
      expect(resumed.report.steadyImagesPerSecond).toBeNull();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
