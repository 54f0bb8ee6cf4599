/**
 * Cluster throughput for 1, 2 and 4 local workers: the run report's `steadyImagesPerSecond`
 * (trained samples over training time, evaluation excluded, after each run's first
 * WARMUP_STEPS steps, as the PyTorch peer counts) and its `imagesPerSecond` over all steps
 * (allStepsImagesPerSecond here), medians of several runs, with peak RSS of the coordinator and
 * of the largest worker.
 *
 *   npm run build && tsx bench/throughput.ts [--runs 3] [--train-limit 12800] [--batch-size 32] [--backend wasm]
 */
import { WARMUP_STEPS } from '../src/coordinator/steady-rate.js';
import { median, parseArgs, printTable, runCoordinator, writeResult } from './lib.js';

const a = parseArgs(process.argv.slice(2), { runs: 3, trainLimit: 12800, batchSize: 32, backend: 'wasm', workers: '1,2,4' });
const worlds = a.workers.split(',').map(Number);
const results = [];
for (const workers of worlds) {
  const runs = [];
  for (let i = 0; i < a.runs; i++) {
    const r = await runCoordinator(['--workers', String(workers), '--batch-size', String(a.batchSize), '--backend', a.backend, '--train-limit', String(a.trainLimit), '--test-limit', '1000']);
    if (r.steadyImagesPerSecond === null) throw new Error(`${workers} worker(s): ${r.steps} steps, none after the first ${WARMUP_STEPS}; raise --train-limit`);
    runs.push({
      imagesPerSecond: r.steadyImagesPerSecond,
      allStepsImagesPerSecond: r.imagesPerSecond,
      coordinatorPeakRssMB: r.coordinatorPeakRssBytes / 2 ** 20,
      workerPeakRssMB: Math.max(...r.perWorker.map((w) => w.peakRssBytes)) / 2 ** 20,
    });
    console.error(`${workers} worker(s), run ${i + 1}/${a.runs}: ${r.steadyImagesPerSecond.toFixed(1)} img/s after ${WARMUP_STEPS} warm-up steps, ${r.imagesPerSecond.toFixed(1)} over all steps`);
  }
  results.push({
    workers,
    imagesPerSecond: median(runs.map((r) => r.imagesPerSecond)),
    allStepsImagesPerSecond: median(runs.map((r) => r.allStepsImagesPerSecond)),
    coordinatorPeakRssMB: median(runs.map((r) => r.coordinatorPeakRssMB)),
    workerPeakRssMB: median(runs.map((r) => r.workerPeakRssMB)),
    runs,
  });
}
const one = results[0]!.imagesPerSecond;
printTable(
  ['workers', `img/s after ${WARMUP_STEPS} warm-up steps (median)`, 'runs', 'img/s all steps (median)', 'speed-up vs first (after warm-up)', 'coordinator peak RSS MB', 'worker peak RSS MB'],
  results.map((r) => [r.workers, r.imagesPerSecond, r.runs.map((x) => x.imagesPerSecond.toFixed(0)).join(' / '), r.allStepsImagesPerSecond, r.imagesPerSecond / one, r.coordinatorPeakRssMB, r.workerPeakRssMB]),
);
const path = writeResult('throughput', { options: a, warmupSteps: WARMUP_STEPS, results });
console.log(`\nwritten to ${path}`);
