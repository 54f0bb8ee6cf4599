/**
 * What watching a run costs: images/s of the same run without telemetry (`--no-http`, no trace)
 * and with all of it (metrics, the dashboard with a browser-like client connected to /events,
 * Prometheus scraping /metrics every second, and `--trace`), interleaved off/on, medians of
 * `--runs` runs each, for a per-step-heavy case (mlp: many small steps) and the reference CNN.
 *
 * The machine is shared and small (2 cores), so whole-run images/s are noisy; the script also
 * times the telemetry's own work in this process (per step in the hooks, per /metrics scrape,
 * per dashboard flush) and turns it into a CPU share at the step rate of the runs above.
 *
 *   npm run build && npx tsx bench/telemetry-overhead.ts [--runs 3] [--workers 4] [--backend wasm]
 */
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import type { RunReport } from '../src/coordinator/report.js';
import { silentLogger } from '../src/telemetry/logger.js';
import { attributeSlowest } from '../src/telemetry/straggler.js';
import { Telemetry } from '../src/telemetry/telemetry.js';
import type { StepDetail, TelemetryStep, WorkerStepPhases } from '../src/telemetry/types.js';
import { COORDINATOR, median, parseArgs, printTable, writeResult } from './lib.js';

const a = parseArgs(process.argv.slice(2), { runs: 3, workers: 4, backend: 'wasm', cases: 'mlp,mnist-cnn' });

const CASES: Record<string, string[]> = {
  mlp: ['--model', 'mlp', '--train-limit', '25600', '--batch-size', '32', '--test-limit', '500'],
  'mnist-cnn': ['--model', 'mnist-cnn', '--train-limit', '6400', '--batch-size', '32', '--test-limit', '500'],
};

interface Run {
  imagesPerSecond: number;
  steps: number;
  scrapes: number;
  sseBytes: number;
  traceBytes: number;
}

/** One coordinator run; with telemetry on, a dashboard client and a 1 s scraper stay connected throughout. */
async function runOnce(args: string[], telemetry: boolean): Promise<Run> {
  const dir = mkdtempSync(join(tmpdir(), 'tf-overhead-'));
  const report = join(dir, 'report.json');
  const trace = join(dir, 'trace.json');
  const extra = telemetry ? ['--http-port', '0', '--trace', trace] : ['--no-http'];
  const child = execa('node', [COORDINATOR, '--workers', String(a.workers), '--backend', a.backend, ...args, ...extra, '--report', report, '--log-level', 'warn'], { reject: false });
  let out = '';
  let scrapes = 0;
  let sseBytes = 0;
  const stop = new AbortController();
  const watchers: Promise<void>[] = [];
  child.stdout!.on('data', (d: Buffer) => {
    const before = out;
    out += d.toString();
    const m = /^dashboard on (http:\/\/\S+\/) /m.exec(out);
    if (!m || /^dashboard on /m.test(before)) return;
    const url = m[1]!;
    watchers.push(
      (async () => {
        try {
          const res = await fetch(`${url}events`, { signal: stop.signal });
          const reader = res.body!.getReader();
          for (;;) {
            const { done, value } = await reader.read();
            if (done) break;
            sseBytes += value.length;
          }
        } catch {
          // the run ended
        }
      })(),
      (async () => {
        while (!stop.signal.aborted) {
          try {
            await (await fetch(`${url}metrics`, { signal: stop.signal })).text();
            scrapes++;
          } catch {
            break;
          }
          await new Promise((r) => setTimeout(r, 1000));
        }
      })(),
    );
  });
  const r = await child;
  stop.abort();
  await Promise.all(watchers);
  try {
    if (r.exitCode !== 0) throw new Error(`coordinator exited ${r.exitCode}: ${String(r.stderr).slice(-2000)}`);
    const rep = JSON.parse(readFileSync(report, 'utf8')) as RunReport;
    return { imagesPerSecond: rep.imagesPerSecond, steps: rep.steps, scrapes, sseBytes, traceBytes: telemetry ? statSync(trace).size : 0 };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** Time spent in the telemetry per step (hooks), per scrape and per dashboard flush, with everything on. */
async function measureInProcess(workers: number, steps = 20_000) {
  const telemetry = new Telemetry({ epochs: 1, log: silentLogger, http: { host: '127.0.0.1', port: 0 }, trace: true });
  const sessions = Array.from({ length: workers }, (_, i) => ({ id: `w${i}`, steps: 0, samples: 0, bytesSent: 0, bytesReceived: 0, staleGradients: 0, stragglerSteps: 0, waitCausedMs: 0 }));
  const counters = { steps: 0, trainedSamples: 0, epoch: 0, members: workers, membershipChanges: workers, abortedSteps: 0, rejectedContributions: 0, heartbeatTimeouts: 0, rejectedCalls: 0 };
  await telemetry.start({ counters: () => counters, sessions: () => sessions }, { model: 'mlp', backend: 'wasm', workers, epochs: 1, batchSize: 32, trainSamples: steps * 32 * workers, testSamples: 0 });
  const hooks = telemetry.hooks();
  const details: StepDetail[] = [];
  const events: TelemetryStep[] = [];
  for (let s = 0; s < steps; s++) {
    const t0 = 10 * s;
    const ws: WorkerStepPhases[] = sessions.map((x, i) => ({ id: x.id, rank: i, samples: 32, compute: 4 + i, encode: 0.3, transfer: 2, wait: workers - i, optimizer: 1, total: 9, deliveredAtMs: t0 + 6 + i }));
    details.push({ step: s, epoch: 0, round: s + 1, dispatchedAtMs: t0, optimizerStartMs: t0 + 6 + workers, committedAtMs: t0 + 7 + workers, workers: ws, ...attributeSlowest(ws) });
    events.push({ epoch: 0, step: s + 1, stepInEpoch: s + 1, stepsInEpoch: steps, worldSize: workers, samples: 32 * workers, loss: 2 / (1 + s / 100), imagesPerSecond: 1000, epochFraction: (s + 1) / steps });
  }
  const start = performance.now();
  for (let s = 0; s < steps; s++) {
    hooks.onStepDetail(details[s]!);
    hooks.onStep(events[s]!);
  }
  const hookUs = ((performance.now() - start) * 1000) / steps;
  const scrapes = 50;
  let t = performance.now();
  for (let i = 0; i < scrapes; i++) await telemetry.metrics!.metrics();
  const scrapeMs = (performance.now() - t) / scrapes;
  // a dashboard flush carrying 10 new steps (40 steps/s at 4 flushes/s)
  const feed = telemetry.feed!;
  const flushes = 200;
  const c = feed.cursor();
  t = performance.now();
  for (let i = 0; i < flushes; i++) JSON.stringify(feed.since({ ...c, steps: c.steps - 10, lanes: c.lanes - 10 }).payload);
  const flushMs = (performance.now() - t) / flushes;
  await telemetry.close();
  return { workers, steps, hookMicrosecondsPerStep: hookUs, scrapeMilliseconds: scrapeMs, flushMilliseconds: flushMs };
}

const results = [];
for (const name of a.cases.split(',')) {
  const args = CASES[name];
  if (!args) throw new Error(`unknown case ${name}; accepted: ${Object.keys(CASES).join(', ')}`);
  const off: Run[] = [];
  const on: Run[] = [];
  for (let i = 0; i < a.runs; i++) {
    // interleaved, alternating which goes first, so drift on the machine hits both alike
    const order = i % 2 === 0 ? [false, true] : [true, false];
    for (const t of order) {
      const run = await runOnce(args, t);
      (t ? on : off).push(run);
      console.error(`${name} ${t ? 'telemetry on ' : 'telemetry off'} run ${i + 1}/${a.runs}: ${run.imagesPerSecond.toFixed(1)} img/s (${run.steps} steps${t ? `, ${run.scrapes} scrapes, ${(run.sseBytes / 1024).toFixed(0)} KiB of events, trace ${(run.traceBytes / 1024).toFixed(0)} KiB` : ''})`);
    }
  }
  const offMedian = median(off.map((r) => r.imagesPerSecond));
  const onMedian = median(on.map((r) => r.imagesPerSecond));
  results.push({ case: name, args, steps: off[0]!.steps, offImagesPerSecond: offMedian, onImagesPerSecond: onMedian, overheadPercent: (100 * (offMedian - onMedian)) / offMedian, off, on });
}

printTable(
  ['case', 'workers', 'steps', 'img/s off (median)', 'img/s on (median)', 'overhead %', 'runs off', 'runs on'],
  results.map((r) => [r.case, a.workers, r.steps, r.offImagesPerSecond, r.onImagesPerSecond, r.overheadPercent, r.off.map((x) => x.imagesPerSecond.toFixed(0)).join(' / '), r.on.map((x) => x.imagesPerSecond.toFixed(0)).join(' / ')]),
);
const inProcess = await measureInProcess(a.workers);
const perSecond = results.map((r) => {
  const samples = Number(r.args[r.args.indexOf('--train-limit') + 1]);
  const stepsPerSecond = (r.steps * r.onImagesPerSecond) / samples;
  const cpuMsPerSecond = (inProcess.hookMicrosecondsPerStep * stepsPerSecond) / 1000 + inProcess.scrapeMilliseconds + 4 * inProcess.flushMilliseconds;
  return { case: r.case, stepsPerSecond, cpuMsPerSecond, cpuSharePercent: cpuMsPerSecond / 10 };
});
console.log('');
printTable(
  ['case', 'steps/s (on)', 'hooks µs/step', 'scrape ms (1/s)', 'flush ms (4/s)', 'telemetry CPU ms/s', 'share of one core %'],
  perSecond.map((p) => [p.case, p.stepsPerSecond, inProcess.hookMicrosecondsPerStep, inProcess.scrapeMilliseconds, inProcess.flushMilliseconds, p.cpuMsPerSecond, p.cpuSharePercent]),
);
const path = writeResult('telemetry-overhead', { options: a, on: 'metrics + dashboard with a connected /events client + /metrics scraped every second + --trace', results, inProcess, perSecond });
console.log(`\nwritten to ${path}`);
