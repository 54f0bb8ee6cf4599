/**
 * Two variants of the same cluster run, alternated: A, B, A, B, ... so that the machine's slow
 * and fast phases (single runs here vary by up to 2x) fall on both alike. Each variant is the
 * coordinator's command line with environment variables of its own, e.g. a kernel switched off:
 *
 *   npx tsx bench/paired.ts --pairs 5 --env-b TENSORFLEET_WASM_FUSED_CONV=0 --name paired-fused-conv-b128 \
 *     -- --workers 2 --ps-mode colocated --train-limit 12800 --test-limit 1000 --batch-size 128
 *
 * --env-a / --env-b take KEY=VALUE[,KEY=VALUE...] (A defaults to the unchanged environment);
 * --root-a / --root-b run another built checkout (e.g. `git worktree add /tmp/old <commit>`, its
 * node_modules linked, `npm run build` there) to compare two versions of the code;
 * everything after `--` goes to the coordinator. Prints every pair (images/s after the warm-up
 * steps, `steadyImagesPerSecond`, and the workers' compute ms per step), the medians, B / A, and
 * in how many pairs A was faster; writes bench/results/<name>.json. Build first (npm run build).
 */
import { join } from 'node:path';
import { existsSync } from 'node:fs';
import { checkResultName, COORDINATOR, cpuMsPerStepOf, median, parseArgs, printTable, runCoordinator, writeResult } from './lib.js';

const split = process.argv.indexOf('--');
const own = split < 0 ? process.argv.slice(2) : process.argv.slice(2, split);
const coordinatorArgs = split < 0 ? [] : process.argv.slice(split + 1);
const options = parseArgs(own, { pairs: 5, envA: '', envB: '', rootA: '', rootB: '', name: 'paired' });
checkResultName(options.name);
const pairs = options.pairs;
if (!Number.isInteger(pairs) || pairs < 1) throw new TypeError(`--pairs must be a positive integer, got '${options.pairs}'`);
if (coordinatorArgs.length === 0) throw new TypeError('give the coordinator options after --');

function parseEnv(spec: string): Record<string, string> {
  const env: Record<string, string> = {};
  for (const item of spec.split(',').filter((s) => s !== '')) {
    const eq = item.indexOf('=');
    if (eq < 1) throw new TypeError(`environment entries are KEY=VALUE, got '${item}'`);
    env[item.slice(0, eq)] = item.slice(eq + 1);
  }
  return env;
}
function coordinatorIn(root: string): string {
  if (root === '') return COORDINATOR;
  const path = join(root, 'dist/coordinator/cli.js');
  if (!existsSync(path)) throw new TypeError(`no built coordinator at ${path} (run npm run build there)`);
  return path;
}
const variants = [
  { label: 'A', env: parseEnv(options.envA), coordinator: coordinatorIn(options.rootA) },
  { label: 'B', env: parseEnv(options.envB), coordinator: coordinatorIn(options.rootB) },
];

interface Run { steadyImagesPerSecond: number | null; allStepsImagesPerSecond: number; computeMs: number; stepMs: number; cpuMsPerStep: number | null }
const collected: Run[][] = [[], []];
const medianOrNull = (xs: (number | null)[]) => (xs.every((x) => x !== null) ? median(xs as number[]) : null);
for (let p = 0; p < pairs; p++) {
  for (const [v, variant] of variants.entries()) {
    const r = await runCoordinator(coordinatorArgs, variant.env, variant.coordinator);
    if (r.status !== 'completed') throw new Error(`variant ${variant.label}: the run ended ${r.status}: ${r.error ?? ''}`);
    // Builds before the report had steadyImagesPerSecond leave it out.
    const steady = typeof r.steadyImagesPerSecond === 'number' ? r.steadyImagesPerSecond : null;
    const cpu = cpuMsPerStepOf(r);
    collected[v]!.push({ steadyImagesPerSecond: steady, allStepsImagesPerSecond: r.imagesPerSecond, computeMs: r.stepPhasesMs.compute, stepMs: r.stepPhasesMs.total, cpuMsPerStep: cpu });
    console.error(`pair ${p + 1}/${pairs} ${variant.label}: ${(steady ?? r.imagesPerSecond).toFixed(1)} img/s, compute ${r.stepPhasesMs.compute.toFixed(1)} ms/step, CPU ${cpu?.toFixed(1) ?? '-'} ms/step`);
  }
}

// Compared: images/s after the warm-up steps where every run reports it, else over all steps.
const afterWarmup = collected.flat().every((r) => r.steadyImagesPerSecond !== null);
const metric = afterWarmup ? 'after warm-up' : 'all steps';
const runs = collected.map((list) => list.map((r) => ({ ...r, imagesPerSecond: afterWarmup ? r.steadyImagesPerSecond! : r.allStepsImagesPerSecond })));
const [a, b] = runs as [Array<Run & { imagesPerSecond: number }>, Array<Run & { imagesPerSecond: number }>];
const aFaster = a.filter((x, i) => x.imagesPerSecond > b[i]!.imagesPerSecond).length;
const summary = {
  metric,
  medianA: median(a.map((x) => x.imagesPerSecond)),
  medianB: median(b.map((x) => x.imagesPerSecond)),
  computeMsA: median(a.map((x) => x.computeMs)),
  computeMsB: median(b.map((x) => x.computeMs)),
  aFasterInPairs: aFaster,
  cpuMsPerStepA: medianOrNull(a.map((x) => x.cpuMsPerStep)),
  cpuMsPerStepB: medianOrNull(b.map((x) => x.cpuMsPerStep)),
};
for (const v of variants) console.log(`${v.label}: ${v.coordinator} ${JSON.stringify(v.env)}`);
console.log(`coordinator options: ${coordinatorArgs.join(' ')}`);
const cpuCell = (v: number | null) => (v === null ? '-' : v);
printTable(
  ['pair', `A img/s ${metric}`, `B img/s ${metric}`, 'A compute ms/step', 'B compute ms/step', 'A CPU ms/step, all processes', 'B CPU ms/step, all processes'],
  [
    ...a.map((x, i) => [String(i + 1), x.imagesPerSecond, b[i]!.imagesPerSecond, x.computeMs, b[i]!.computeMs, cpuCell(x.cpuMsPerStep), cpuCell(b[i]!.cpuMsPerStep)]),
    ['median', summary.medianA, summary.medianB, summary.computeMsA, summary.computeMsB, cpuCell(summary.cpuMsPerStepA), cpuCell(summary.cpuMsPerStepB)],
  ],
);
console.log(`B / A: ${(summary.medianB / summary.medianA).toFixed(3)}; A faster in ${aFaster} of ${pairs} pairs`);
const cpuPairs = a.flatMap((x, i) => (x.cpuMsPerStep !== null && b[i]!.cpuMsPerStep !== null ? [b[i]!.cpuMsPerStep! / x.cpuMsPerStep] : []));
if (cpuPairs.length > 0) console.log(`CPU per step, B / A: ${median(cpuPairs).toFixed(3)} (median of the pairs' ratios); B used less in ${cpuPairs.filter((r) => r < 1).length} of ${cpuPairs.length} pairs`);
const path = writeResult(options.name, { coordinatorArgs, variants, pairs, runs: { A: a, B: b }, summary });
console.log(`written to ${path}`);
