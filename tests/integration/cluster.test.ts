/**
 * The synchronous protocol in one process: coordinator, parameter server and workers over
 * loopback gRPC on the wasm backend.
 */
import { describe, expect, it } from 'vitest';
import { bytesOf, maxRelativeDifference, trainInProcess } from '../helpers/cluster.js';

describe('in-process cluster', () => {
  it('4 workers train the CNN: loss falls and accuracy clears what a broken gradient path could not', async () => {
    const { report } = await trainInProcess({ workers: 4, batchSize: 16, trainLimit: 640, testLimit: 500, epochs: 2, model: 'mnist-cnn' });
    expect(report.status).toBe('completed');
    expect(report.samplesPerEpoch).toEqual([640, 640]);
    expect(report.perWorker).toHaveLength(4);
    for (const w of report.perWorker) expect(w.samples).toBe(2 * 160);
    const [first, second] = report.epochHistory;
    expect(second!.trainLoss).toBeLessThan(first!.trainLoss);
    expect(first!.trainLoss).toBeLessThan(2.3); // chance level is ln(10) = 2.30
    // Random guessing scores 0.1; a sign error or a lost gradient stays near it.
    expect(report.testAccuracy).toBeGreaterThan(0.75);
  });

  it('equivalence: 4 workers x batch 8 follow 1 worker x batch 32 for 20 steps', async () => {
    const common = { trainLimit: 640, testLimit: 100, epochs: 1, seed: 7, model: 'mnist-cnn' } as const;
    const four = await trainInProcess({ ...common, workers: 4, batchSize: 8 });
    const one = await trainInProcess({ ...common, workers: 1, batchSize: 32 });
    expect(four.report.steps).toBe(20);
    expect(one.report.steps).toBe(20);
    const rel = maxRelativeDifference(four.weights, one.weights);
    expect(rel).toBeLessThanOrEqual(1e-4);
    // and they did move: not two copies of the initial weights
    expect(four.report.epochHistory[0]!.trainLoss).toBeLessThan(2.2);
  });

  it('determinism: two identical 2-worker runs give bitwise-identical weights', async () => {
    const options = { workers: 2, batchSize: 16, trainLimit: 320, testLimit: 100, seed: 3, model: 'mnist-cnn' } as const;
    const a = await trainInProcess(options);
    const b = await trainInProcess(options);
    expect(bytesOf(a.weights).equals(bytesOf(b.weights))).toBe(true);
    const c = await trainInProcess({ ...options, seed: 4 });
    expect(bytesOf(a.weights).equals(bytesOf(c.weights))).toBe(false);
  });

  it('float16 and bfloat16 gradients halve the bytes sent and stay close to the float32 trajectory', async () => {
    const common = { workers: 2, batchSize: 16, trainLimit: 320, testLimit: 100, seed: 11, model: 'mnist-cnn' } as const;
    const full = await trainInProcess({ ...common, gradDtype: 'float32' });
    for (const gradDtype of ['float16', 'bfloat16'] as const) {
      const half = await trainInProcess({ ...common, gradDtype });
      expect(half.report.bytesPerStepPerWorker.sent).toBe(full.report.bytesPerStepPerWorker.sent / 2);
      expect(half.report.bytesPerStepPerWorker.received).toBe(full.report.bytesPerStepPerWorker.received);
      const rel = maxRelativeDifference(half.weights, full.weights);
      // Rounded gradients move Adam a little differently, but the runs stay together.
      expect(rel).toBeGreaterThan(0);
      expect(rel).toBeLessThan(0.05);
      expect(Math.abs(half.report.epochHistory[0]!.trainLoss - full.report.epochHistory[0]!.trainLoss)).toBeLessThan(0.05);
    }
  });

  it('exactly-once data: the last partial global batch is used, not dropped', async () => {
    // 3 workers x batch 7 = 21 does not divide 100 (4 full steps + a step of 16), nor 50.
    for (const trainLimit of [100, 50]) {
      const { report } = await trainInProcess({ workers: 3, batchSize: 7, trainLimit, testLimit: 50, epochs: 2, model: 'mlp' });
      expect(report.samplesPerEpoch).toEqual([trainLimit, trainLimit]);
      expect(report.steps).toBe(2 * Math.ceil(trainLimit / 21));
      expect(report.perWorker.reduce((a, w) => a + w.samples, 0)).toBe(2 * trainLimit);
    }
  });
});
