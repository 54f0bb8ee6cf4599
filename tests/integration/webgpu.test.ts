/**
 * The WebGPU backend (TensorFlow.js on Dawn, npm `webgpu`). Without a GPU this runs on Mesa's
 * software Vulkan device, lavapipe (about 30-60 images/s for the reference CNN): data is kept
 * tiny. These tests need a Vulkan driver; without one they fail with the instructions, never
 * skip (.ci/run installs lavapipe).
 */
import * as tf from '@tensorflow/tfjs';
import { beforeAll, describe, expect, it } from 'vitest';
import { gatherBatch, rangeIndices } from '../../src/data/batch.js';
import { loadMnist } from '../../src/data/mnist.js';
import { selectBackend, type BackendInfo } from '../../src/model/backend.js';
import { GradientComputer } from '../../src/model/gradients.js';
import { initialWeights } from '../../src/model/init.js';
import { bytesOf, maxRelativeDifference, trainInProcess } from '../helpers/cluster.js';
import { NEEDS_VULKAN } from '../helpers/webgpu.js';

/**
 * In-process, coordinator and workers share one thread, and a first step or evaluation on a
 * new shape compiles GPU pipelines synchronously (about 10 s on lavapipe with a cold shader
 * cache, longer on a loaded machine): a long heartbeat timeout keeps that from reading as a
 * silent peer. (Separate processes recover from it: tests/e2e/worker-silence.test.ts.)
 */
const WEBGPU = { backend: 'webgpu', heartbeatTimeoutMs: 120_000 } as const;

let info: BackendInfo;
let selectMs = 0;

beforeAll(async () => {
  const started = performance.now();
  try {
    info = await selectBackend('webgpu');
  } catch (err) {
    throw new Error(`${NEEDS_VULKAN}: ${(err as Error).message}`);
  }
  selectMs = performance.now() - started;
});

/**
 * Per variable: max|a-b| / max|b| (the error relative to the variable's gradient scale, the
 * figure that is asserted), and element-wise max |a-b| / |b|, over all b != 0 and over the
 * entries with |b| > 1e-3 max|b| (reported: near-zero entries make the first one large).
 */
function compareGradients(a: Float32Array, b: Float32Array, specs: { name: string; offset: number; size: number }[]) {
  return specs.map((s) => {
    const va = a.subarray(s.offset, s.offset + s.size);
    const vb = b.subarray(s.offset, s.offset + s.size);
    return { name: s.name, relative: maxRelativeDifference(va, vb), elementwise: elementwiseRelative(va, vb), significant: elementwiseRelative(va, vb, 1e-3), scale: vb.reduce((m, v) => Math.max(m, Math.abs(v)), 0) };
  });
}

/** max over elements of |a-b| / |b|, over elements where |b| is at least `floor` times max|b|. */
function elementwiseRelative(a: Float32Array, b: Float32Array, floor = 0): number {
  let scale = 0;
  for (const v of b) scale = Math.max(scale, Math.abs(v));
  let worst = 0;
  for (let i = 0; i < a.length; i++) if (Math.abs(b[i]!) > floor * scale && b[i] !== 0) worst = Math.max(worst, Math.abs(a[i]! - b[i]!) / Math.abs(b[i]!));
  return worst;
}

describe('webgpu backend (Dawn)', { timeout: 600_000 }, () => {
  it('reports its adapter: name, vendor, and whether it is a software device', () => {
    expect(info.name).toBe('webgpu');
    expect(info.package).toBe('@tensorflow/tfjs-backend-webgpu');
    const a = info.adapter!;
    expect(a.name.length).toBeGreaterThan(0);
    expect(a.vendor.length).toBeGreaterThan(0);
    // lavapipe (Mesa's software Vulkan) reports vendor 'mesa', device 'llvmpipe-...'.
    const lavapipe = /llvmpipe|lavapipe/i.test(`${a.device} ${a.description}`);
    expect(a.software).toBe(lavapipe || a.architecture === 'software');
    if (lavapipe) {
      expect(a.vendor).toBe('mesa');
      expect(info.device).toMatch(/^software adapter \(WebGPU on Dawn: llvmpipe/);
    }
    console.log(`webgpu adapter: ${info.device}; selectBackend('webgpu') took ${selectMs.toFixed(0)} ms`);
  });

  it('reads are asynchronous only: dataSync() throws on a GPU-resident tensor, data() works', async () => {
    const t = tf.matMul(tf.ones([64, 64]), tf.ones([64, 64]));
    expect(() => t.dataSync()).toThrow();
    expect((await t.data())[0]).toBe(64);
    t.dispose();
  });

  it("the reference CNN's gradients equal the cpu backend's on the same weights and batch", async () => {
    const data = loadMnist({ trainLimit: 64, skipTest: true });
    const batch = gatherBatch(data.train, rangeIndices(0, 32));
    const gpu = new GradientComputer('mnist-cnn');
    const weights = initialWeights(gpu.layout, 5);
    gpu.setWeights(weights);
    const onGpu = new Float32Array(gpu.layout.totalSize);
    const started = performance.now();
    const lossGpu = await gpu.computeGradients(batch, onGpu);
    const firstStepMs = performance.now() - started;
    gpu.dispose();

    await selectBackend('cpu');
    let lossCpu: number;
    const onCpu = new Float32Array(onGpu.length);
    try {
      const cpu = new GradientComputer('mnist-cnn');
      cpu.setWeights(weights);
      lossCpu = await cpu.computeGradients(batch, onCpu);
      cpu.dispose();
    } finally {
      await selectBackend('webgpu');
    }
    const rows = compareGradients(onGpu, onCpu, gpu.layout.specs);
    console.log(
      `webgpu vs cpu, batch 32 (first step on webgpu ${firstStepMs.toFixed(0)} ms, shader compilation included): loss ${lossGpu} vs ${lossCpu}\n` +
        rows.map((r) => `  ${r.name.padEnd(14)} max|a-b|/max|b| ${r.relative.toExponential(2)}  element-wise ${r.elementwise.toExponential(2)} (${r.significant.toExponential(2)} where |b| > 1e-3 max|b|)`).join('\n'),
    );
    expect(Math.abs(lossGpu - lossCpu)).toBeLessThan(1e-5);
    for (const r of rows) {
      expect(r.scale, r.name).toBeGreaterThan(0); // a real gradient, not zeros on both sides
      expect(r.relative, r.name).toBeLessThanOrEqual(1e-3);
    }
  });

  it('2 in-process workers train the CNN on webgpu: loss falls', async () => {
    const started = performance.now();
    const { report } = await trainInProcess({ ...WEBGPU, workers: 2, batchSize: 16, trainLimit: 256, testLimit: 100, epochs: 2, model: 'mnist-cnn' });
    console.log(
      `2 workers x 16 on webgpu, 2 epochs of 256: ${report.imagesPerSecond.toFixed(1)} img/s, train loss ${report.epochHistory.map((e) => e.trainLoss.toFixed(4)).join(' -> ')}, test accuracy ${report.testAccuracy}, ${((performance.now() - started) / 1000).toFixed(1)} s`,
    );
    expect(report.status).toBe('completed');
    expect(report.backend).toBe('webgpu');
    expect(report.samplesPerEpoch).toEqual([256, 256]);
    for (const w of report.perWorker) expect(w.samples).toBe(256);
    const [first, second] = report.epochHistory;
    expect(first!.trainLoss).toBeLessThan(2.3);
    expect(second!.trainLoss).toBeLessThan(first!.trainLoss);
  });

  // Bitwise only because src/model/webgpu.ts keeps tfjs off its split-K matmul (float atomics,
  // summed in GPU order): with it, two identical runs differed by about 5e-6 (max|a-b|/max|b|).
  it('determinism: two identical 2-worker runs on webgpu give bitwise-identical weights', async () => {
    const options = { ...WEBGPU, workers: 2, batchSize: 16, trainLimit: 128, testLimit: 50, seed: 3, model: 'mnist-cnn' } as const;
    const a = await trainInProcess(options);
    const b = await trainInProcess(options);
    const rel = maxRelativeDifference(a.weights, b.weights);
    console.log(`webgpu determinism: max|a-b|/max|b| between two identical runs = ${rel}`);
    expect(bytesOf(a.weights).equals(bytesOf(b.weights))).toBe(true);
  });

  it('equivalence: 2 workers x batch 8 follow 1 worker x batch 16 on webgpu for 10 steps', async () => {
    const common = { ...WEBGPU, trainLimit: 160, testLimit: 50, epochs: 1, seed: 7, model: 'mnist-cnn' } as const;
    const two = await trainInProcess({ ...common, workers: 2, batchSize: 8 });
    const one = await trainInProcess({ ...common, workers: 1, batchSize: 16 });
    expect(two.report.steps).toBe(10);
    expect(one.report.steps).toBe(10);
    const rel = maxRelativeDifference(two.weights, one.weights);
    console.log(`webgpu equivalence 2x8 vs 1x16 after 10 steps: max|a-b|/max|b| ${rel.toExponential(2)}, element-wise (|b| > 1e-3 max|b|) ${elementwiseRelative(two.weights, one.weights, 1e-3).toExponential(2)}`);
    expect(rel).toBeLessThanOrEqual(1e-4);
    expect(two.report.epochHistory[0]!.trainLoss).toBeLessThan(2.25);
  });
});
