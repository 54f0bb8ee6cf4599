/** The real programs: `coordinator` spawning `worker` processes, as a user runs them (needs `npm run build`). */
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, truncateSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as tf from '@tensorflow/tfjs';
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { RunReport } from '../../src/coordinator/report.js';
import { embeddedMnistDir, loadMnist } from '../../src/data/mnist.js';
import { selectBackend } from '../../src/model/backend.js';
import { evaluateModel } from '../../src/model/evaluate.js';
import { registerFileSystemRouter } from '../../src/model/file-io.js';

const root = fileURLToPath(new URL('../..', import.meta.url));
const COORDINATOR = join(root, 'dist/coordinator/cli.js');
const WORKER = join(root, 'dist/worker/cli.js');
let dir: string;

beforeAll(() => {
  if (!existsSync(COORDINATOR)) throw new Error('dist/ is missing: run `npm run build` first');
  dir = mkdtempSync(join(tmpdir(), 'tf-e2e-'));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('coordinator CLI', () => {
  it('coordinator --workers 2 spawns two worker processes, trains, reports and saves a loadable model', async () => {
    const report = join(dir, 'report.json');
    const modelDir = join(dir, 'model');
    const child = execa('node', [COORDINATOR, '--workers', '2', '--train-limit', '1024', '--test-limit', '500', '--backend', 'wasm', '--report', report, '--save-model', modelDir, '--log-level', 'warn'], { reject: false, timeout: 180_000 });
    const coordinatorPid = child.pid;
    const run = await child;
    expect(run.exitCode, run.stderr).toBe(0);
    expect(run.stdout).toMatch(/done: test accuracy \d+\.\d\d%/);
    expect(run.stdout).toMatch(/ 16 steps, \d+\.\d img\/s \(\d+\.\d after the first 5 steps\)/);
    const r = JSON.parse(readFileSync(report, 'utf8')) as RunReport;
    expect(r.status).toBe('completed');
    expect(r.workers).toBe(2);
    expect(r.samplesPerEpoch).toEqual([1024]);
    expect(r.steps).toBe(16);
    expect(r.globalBatchSize).toBe(64);
    const pids = new Set(r.perWorker.map((w) => w.pid));
    expect(pids.size).toBe(2);
    expect(pids.has(coordinatorPid!)).toBe(false);
    // Node 20 with the relaxed-SIMD flag the backend sets: the products fuse multiply and add.
    for (const w of r.perWorker) expect(w.device).toBe('cpu (wasm, simd, fused multiply-add, 1 thread)');
    expect(r.imagesPerSecond).toBeGreaterThan(0);
    // 16 steps: 11 after the warm-up, the window of bench/peers/pytorch_ddp.py
    expect(typeof r.steadyImagesPerSecond).toBe('number');
    expect(r.steadyImagesPerSecond).toBeGreaterThan(0);
    expect(Number.isFinite(r.steadyImagesPerSecond)).toBe(true);
    // CPU per step over the same window: every process used some, none more than a few cores' worth
    const stepMs = (r.trainSeconds * 1000) / r.steps;
    expect(r.cpuMsPerStep.coordinator).toBeGreaterThan(0);
    expect(r.cpuMsPerStep.coordinator!).toBeLessThan(4 * stepMs);
    for (const w of r.perWorker) {
      expect(w.cpuMsPerStep).toBeGreaterThan(0);
      expect(w.cpuMsPerStep!).toBeLessThan(4 * stepMs);
    }
    expect(r.cpuMsPerStep.workers).toBeCloseTo(r.perWorker.reduce((a, w) => a + w.cpuMsPerStep!, 0), 9);
    expect(r.testAccuracy).toBeGreaterThan(0.6);

    // The saved model loads with tf.loadLayersModel and scores the reported accuracy.
    await selectBackend('wasm');
    registerFileSystemRouter();
    const model = await tf.loadLayersModel(`file://${join(modelDir, 'model.json')}`);
    const evaluation = await evaluateModel(model, loadMnist({ testLimit: 500 }).test);
    expect(evaluation.accuracy).toBeCloseTo(r.testAccuracy!, 6);
    model.dispose();
  });

  it('usage errors exit 2 with one line naming the option', async () => {
    for (const args of [['--workers', 'two'], ['--bogus'], ['--backend', 'gpu'], ['--workers', '0'], ['--model', 'resnet']]) {
      const run = await execa('node', [COORDINATOR, ...args], { reject: false, timeout: 30_000 });
      expect(run.exitCode, args.join(' ')).toBe(2);
      const lines = run.stderr.trim().split('\n');
      expect(lines).toHaveLength(1);
      expect(lines[0]).toMatch(/^coordinator: .*(workers|bogus|backend|model)/);
    }
    const worker = await execa('node', [WORKER, '--coordinator', 'nohost'], { reject: false, timeout: 30_000 });
    expect(worker.exitCode).toBe(2);
    expect(worker.stderr.trim()).toMatch(/^worker: coordinator must be HOST:PORT; got 'nohost'/);
  });

  it('a missing data folder fails with exit 1 and a failed report naming the folder', async () => {
    const report = join(dir, 'failed.json');
    const run = await execa('node', [COORDINATOR, '--data-dir', join(dir, 'no-such-data'), '--report', report, '--log-level', 'silent'], { reject: false, timeout: 60_000 });
    expect(run.exitCode).toBe(1);
    expect(run.stderr).toMatch(/no-such-data: data folder not found/);
    const r = JSON.parse(readFileSync(report, 'utf8')) as RunReport;
    expect(r.status).toBe('failed');
    expect(r.error).toMatch(/no-such-data/);
  });

  it('a corrupt data file fails with exit 1 and one line naming the file and the problem', async () => {
    const data = join(dir, 'corrupt-data');
    mkdirSync(data);
    for (const f of ['train-images-idx3-ubyte', 'train-labels-idx1-ubyte', 't10k-images-idx3-ubyte', 't10k-labels-idx1-ubyte']) {
      copyFileSync(join(embeddedMnistDir(), f), join(data, f));
    }
    truncateSync(join(data, 't10k-labels-idx1-ubyte'), 5000);
    const run = await execa('node', [COORDINATOR, '--data-dir', data, '--log-level', 'silent'], { reject: false, timeout: 60_000 });
    expect(run.exitCode).toBe(1);
    const lines = run.stderr.trim().split('\n');
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(/t10k-labels-idx1-ubyte: truncated: dimensions 10000 need 10000 data bytes, the file has 4992/);
  });

  it('--launch none trains with a worker started by hand', async () => {
    const coordinator = execa('node', [COORDINATOR, '--launch', 'none', '--port', '0', '--token', 'e2e-token', '--workers', '1', '--model', 'mlp', '--train-limit', '256', '--test-limit', '100', '--backend', 'wasm', '--log-level', 'warn'], { reject: false, timeout: 120_000 });
    const port = await new Promise<string>((resolve, reject) => {
      coordinator.stdout!.on('data', (d: Buffer) => {
        const m = /listening on 127\.0\.0\.1:(\d+)/.exec(d.toString());
        if (m) resolve(m[1]!);
      });
      coordinator.on('exit', () => reject(new Error('coordinator exited before listening')));
    });
    const worker = await execa('node', [WORKER, '--coordinator', `127.0.0.1:${port}`, '--backend', 'wasm', '--id', 'by-hand', '--log-level', 'warn'], {
      reject: false,
      timeout: 120_000,
      env: { TENSORFLEET_TOKEN: 'e2e-token' },
    });
    const done = await coordinator;
    expect(worker.exitCode, worker.stderr).toBe(0);
    expect(done.exitCode, done.stderr).toBe(0);
    expect(done.stdout).toMatch(/done: test accuracy/);
  });
});
