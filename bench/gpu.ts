/**
 * GPU figures wherever a GPU is at hand: one worker of the real coordinator (`runCoordinator`)
 * on `webgpu` (Dawn; and on `tensorflow` when @tensorflow/tfjs-node-gpu is installed) at several
 * batch sizes: images/s, and the mean step split into compute (forward, backward, reading the
 * gradient back) and transfer (weights out, gradient in) as the run report measures them.
 *
 * Each configuration trains 2 epochs of `steps × batch` samples: epoch 1 includes compiling
 * the GPU pipelines (seconds on a software adapter), epoch 2 is warm and gives "img/s (warm)".
 * The step split is the mean over both epochs (warm-up included).
 *
 * On a machine without a GPU this runs on Mesa's software Vulkan device (lavapipe): the table
 * says "software adapter" and the default is 4 steps per epoch so it ends in a few minutes.
 *
 *   npm run build && npx tsx bench/gpu.ts [--batch-sizes 32,128,512] [--steps N] [--backends webgpu,tensorflow]
 */
import { createRequire } from 'node:module';
import { describeAdapter, probeWebgpuAdapter, type AdapterSummary } from '../src/model/webgpu.js';
import { parseArgs, printTable, runCoordinator, writeResult } from './lib.js';

const a = parseArgs(process.argv.slice(2), { batchSizes: '32,128,512', steps: 0, backends: 'webgpu,tensorflow', testLimit: 100 });
const batchSizes = a.batchSizes.split(',').map(Number);
const wanted = a.backends.split(',');

let adapter: AdapterSummary | undefined;
let adapterError: string | undefined;
try {
  adapter = (await probeWebgpuAdapter()).summary;
} catch (err) {
  adapterError = (err as Error).message;
}
const tfjsNodeGpu = (() => {
  try {
    createRequire(import.meta.url).resolve('@tensorflow/tfjs-node-gpu');
    return true;
  } catch {
    return false;
  }
})();
const steps = a.steps || (adapter && !adapter.software ? 20 : 4);

console.log(`WebGPU adapter: ${adapter ? `${describeAdapter(adapter)}${adapter.software ? ' (software adapter: a CPU emulating a GPU; figures show the code path, not GPU speed)' : ''}` : `none (${adapterError})`}`);
console.log(`@tensorflow/tfjs-node-gpu: ${tfjsNodeGpu ? 'installed' : 'not installed (the tensorflow rows are skipped)'}`);
console.log(`${steps} steps per epoch, 2 epochs, 1 worker\n`);

const backends: { backend: 'webgpu' | 'tensorflow'; device: string }[] = [];
if (wanted.includes('webgpu') && adapter) backends.push({ backend: 'webgpu', device: adapter.software ? `software adapter: ${adapter.name}` : `gpu: ${adapter.name}` });
if (wanted.includes('tensorflow') && tfjsNodeGpu) backends.push({ backend: 'tensorflow', device: 'gpu (CUDA, tfjs-node-gpu)' });
if (backends.length === 0) {
  console.error('nothing to measure: no WebGPU adapter and no @tensorflow/tfjs-node-gpu');
  process.exit(1);
}

const results = [];
for (const { backend, device } of backends) {
  for (const batchSize of batchSizes) {
    const trainLimit = steps * batchSize;
    const started = performance.now();
    const r = await runCoordinator(['--workers', '1', '--backend', backend, '--batch-size', String(batchSize), '--train-limit', String(trainLimit), '--test-limit', String(a.testLimit), '--epochs', '2']);
    const warm = r.epochHistory[1]!;
    const p = r.stepPhasesMs;
    const row = {
      backend,
      device,
      batchSize,
      trainLimit,
      steps: r.steps,
      imagesPerSecondWarm: warm.samples / warm.trainSeconds,
      imagesPerSecond: r.imagesPerSecond,
      firstEpochSeconds: r.epochHistory[0]!.trainSeconds,
      stepPhasesMs: p,
      trainLoss: r.epochHistory.map((e) => e.trainLoss),
      wallSeconds: (performance.now() - started) / 1000,
    };
    results.push(row);
    console.error(`${backend} batch ${batchSize}: ${row.imagesPerSecondWarm.toFixed(1)} img/s warm, compute ${p.compute.toFixed(0)} ms, transfer ${p.transfer.toFixed(0)} ms per step (${row.wallSeconds.toFixed(0)} s)`);
  }
}

printTable(
  ['backend', 'device', 'batch', 'img/s (warm)', 'img/s (all)', 'epoch 1 s', 'compute ms', 'transfer ms', 'encode ms', 'wait ms', 'optimizer ms', 'compute %'],
  results.map((r) => [
    r.backend,
    r.device,
    r.batchSize,
    r.imagesPerSecondWarm,
    r.imagesPerSecond,
    r.firstEpochSeconds,
    r.stepPhasesMs.compute,
    r.stepPhasesMs.transfer,
    r.stepPhasesMs.encode,
    r.stepPhasesMs.wait,
    r.stepPhasesMs.optimizer,
    (100 * r.stepPhasesMs.compute) / r.stepPhasesMs.total,
  ]),
);
const path = writeResult('gpu', { options: { ...a, steps }, adapter: adapter ?? null, adapterError: adapterError ?? null, tfjsNodeGpu, results });
console.log(`\nwritten to ${path}`);
