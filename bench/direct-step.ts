/**
 * A worker's step on wasm with the gradient tape and without it (src/model/direct-step.ts),
 * interleaved step by step in one process (alternating which goes first) so the machine's
 * phases fall on both alike: the same GradientComputer, weights and batches. Prints medians of
 * wall and CPU time per step and the median of the per-step ratios; writes
 * bench/results/<name>.json.
 *
 *   npx tsx bench/direct-step.ts [--batch 32] [--steps 300] [--warmup 20] [--model mnist-cnn] [--name direct-step-b32]
 */
import { gatherBatch } from '../src/data/batch.js';
import { loadMnist } from '../src/data/mnist.js';
import { selectBackend } from '../src/model/backend.js';
import { directStepTuning } from '../src/model/direct-step.js';
import { GradientComputer } from '../src/model/gradients.js';
import { initialWeights } from '../src/model/init.js';
import { checkResultName, median, parseArgs, printTable, writeResult } from './lib.js';

const a = parseArgs(process.argv.slice(2), { batch: 32, steps: 300, warmup: 20, model: 'mnist-cnn', name: '' });
const name = checkResultName(a.name || `direct-step-b${a.batch}`);
const info = await selectBackend('wasm');
const data = loadMnist({ trainLimit: 8192, skipTest: true });
const computer = new GradientComputer(a.model);
computer.setWeights(initialWeights(computer.layout, 1));
const grad = new Float32Array(computer.layout.totalSize);
const modes = ['direct', 'tape'] as const;
const wall = { direct: [] as number[], tape: [] as number[] };
const cpu = { direct: [] as number[], tape: [] as number[] };
for (let s = 0; s < a.warmup + a.steps; s++) {
  const batch = gatherBatch(data.train, Array.from({ length: a.batch }, (_, k) => (s * a.batch + k) % data.train.count));
  for (const mode of s % 2 ? modes : [...modes].reverse()) {
    directStepTuning.enabled = mode === 'direct';
    const c0 = process.cpuUsage();
    const t0 = performance.now();
    await computer.computeGradients(batch, grad);
    const ms = performance.now() - t0;
    const c = process.cpuUsage(c0);
    if (s >= a.warmup) {
      wall[mode].push(ms);
      cpu[mode].push((c.user + c.system) / 1000);
    }
  }
}
directStepTuning.enabled = true;
const ratios = wall.direct.map((d, i) => d / wall.tape[i]!);
const summary = {
  directMs: median(wall.direct),
  tapeMs: median(wall.tape),
  medianRatio: median(ratios),
  directFasterIn: ratios.filter((r) => r < 1).length,
  directCpuMs: median(cpu.direct),
  tapeCpuMs: median(cpu.tape),
};
console.log(`${info.device}, ${a.model}, batch ${a.batch}, ${a.steps} interleaved steps after ${a.warmup} warm-up`);
printTable(
  ['step', 'wall ms (median)', 'CPU ms (median)'],
  [
    ['without the tape', summary.directMs.toFixed(2), summary.directCpuMs.toFixed(2)],
    ['with the tape', summary.tapeMs.toFixed(2), summary.tapeCpuMs.toFixed(2)],
  ],
);
console.log(`without / with, median of the per-step ratios: ${summary.medianRatio.toFixed(3)} (faster in ${summary.directFasterIn} of ${a.steps} steps)`);
console.log(`written to ${writeResult(name, { name, date: new Date().toISOString(), backend: info.device, model: a.model, batch: a.batch, steps: a.steps, warmup: a.warmup, ...summary })}`);
