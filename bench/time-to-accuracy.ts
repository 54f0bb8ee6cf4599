/**
 * Time to a target test accuracy, measured side by side in one invocation: the cluster with W
 * local workers against PyTorch DDP with W processes (bench/peers/pytorch_ddp.py, when
 * /usr/bin/python3 has torch), the same per-worker batch, the same model and data.
 *
 *   npm run bench:time-to-accuracy -- [--runs 3] [--target 0.975] [--max-epochs 2] [--workers 2]
 *       [--batch-size 32] [--backend wasm] [--ps-mode colocated] [--seed 42] [--train-limit K] [--test-limit K]
 *
 * Both sides evaluate on the test set after every epoch (epoch granularity), so the time to the
 * target is the cumulative training time of the epochs up to the first one whose test accuracy is
 * >= --target, timed the same way on both sides: training only, from the first step to the end of
 * the epoch, excluding process start-up, data loading and evaluation (our report's per-epoch
 * trainSeconds; PyTorch's time between barriers). Each side stops training once the target is
 * reached (ours is drained with SIGTERM after the epoch's line, PyTorch gets --stop-at-target);
 * otherwise it runs --max-epochs and the target counts as not reached. The two alternate,
 * --runs times each, and medians are reported (a run that did not reach the target counts as
 * infinitely slow). --train-limit/--test-limit make a quick smoke run on part of MNIST.
 */
import { execa } from 'execa';
import { hasTorch, median, parseArgs, printTable, ROOT, runCoordinatorWatching, writeResult } from './lib.js';

const a = parseArgs(process.argv.slice(2), {
  runs: 3, target: 0.975, maxEpochs: 2, workers: 2, batchSize: 32, backend: 'wasm', psMode: 'colocated', seed: 42, trainLimit: 0, testLimit: 0, python: '/usr/bin/python3',
});
for (const k of ['runs', 'maxEpochs', 'workers', 'batchSize'] as const) {
  if (!Number.isInteger(a[k]) || a[k] < 1) throw new TypeError(`--${k.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)} must be an integer >= 1, got ${a[k]}`);
}
if (!(a.target > 0 && a.target <= 1)) throw new TypeError(`--target must be an accuracy in (0, 1], got ${a.target}`);

/** One evaluated epoch, as both sides report it. */
interface Epoch {
  testAccuracy: number;
  trainSeconds: number;
}
interface Run {
  /** Cumulative training seconds up to the first epoch reaching the target; null if none did. */
  timeToTargetSeconds: number | null;
  /** Epochs trained up to and including that one (null: not reached). */
  epochsToTarget: number | null;
  epochsRun: number;
  /** Test accuracy of the last evaluated epoch. */
  finalAccuracy: number;
  trainSeconds: number;
  imagesPerSecond: number;
  wallSeconds: number;
  epochs: { testAccuracy: number; trainSeconds: number; cumulativeTrainSeconds: number }[];
}
type Tool = { name: string; kind: 'cluster' | 'pytorch'; run: () => Promise<Run> };

/** The figures of one run from its per-epoch history (the same rule for both sides). */
function toRun(history: Epoch[], extra: { imagesPerSecond: number; wallSeconds: number }): Run {
  let cumulative = 0;
  let reached: number | null = null;
  const epochs = history.map((h, i) => {
    cumulative += h.trainSeconds;
    if (reached === null && h.testAccuracy >= a.target) reached = i;
    return { testAccuracy: h.testAccuracy, trainSeconds: h.trainSeconds, cumulativeTrainSeconds: cumulative };
  });
  if (epochs.length === 0) throw new Error('the run evaluated no epoch');
  return {
    timeToTargetSeconds: reached === null ? null : epochs[reached]!.cumulativeTrainSeconds,
    epochsToTarget: reached === null ? null : reached + 1,
    epochsRun: epochs.length,
    finalAccuracy: epochs[epochs.length - 1]!.testAccuracy,
    trainSeconds: cumulative,
    ...extra,
    epochs,
  };
}

/** `epoch 1/2 done: train loss 0.2240, test accuracy 97.45%, test loss 0.0824, 107.2 s` (src/telemetry/progress.ts). */
const EPOCH_LINE = /^epoch (\d+)\/(\d+) done: .*test accuracy ([\d.]+)%/;

async function runCluster(): Promise<Run> {
  const args = [
    '--workers', String(a.workers), '--epochs', String(a.maxEpochs), '--batch-size', String(a.batchSize), '--backend', a.backend,
    '--seed', String(a.seed), '--train-limit', String(a.trainLimit), '--test-limit', String(a.testLimit), '--no-http', '--ps-mode', a.psMode,
  ];
  const started = performance.now();
  const { report, stopped } = await runCoordinatorWatching(args, (line, stop) => {
    const m = EPOCH_LINE.exec(line);
    if (!m) return;
    console.error(`  tensorfleet: ${line}`);
    const [epoch, epochs, percent] = [Number(m[1]), Number(m[2]), Number(m[3])];
    // The line rounds to 0.01 %: stop only when the target is surely reached (the report decides anyway).
    if (epoch < epochs && percent - 0.005 >= a.target * 100 - 1e-9) stop();
  });
  if (report.status === 'failed') throw new Error(`cluster run failed: ${report.error ?? 'no error given'}`);
  const run = toRun(report.epochHistory, { imagesPerSecond: report.imagesPerSecond, wallSeconds: (performance.now() - started) / 1000 });
  if (stopped && run.timeToTargetSeconds === null) throw new Error('cluster run was stopped early but its report shows the target not reached');
  return run;
}

interface PeerOutput {
  epochHistory: Epoch[];
  timeToTargetSeconds: number | null;
  imagesPerSecond: number;
  torch: string;
  blas: string;
}
let peerInfo: { torch: string; blas: string } | undefined;

async function runPytorch(): Promise<Run> {
  const started = performance.now();
  const r = await execa(a.python, [
    `${ROOT}/bench/peers/pytorch_ddp.py`, '--procs', String(a.workers), '--batch-size', String(a.batchSize), '--epochs', String(a.maxEpochs),
    '--seed', String(a.seed), '--train-limit', String(a.trainLimit), '--test-limit', String(a.testLimit),
    '--target-accuracy', String(a.target), '--stop-at-target',
  ], { reject: false });
  if (r.exitCode !== 0) throw new Error(`pytorch_ddp.py exited ${r.exitCode}: ${r.stderr.slice(-1500)}`);
  for (const line of r.stderr.split('\n').filter((l) => l.startsWith('epoch '))) console.error(`  pytorch: ${line}`);
  const j = JSON.parse(r.stdout.trim().split('\n').pop()!) as PeerOutput;
  peerInfo = { torch: j.torch, blas: j.blas };
  const run = toRun(j.epochHistory, { imagesPerSecond: j.imagesPerSecond, wallSeconds: (performance.now() - started) / 1000 });
  const own = j.timeToTargetSeconds;
  if ((own === null) !== (run.timeToTargetSeconds === null) || (own !== null && Math.abs(own - run.timeToTargetSeconds!) > 1e-6)) {
    console.error(`  warning: pytorch_ddp.py reports timeToTargetSeconds ${own}, its epoch history gives ${run.timeToTargetSeconds}`);
  }
  return run;
}

const tools: Tool[] = [{ name: `tensorfleet ${a.workers} workers (${a.psMode}), batch ${a.batchSize}, ${a.backend}`, kind: 'cluster', run: runCluster }];
const torch = await hasTorch(a.python);
if (torch) tools.push({ name: `PyTorch DDP ${a.workers} processes, batch ${a.batchSize}`, kind: 'pytorch', run: runPytorch });
else console.error(`PyTorch peer skipped: ${a.python} has no torch (apt-get install python3-torch libopenblas0-pthread)`);

const data = `${a.trainLimit || 'all'} train / ${a.testLimit || 'all'} test samples`;
console.error(`time to test accuracy ${a.target}: ${a.runs} run(s) each, at most ${a.maxEpochs} epoch(s), ${data}, seed ${a.seed}`);
const runs = new Map<string, Run[]>(tools.map((t) => [t.name, []]));
for (let i = 0; i < a.runs; i++) {
  for (const t of tools) {
    console.error(`run ${i + 1}/${a.runs} ${t.name}`);
    const r = await t.run();
    runs.get(t.name)!.push(r);
    console.error(`run ${i + 1}/${a.runs} ${t.name}: ${r.timeToTargetSeconds === null ? `target not reached in ${r.epochsRun} epoch(s)` : `${r.timeToTargetSeconds.toFixed(1)} s, ${r.epochsToTarget} epoch(s)`}, final accuracy ${r.finalAccuracy.toFixed(4)}`);
  }
}

/** Median where null (not reached) counts as infinitely slow; null if the median run did not reach it. */
function medianReached(values: (number | null)[]): number | null {
  const m = median(values.map((v) => v ?? Infinity));
  return Number.isFinite(m) ? m : null;
}
const results = tools.map((t) => {
  const rs = runs.get(t.name)!;
  return {
    name: t.name, kind: t.kind,
    medianTimeToTargetSeconds: medianReached(rs.map((r) => r.timeToTargetSeconds)),
    medianEpochsToTarget: medianReached(rs.map((r) => r.epochsToTarget)),
    reachedIn: rs.filter((r) => r.timeToTargetSeconds !== null).length,
    medianFinalAccuracy: median(rs.map((r) => r.finalAccuracy)),
    medianImagesPerSecond: median(rs.map((r) => r.imagesPerSecond)),
    runs: rs,
  };
});
const ours = results.find((r) => r.kind === 'cluster')!;
const peer = results.find((r) => r.kind === 'pytorch');
const ratio = ours.medianTimeToTargetSeconds !== null && peer?.medianTimeToTargetSeconds != null ? ours.medianTimeToTargetSeconds / peer.medianTimeToTargetSeconds : null;

const seconds = (x: number | null) => (x === null ? 'not reached' : `${x.toFixed(1)} s`);
console.log(`Time to test accuracy >= ${a.target} (${data}; at most ${a.maxEpochs} epoch(s); ${a.runs} run(s) each, alternating).`);
console.log('Both sides evaluate after every epoch, so times are at epoch granularity: the cumulative training time (start-up, data loading');
console.log('and evaluation excluded) of the epochs up to the first that reaches the target.\n');
printTable(
  ['tool', 'time to target per run', 'median time to target', 'epochs needed', 'reached in', 'final accuracy (median)', 'train img/s (median)', 'ours / PyTorch'],
  results.map((r) => [
    r.name,
    r.runs.map((x) => (x.timeToTargetSeconds === null ? 'n.r.' : x.timeToTargetSeconds.toFixed(1))).join(' / '),
    seconds(r.medianTimeToTargetSeconds),
    r.medianEpochsToTarget === null ? `> ${a.maxEpochs}` : r.medianEpochsToTarget,
    `${r.reachedIn}/${r.runs.length} runs`,
    r.medianFinalAccuracy,
    r.medianImagesPerSecond,
    r.kind === 'cluster' ? (ratio === null ? '-' : `${ratio.toFixed(2)}x`) : '-',
  ]),
);
if (!peer) console.log('\n(PyTorch peer skipped: no torch, so no ratio.)');
else if (ratio === null) console.log(`\n(no ratio: ${[ours, peer].filter((r) => r.medianTimeToTargetSeconds === null).map((r) => r.name).join(' and ')} did not reach ${a.target} in the median run)`);
const path = writeResult('time-to-accuracy', {
  options: a, pytorch: torch ? peerInfo ?? null : null,
  granularity: 'epoch: test accuracy is evaluated after every epoch on both sides; time = cumulative training seconds up to the first epoch reaching the target',
  results, oursOverPytorch: ratio,
});
console.log(`\nwritten to ${path}`);
