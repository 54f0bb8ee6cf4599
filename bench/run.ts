/**
 * `npm run bench`: everything measured side by side in one invocation, so ratios are fair.
 *  (a) single-process TensorFlow.js (`model.fit`, the baseline a user has today), same backend;
 *  (b) the cluster with 1, 2 and 4 local workers, in each --modes: `in-process` (the
 *      coordinator's parameter server) and `colocated` (every worker serves one shard):
 *      images/s, the step split, CPU per step (every process summed), bytes per step, scaling efficiency, peak RSS;
 *  (c) PyTorch DDP (bench/peers/pytorch_ddp.py), when /usr/bin/python3 has torch;
 *  (d) the largest world again with its variables on K parameter-server shard processes
 *      (`--ps-shards K --ps-mode process`), at the first batch size.
 * Each configuration runs --runs times, round-robin, and the medians are reported. Within a
 * round, each PyTorch configuration runs right after the cluster runs it is compared with (same
 * processes, same batch), so that every round also gives a ratio of two runs made minutes
 * apart at most, in the same phase of a noisy machine: the table's "per round" column is the
 * median of those ratios and the number of rounds tensorfleet was faster in.
 *
 * The images/s compared (imagesPerSecond, scaling efficiency, the ratios to PyTorch) leave out
 * each run's first WARMUP_STEPS (5) steps on every side, the PyTorch peer's count: the run
 * report's steadyImagesPerSecond, baseline.ts's steadyImagesPerSecond and the peer's
 * imagesPerSecond. The figure over all steps (the first ones include compiling the wasm kernels)
 * is kept as allStepsImagesPerSecond, for tensorfleet and the baseline.
 *
 *   npm run bench -- [--runs 3] [--samples 6400] [--batch-sizes 32,128] [--workers 1,2,4] [--modes in-process,colocated] [--shards 2] [--backend wasm] [--name bench]
 *
 * --shards 1 leaves out (d); --name names the result file (bench/results/<name>.json), for a focused re-run.
 */
import { existsSync } from 'node:fs';
import { execa } from 'execa';
import { WARMUP_STEPS } from '../src/coordinator/steady-rate.js';
import { checkResultName, cpuMsPerStepOf, median, parseArgs, printTable, ROOT, runCoordinator, runScript, writeResult } from './lib.js';

const a = parseArgs(process.argv.slice(2), { runs: 3, samples: 6400, batchSizes: '32,128', workers: '1,2,4', modes: 'in-process,colocated', shards: '2', backend: 'wasm', python: '/usr/bin/python3', name: 'bench' });
checkResultName(a.name);
const batchSizes = a.batchSizes.split(',').map(Number);
const worlds = a.workers.split(',').map(Number);
const modes = a.modes.split(',');
for (const m of modes) if (m !== 'in-process' && m !== 'colocated') throw new TypeError(`--modes takes in-process and/or colocated; got '${m}'`);

interface Sample {
  /** After the first WARMUP_STEPS steps: what is compared. */
  imagesPerSecond: number;
  /** Over all steps (undefined for PyTorch, whose peer reports only the figure above). */
  allStepsImagesPerSecond?: number;
  phases?: Record<string, number>;
  bytesPerStep?: number;
  coordinatorRssMB?: number;
  workerRssMB?: number;
  /** CPU time per step after the warm-up, every process of the run summed (cluster and PyTorch). */
  cpuMsPerStep?: number;
}
/** A warm-up-free figure, or an error naming the run that had too few steps for one. */
function steady(imagesPerSecond: number | null | undefined, what: string): number {
  if (typeof imagesPerSecond !== 'number') throw new Error(`${what}: no images/s after the first ${WARMUP_STEPS} steps (${WARMUP_STEPS} steps or fewer; raise --samples)`);
  return imagesPerSecond;
}
type Config = { name: string; kind: 'baseline' | 'cluster' | 'pytorch'; workers: number; batchSize: number; shards?: number; mode?: string; run: () => Promise<Sample> };

async function hasTorch(): Promise<boolean> {
  if (!existsSync(a.python)) return false;
  const r = await execa(a.python, ['-c', 'import torch'], { reject: false });
  return r.exitCode === 0;
}

function clusterConfig(w: number, b: number, shards: number, mode = 'in-process'): Config {
  const sharded = shards > 1 ? ['--ps-shards', String(shards), '--ps-mode', 'process'] : ['--ps-mode', mode];
  const what = shards > 1 ? `, ${shards} PS shard processes` : mode === 'colocated' ? ', co-located shards' : '';
  const name = `tensorfleet ${w} worker(s)${what}, batch ${b}`;
  return {
    name, kind: 'cluster', workers: w, batchSize: b, shards: shards > 1 ? shards : undefined, mode: shards > 1 ? 'process' : mode,
    run: async () => {
      const r = await runCoordinator(['--workers', String(w), '--batch-size', String(b), '--backend', a.backend, '--train-limit', String(a.samples), '--test-limit', '100', ...sharded]);
      return {
        imagesPerSecond: steady(r.steadyImagesPerSecond, name),
        allStepsImagesPerSecond: r.imagesPerSecond,
        phases: r.stepPhasesMs,
        bytesPerStep: r.bytesPerStepPerWorker.sent + r.bytesPerStepPerWorker.received,
        coordinatorRssMB: r.coordinatorPeakRssBytes / 2 ** 20,
        workerRssMB: Math.max(...r.perWorker.map((p) => p.peakRssBytes)) / 2 ** 20,
        cpuMsPerStep: cpuMsPerStepOf(r) ?? undefined,
      };
    },
  };
}

const configs: Config[] = [];
for (const b of batchSizes) {
  configs.push({
    name: `tfjs single process, batch ${b}`, kind: 'baseline', workers: 1, batchSize: b,
    run: async () => {
      const r = await runScript<{ imagesPerSecond: number; steadyImagesPerSecond: number | null; peakRssBytes: number }>('bench/baseline.ts', ['--epochs', '1', '--batch-size', String(b), '--train-limit', String(a.samples), '--test-limit', '100', '--backend', a.backend]);
      return { imagesPerSecond: steady(r.steadyImagesPerSecond, `baseline, batch ${b}`), allStepsImagesPerSecond: r.imagesPerSecond, workerRssMB: r.peakRssBytes / 2 ** 20 };
    },
  });
  for (const m of modes) for (const w of worlds) configs.push(clusterConfig(w, b, 1, m));
}
for (const k of a.shards.split(',').map(Number).filter((k) => k > 1)) configs.push(clusterConfig(Math.max(...worlds), batchSizes[0]!, k));
for (const c of configs) {
  if (Math.ceil(a.samples / (c.workers * c.batchSize)) <= WARMUP_STEPS) throw new TypeError(`${c.name}: --samples ${a.samples} makes ${WARMUP_STEPS} steps or fewer, nothing after the warm-up`);
}
const torch = await hasTorch();
if (torch) {
  for (const b of batchSizes) {
    for (const p of worlds.filter((w) => w <= 2)) {
      configs.push({
        name: `PyTorch DDP ${p} process(es), batch ${b}`, kind: 'pytorch', workers: p, batchSize: b,
        run: async () => {
          const steps = Math.max(20, Math.floor(a.samples / (p * b)));
          const r = await execa(a.python, [`${ROOT}/bench/peers/pytorch_ddp.py`, '--procs', String(p), '--batch-size', String(b), '--epochs', '1', '--max-steps', String(steps), '--test-limit', '100'], { reject: false });
          if (r.exitCode !== 0) throw new Error(`pytorch_ddp.py failed: ${r.stderr.slice(-1500)}`);
          const j = JSON.parse(r.stdout.trim().split('\n').pop()!) as { imagesPerSecond: number | null; peakRssBytes: number; cpuMsPerStep?: number | null };
          return { imagesPerSecond: steady(j.imagesPerSecond, `PyTorch DDP ${p} process(es), batch ${b}`), workerRssMB: j.peakRssBytes / 2 ** 20, cpuMsPerStep: j.cpuMsPerStep ?? undefined };
        },
      });
    }
  }
  // Each peer right after the last cluster configuration it is compared with, in every round.
  for (const peerConfig of configs.filter((c) => c.kind === 'pytorch')) {
    configs.splice(configs.indexOf(peerConfig), 1);
    let last = -1;
    configs.forEach((c, i) => {
      if (c.kind === 'cluster' && !c.shards && c.workers === peerConfig.workers && c.batchSize === peerConfig.batchSize) last = i;
    });
    configs.splice(last < 0 ? configs.length : last + 1, 0, peerConfig);
  }
} else {
  console.error(`PyTorch peer skipped: ${a.python} has no torch (apt-get install python3-torch libopenblas0-pthread)`);
}

const samples = new Map<string, Sample[]>(configs.map((c) => [c.name, []]));
for (let i = 0; i < a.runs; i++) {
  for (const c of configs) {
    const s = await c.run();
    samples.get(c.name)!.push(s);
    console.error(`run ${i + 1}/${a.runs} ${c.name}: ${s.imagesPerSecond.toFixed(1)} img/s after ${WARMUP_STEPS} warm-up steps${s.allStepsImagesPerSecond === undefined ? '' : `, ${s.allStepsImagesPerSecond.toFixed(1)} over all steps`}`);
  }
}

const med = (xs: (number | undefined)[]) => (xs.some((x) => x === undefined) ? undefined : median(xs as number[]));
const results = configs.map((c) => {
  const ss = samples.get(c.name)!;
  const phases = ss[0]!.phases ? Object.fromEntries(Object.keys(ss[0]!.phases!).map((k) => [k, median(ss.map((s) => s.phases![k]!))])) : undefined;
  return {
    name: c.name, kind: c.kind, workers: c.workers, batchSize: c.batchSize, shards: c.shards, mode: c.mode,
    imagesPerSecond: median(ss.map((s) => s.imagesPerSecond)),
    runs: ss.map((s) => s.imagesPerSecond),
    allStepsImagesPerSecond: med(ss.map((s) => s.allStepsImagesPerSecond)),
    allStepsRuns: ss[0]!.allStepsImagesPerSecond === undefined ? undefined : ss.map((s) => s.allStepsImagesPerSecond!),
    phasesMs: phases,
    bytesPerStepPerWorker: med(ss.map((s) => s.bytesPerStep)),
    coordinatorPeakRssMB: med(ss.map((s) => s.coordinatorRssMB)),
    workerPeakRssMB: med(ss.map((s) => s.workerRssMB)),
    cpuMsPerStep: med(ss.map((s) => s.cpuMsPerStep)),
  };
});
const oneWorker = (b: number, mode: string | undefined) => results.find((r) => r.kind === 'cluster' && r.workers === 1 && r.batchSize === b && r.mode === mode)?.imagesPerSecond;
const peer = (b: number, p: number) => results.find((r) => r.kind === 'pytorch' && r.workers === p && r.batchSize === b)?.imagesPerSecond;
const fmt = (x: number | undefined, digits = 1) => (x === undefined ? '-' : x.toFixed(digits));
/** The PyTorch configuration a result is compared with (same processes and batch), if any. */
const peerOf = (r: (typeof results)[number]) => (r.kind === 'pytorch' || (r.shards && r.shards > 1) ? undefined : results.find((x) => x.kind === 'pytorch' && x.workers === r.workers && x.batchSize === r.batchSize));
/** Round by round: this result's run over its peer's run of the same round. */
function perRound(r: (typeof results)[number]): { median: number; faster: number; rounds: number } | undefined {
  const p = peerOf(r);
  if (!p) return undefined;
  const ratios = r.runs.map((x, i) => x / p.runs[i]!);
  return { median: median(ratios), faster: ratios.filter((x) => x > 1).length, rounds: ratios.length };
}
printTable(
  ['configuration', `img/s after ${WARMUP_STEPS} warm-up steps (median)`, 'runs', 'img/s all steps (median)', 'scaling eff. (after warm-up)', 'vs PyTorch same procs (after warm-up)', 'vs PyTorch per round (median; faster in)', 'compute/encode/transfer/wait/opt ms', 'transfer+wait', 'CPU ms/step, all processes', 'bytes/step/worker', 'RSS MB coord/worker'],
  results.map((r) => {
    const one = oneWorker(r.batchSize, r.mode);
    const p = peerOf(r)?.imagesPerSecond;
    const rounds = r.kind !== 'pytorch' ? perRound(r) : undefined;
    const ph = r.phasesMs;
    return [
      r.name, r.imagesPerSecond, r.runs.map((x) => x.toFixed(0)).join(' / '), r.allStepsImagesPerSecond ?? '-',
      r.kind === 'cluster' && one ? `${((100 * r.imagesPerSecond) / (r.workers * one)).toFixed(0)} %` : '-',
      r.kind !== 'pytorch' && p ? `${(r.imagesPerSecond / p).toFixed(2)}x` : '-',
      rounds ? `${rounds.median.toFixed(2)}x; ${rounds.faster} of ${rounds.rounds}` : '-',
      ph ? [ph.compute, ph.encode, ph.transfer, ph.wait, ph.optimizer].map((x) => fmt(x)).join(' / ') : '-',
      ph ? `${fmt((100 * (ph.transfer! + ph.wait!)) / (ph.compute! + ph.encode! + ph.transfer! + ph.wait! + ph.optimizer!), 0)} %` : '-',
      fmt(r.cpuMsPerStep),
      r.bytesPerStepPerWorker === undefined ? '-' : String(r.bytesPerStepPerWorker),
      `${fmt(r.coordinatorPeakRssMB, 0)} / ${fmt(r.workerPeakRssMB, 0)}`,
    ];
  }),
);
const twoWorkers = (b: number, mode: string) => results.find((r) => r.kind === 'cluster' && r.workers === 2 && r.batchSize === b && r.mode === mode);
const peerRatios = batchSizes.flatMap((b) =>
  modes.map((mode) => {
    const r = twoWorkers(b, mode);
    const rounds = r ? perRound(r) : undefined;
    return { batchSize: b, mode, twoWorkersVsPytorch2: (r?.imagesPerSecond ?? NaN) / (peer(b, 2) ?? NaN), perRoundMedian: rounds?.median ?? null, fasterInRounds: rounds?.faster ?? null, rounds: rounds?.rounds ?? null };
  }),
);
const path = writeResult(a.name, { options: a, warmupSteps: WARMUP_STEPS, pytorch: torch, results, peerRatios });
console.log(`\nwritten to ${path}`);
