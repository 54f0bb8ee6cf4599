/**
 * Two variants of the same cluster run, alternated: A, B, A, B, ... so that the machine's slow
 * and fast phases (single runs here vary by up to 2x) fall on both alike. Each variant is the
 * coordinator's command line with environment variables of its own, e.g. a kernel switched off:
 *
 *   npx tsx bench/paired.ts --pairs 5 --env-b TENSORFLEET_WASM_FUSED_CONV=0 --name paired-fused-conv-b128 \
 *     -- --workers 2 --ps-mode colocated --train-limit 12800 --test-limit 1000 --batch-size 128
 *
 * --env-a / --env-b take KEY=VALUE[,KEY=VALUE...] (A defaults to the unchanged environment);
 * everything after `--` goes to the coordinator. Prints every pair (images/s after the warm-up
 * steps, `steadyImagesPerSecond`, and the workers' compute ms per step), the medians, B / A, and
 * in how many pairs A was faster; writes bench/results/<name>.json. Build first (npm run build).
 */
import { median, printTable, runCoordinator, writeResult } from './lib.js';

const split = process.argv.indexOf('--');
const own = split < 0 ? process.argv.slice(2) : process.argv.slice(2, split);
const coordinatorArgs = split < 0 ? [] : process.argv.slice(split + 1);
const options: Record<string, string> = { pairs: '5', envA: '', envB: '', name: 'paired' };
for (let i = 0; i < own.length; i += 2) {
  const key = own[i]!.replace(/^--/, '').replace(/-(\w)/g, (_, c: string) => c.toUpperCase());
  if (!(key in options) || own[i + 1] === undefined) throw new TypeError(`unknown or incomplete option '${own[i]}'; accepted: --pairs, --env-a, --env-b, --name, then -- and the coordinator's options`);
  options[key] = own[i + 1]!;
}
const pairs = Number(options.pairs);
if (!Number.isInteger(pairs) || pairs < 1) throw new TypeError(`--pairs must be a positive integer, got '${options.pairs}'`);
if (!/^[\w.-]+$/.test(options.name!)) throw new TypeError(`--name must be a plain file name, got '${options.name}'`);
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
const variants = [
  { label: 'A', env: parseEnv(options.envA!) },
  { label: 'B', env: parseEnv(options.envB!) },
];

interface Run { imagesPerSecond: number; allStepsImagesPerSecond: number; computeMs: number; stepMs: number }
const runs: Run[][] = [[], []];
for (let p = 0; p < pairs; p++) {
  for (const [v, variant] of variants.entries()) {
    const r = await runCoordinator(coordinatorArgs, variant.env);
    if (r.status !== 'completed' || r.steadyImagesPerSecond == null) throw new Error(`variant ${variant.label}: run ${r.status}, steady images/s ${r.steadyImagesPerSecond} (too few steps?)`);
    runs[v]!.push({ imagesPerSecond: r.steadyImagesPerSecond, allStepsImagesPerSecond: r.imagesPerSecond, computeMs: r.stepPhasesMs.compute, stepMs: r.stepPhasesMs.total });
    console.error(`pair ${p + 1}/${pairs} ${variant.label}: ${r.steadyImagesPerSecond.toFixed(1)} img/s, compute ${r.stepPhasesMs.compute.toFixed(1)} ms/step`);
  }
}

const [a, b] = runs as [Run[], Run[]];
const aFaster = a.filter((x, i) => x.imagesPerSecond > b[i]!.imagesPerSecond).length;
const summary = {
  medianA: median(a.map((x) => x.imagesPerSecond)),
  medianB: median(b.map((x) => x.imagesPerSecond)),
  computeMsA: median(a.map((x) => x.computeMs)),
  computeMsB: median(b.map((x) => x.computeMs)),
  aFasterInPairs: aFaster,
};
console.log(`A: ${JSON.stringify(variants[0]!.env)}  B: ${JSON.stringify(variants[1]!.env)}  coordinator ${coordinatorArgs.join(' ')}`);
printTable(
  ['pair', 'A img/s after warm-up', 'B img/s after warm-up', 'A compute ms/step', 'B compute ms/step'],
  [
    ...a.map((x, i) => [String(i + 1), x.imagesPerSecond, b[i]!.imagesPerSecond, x.computeMs, b[i]!.computeMs]),
    ['median', summary.medianA, summary.medianB, summary.computeMsA, summary.computeMsB],
  ],
);
console.log(`B / A: ${(summary.medianB / summary.medianA).toFixed(3)}; A faster in ${aFaster} of ${pairs} pairs`);
const path = writeResult(options.name!, { coordinatorArgs, variants, pairs, runs: { A: a, B: b }, summary });
console.log(`written to ${path}`);
