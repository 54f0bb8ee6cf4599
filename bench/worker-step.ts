/**
 * One worker step in isolation: `GradientComputer.setWeights(flat)` then
 * `computeGradients(batch, out)` for the reference CNN, on the backend the product would use
 * (selectBackend, wasm by default, with the project's kernels), on real MNIST batches. No RPC.
 *
 *   npx tsx bench/worker-step.ts [--batch 32] [--steps 200] [--warmup 20] [--backend wasm]
 *                                [--model mnist-cnn] [--no-profile] [--profile-steps 15] [--repeat 1]
 *
 * Prints median/p10/p90 ms per step, images/s, the share of V8 garbage collection in the
 * timed steps (PerformanceObserver 'gc' entries), tf.memory().numTensors growth, and one
 * per-kernel breakdown (tf.profile, medians over --profile-steps steps). The last stdout line is
 * a JSON summary.
 */
import { PerformanceObserver, performance } from 'node:perf_hooks';
import * as tf from '@tensorflow/tfjs';
import { gatherBatch } from '../src/data/batch.js';
import { loadMnist } from '../src/data/mnist.js';
import { isBackendChoice, selectBackend } from '../src/model/backend.js';
import { GradientComputer } from '../src/model/gradients.js';
import { initialWeights } from '../src/model/init.js';

function flag(name: string, fallback: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 && i + 1 < process.argv.length ? process.argv[i + 1]! : fallback;
}

function intFlag(name: string, fallback: number): number {
  const v = Number(flag(name, String(fallback)));
  if (!Number.isInteger(v) || v < 1) throw new TypeError(`--${name} must be a positive integer, got '${flag(name, '')}'`);
  return v;
}

const batchSize = intFlag('batch', 32);
const steps = intFlag('steps', 200);
const warmup = intFlag('warmup', 20);
const repeat = intFlag('repeat', 1);
const backendName = flag('backend', 'wasm');
const modelName = flag('model', 'mnist-cnn');
const profile = !process.argv.includes('--no-profile');
const profileSteps = intFlag('profile-steps', 15);
if (!isBackendChoice(backendName)) throw new TypeError(`--backend: unknown backend '${backendName}'`);

function quantile(values: number[], q: number): number {
  const s = [...values].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.max(0, Math.round(q * (s.length - 1))))]!;
}

const info = await selectBackend(backendName);
const data = loadMnist({ trainLimit: Math.max(4096, batchSize * 64), skipTest: true });
const computer = new GradientComputer(modelName);
// Two weight sets, alternated: the weights change every step, as in training.
const weightSets = [initialWeights(computer.layout, 1), initialWeights(computer.layout, 2)];
const grad = new Float32Array(computer.layout.totalSize);
let cursor = 0;
const batches = Array.from({ length: 64 }, () => {
  const idx = Array.from({ length: batchSize }, () => (cursor++ * 7919) % data.train.count);
  return gatherBatch(data.train, idx);
});

let gcMs = 0;
let gcCount = 0;
let gcOn = false;
const observer = new PerformanceObserver((list) => {
  if (!gcOn) return;
  for (const entry of list.getEntries()) {
    gcMs += entry.duration;
    gcCount++;
  }
});
observer.observe({ entryTypes: ['gc'] });

async function step(i: number): Promise<number> {
  computer.setWeights(weightSets[i % 2]!);
  return computer.computeGradients(batches[i % batches.length]!, grad);
}

/** Lets the observer deliver pending gc entries. */
const flushObserver = () => new Promise((resolve) => setTimeout(resolve, 20));

for (let i = 0; i < warmup; i++) await step(i);
await flushObserver();

const runs: { medianMs: number; p10Ms: number; p90Ms: number; cpuMsPerStep: number; gcShare: number; gcMsPerStep: number; gcPerStep: number }[] = [];
let tensorsBefore = 0;
let tensorsAfter = 0;
for (let r = 0; r < repeat; r++) {
  const times: number[] = [];
  tensorsBefore = tf.memory().numTensors;
  gcMs = 0;
  gcCount = 0;
  gcOn = true;
  const t0 = performance.now();
  const cpu0 = process.cpuUsage();
  for (let i = 0; i < steps; i++) {
    const s = performance.now();
    await step(i);
    times.push(performance.now() - s);
  }
  const wall = performance.now() - t0;
  const cpu = process.cpuUsage(cpu0);
  await flushObserver();
  gcOn = false;
  tensorsAfter = tf.memory().numTensors;
  runs.push({
    medianMs: quantile(times, 0.5),
    p10Ms: quantile(times, 0.1),
    p90Ms: quantile(times, 0.9),
    // CPU time of this process per step: less sensitive than wall time to other processes.
    cpuMsPerStep: (cpu.user + cpu.system) / 1000 / steps,
    gcShare: gcMs / wall,
    gcMsPerStep: gcMs / steps,
    gcPerStep: gcCount / steps,
  });
}
observer.disconnect();

const fmt = (n: number, d = 2) => n.toFixed(d);
console.log(`backend ${info.name} (${info.device}), model ${modelName}, batch ${batchSize}, ${steps} steps x ${repeat} after ${warmup} warm-up`);
for (const [r, run] of runs.entries()) {
  console.log(
    `run ${r}: median ${fmt(run.medianMs)} ms/step (p10 ${fmt(run.p10Ms)}, p90 ${fmt(run.p90Ms)}), ` +
      `${fmt((batchSize * 1000) / run.medianMs, 0)} img/s, cpu ${fmt(run.cpuMsPerStep)} ms/step, GC ${fmt(run.gcMsPerStep)} ms/step (${fmt(run.gcPerStep, 2)} collections, ${fmt(100 * run.gcShare, 1)}% of wall)`,
  );
}
console.log(`tf.memory().numTensors: ${tensorsBefore} -> ${tensorsAfter} over the last ${steps} steps`);

let kernels: { name: string; ms: number; count: number }[] = [];
if (profile) {
  // Per-kernel medians over several profiled steps (one step alone is too noisy on a busy machine).
  const perStep: Map<string, { ms: number; count: number }>[] = [];
  const walls: number[] = [];
  for (let i = 0; i < profileSteps; i++) {
    const s = performance.now();
    const prof = await tf.profile(async () => {
      await step(i);
    });
    walls.push(performance.now() - s);
    const byName = new Map<string, { ms: number; count: number }>();
    for (const k of prof.kernels) {
      // Layer-level wrappers (e.g. fusedMatMul__op) contain a kernel that is listed on its own.
      if (k.name.endsWith('__op')) continue;
      const e = byName.get(k.name) ?? { ms: 0, count: 0 };
      e.ms += typeof k.kernelTimeMs === 'number' ? k.kernelTimeMs : 0;
      e.count++;
      byName.set(k.name, e);
    }
    perStep.push(byName);
  }
  const names = new Set(perStep.flatMap((m) => [...m.keys()]));
  kernels = [...names]
    .map((name) => ({ name, ms: quantile(perStep.map((m) => m.get(name)?.ms ?? 0), 0.5), count: perStep[0]!.get(name)?.count ?? 0 }))
    .sort((a, b) => b.ms - a.ms);
  const total = kernels.reduce((s, k) => s + k.ms, 0);
  console.log(`\nprofiled ${profileSteps} steps: median wall ${fmt(quantile(walls, 0.5))} ms (profiler overhead included), per-kernel medians sum to ${fmt(total)} ms`);
  for (const k of kernels) if (k.ms >= 0.01) console.log(`  ${k.name.padEnd(24)} ${fmt(k.ms).padStart(8)} ms  x${k.count}`);
}

const best = runs.reduce((a, b) => (a.medianMs <= b.medianMs ? a : b));
console.log(
  JSON.stringify({
    backend: info.name,
    model: modelName,
    batch: batchSize,
    steps,
    medianMs: best.medianMs,
    imagesPerSecond: (batchSize * 1000) / best.medianMs,
    runs,
    numTensorsGrowth: tensorsAfter - tensorsBefore,
    kernels,
  }),
);
computer.dispose();
