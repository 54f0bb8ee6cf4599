/**
 * Accuracy on the full MNIST, measured side by side in one invocation: the cluster with 4
 * workers (1 epoch, then E epochs) against single-process TensorFlow.js (`model.fit`) with the
 * same model, global batch and epochs.
 *
 *   npm run build && tsx bench/accuracy.ts [--epochs 5] [--workers 4] [--batch-size 32] [--backend wasm]
 */
import { parseArgs, printTable, runCoordinator, runScript, writeResult } from './lib.js';

interface Baseline {
  epochs: { epoch: number; testAccuracy: number; trainSeconds: number }[];
  testAccuracy: number;
  imagesPerSecond: number;
  peakRssBytes: number;
}

const a = parseArgs(process.argv.slice(2), { epochs: 5, workers: 4, batchSize: 32, backend: 'wasm', trainLimit: 0 });
const common = ['--workers', String(a.workers), '--batch-size', String(a.batchSize), '--backend', a.backend, '--train-limit', String(a.trainLimit)];
const globalBatch = a.workers * a.batchSize;

console.error(`cluster: ${a.workers} workers, 1 epoch`);
const one = await runCoordinator([...common, '--epochs', '1']);
console.error(`cluster: ${a.workers} workers, ${a.epochs} epochs`);
const many = await runCoordinator([...common, '--epochs', String(a.epochs)]);
console.error(`single-process tfjs: batch ${globalBatch}, ${a.epochs} epochs`);
const base = await runScript<Baseline>('bench/baseline.ts', ['--epochs', String(a.epochs), '--batch-size', String(globalBatch), '--backend', a.backend, '--train-limit', String(a.trainLimit)]);

const rows = many.epochHistory.map((h, i) => [i + 1, h.testAccuracy, base.epochs[i]!.testAccuracy, (h.testAccuracy - base.epochs[i]!.testAccuracy) * 100]);
printTable(['epoch', `cluster ${a.workers}x${a.batchSize} test acc`, `single-process batch ${globalBatch} test acc`, 'difference (points)'], rows);
console.log();
printTable(
  ['run', 'test accuracy', 'samplesPerEpoch', 'img/s', 'distinct worker pids'],
  [
    [`coordinator --workers ${a.workers} --epochs 1`, one.testAccuracy!, JSON.stringify(one.samplesPerEpoch), one.imagesPerSecond, new Set(one.perWorker.map((w) => w.pid)).size],
    [`coordinator --workers ${a.workers} --epochs ${a.epochs}`, many.testAccuracy!, JSON.stringify(many.samplesPerEpoch), many.imagesPerSecond, new Set(many.perWorker.map((w) => w.pid)).size],
    [`single-process tfjs, ${a.epochs} epochs`, base.testAccuracy, '-', base.imagesPerSecond, 1],
  ],
);
const path = writeResult('accuracy', { options: a, oneEpoch: one, manyEpochs: many, baseline: base });
console.log(`\nwritten to ${path}`);
