/**
 * A cost model of a synchronous step, calibrated on loopback, and its predictions at scale.
 *
 *   step = compute + communication + parameter-server work      (no overlap in the sync protocol)
 *
 * Measured here at 1, 2, 4, 8 local workers (CNN, batch 32): the step split of the run report.
 * Fitted: the coordinator's cost per byte moved through gRPC (r, s/byte) and per gradient
 * element aggregated (a, s/element), from transfer + wait ≈ t0 + W·(G+M)·r and optimizer ≈
 * P·c + W·P·a. Predicted for W GPU workers on links of 10/25/100 Gb/s:
 *   single PS:  C + max(W·(G+M)/L, W·(G+M)·r) + P·c + W·P·a
 *   K shards:   C + max((G+M)/L, W·(G+M)/(K·L), W·(G+M)·r_x/K) + (P·c + W·P·a)/K
 *   ring:       C + 2(W−1)·α + 2(W−1)/W·G/L + P·c     (every worker runs the optimizer)
 *   co-located: C + 2(W−1)·α + max((W−1)/W·(G+M)/L, 2(W−1)/W·(G+M)·r_x) + P·c/W + P·a
 *               (`--ps-mode colocated`: every worker owns P/W of the variables, sends each other
 *               member its slice and their weights in two phases, sums W slices of P/W and runs
 *               Adam on its own range)
 * r_x prices a byte on the exchange connection that workers and shards use (frames over TCP):
 * r times the CPU ratio of that transport to gRPC measured by bench/transport.ts.
 * The co-located mode is also measured here at the same world sizes (not used in the fit).
 * with G gradient bytes, M weight bytes, P parameters, C the compute time of a step, α latency.
 *
 *   npm run build && tsx bench/scaling.ts [--samples 3200] [--gpu-compute-ms 5] [--latency-us 50] [--shards 4]
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { RunReport } from '../src/coordinator/report.js';
import { median, parseArgs, printTable, ROOT, runCoordinator, writeResult } from './lib.js';

const a = parseArgs(process.argv.slice(2), { samples: 3200, runs: 1, gpuComputeMs: 5, latencyUs: 50, shards: 4, workers: '1,2,4,8' });
const worlds = a.workers.split(',').map(Number);

async function measure(mode: string) {
  const rows = [];
  for (const w of worlds) {
    const runs: RunReport[] = [];
    for (let i = 0; i < a.runs; i++) {
      const r = await runCoordinator(['--workers', String(w), '--batch-size', '32', '--backend', 'wasm', '--train-limit', String(a.samples), '--test-limit', '100', '--ps-mode', mode]);
      runs.push(r);
      console.error(`${mode}, ${w} worker(s): ${r.imagesPerSecond.toFixed(0)} img/s, step ${r.stepPhasesMs.total.toFixed(1)} ms`);
    }
    const m = (f: (r: RunReport) => number) => median(runs.map(f));
    rows.push({
      mode,
      workers: w,
      imagesPerSecond: m((r) => r.imagesPerSecond),
      stepMs: m((r) => r.stepPhasesMs.total),
      computeMs: m((r) => r.stepPhasesMs.compute),
      commMs: m((r) => r.stepPhasesMs.transfer + r.stepPhasesMs.wait + r.stepPhasesMs.encode),
      optimizerMs: m((r) => r.stepPhasesMs.optimizer),
      bytesPerWorker: m((r) => r.bytesPerStepPerWorker.sent + r.bytesPerStepPerWorker.received),
    });
  }
  return rows;
}
const measured = await measure('in-process');
const colocatedMeasured = await measure('colocated');

// Least squares y = c0 + c1·x.
function fit(xs: number[], ys: number[]): [number, number] {
  const n = xs.length;
  const mx = xs.reduce((s, x) => s + x, 0) / n;
  const my = ys.reduce((s, y) => s + y, 0) / n;
  const sxy = xs.reduce((s, x, i) => s + (x - mx) * (ys[i]! - my), 0);
  const sxx = xs.reduce((s, x) => s + (x - mx) ** 2, 0);
  const c1 = sxx > 0 ? sxy / sxx : 0;
  return [my - c1 * mx, c1];
}

const P = 693_962;
const bytes = measured[0]!.bytesPerWorker; // G + M for float32
const [commFixedMs, commPerWorkerMs] = fit(measured.map((m) => m.workers), measured.map((m) => m.commMs));
const [optFixedMs, optPerWorkerMs] = fit(measured.map((m) => m.workers), measured.map((m) => m.optimizerMs));
const r = Math.max(commPerWorkerMs, 0) / 1000 / bytes; // s per byte through the coordinator
// Workers exchange slices with shards (processes or co-located) over the exchange connection,
// not gRPC: its CPU per byte relative to gRPC's, from bench/transport.ts (both sides, medians).
const transportFile = join(ROOT, 'bench/results/transport.json');
const transport = existsSync(transportFile) ? (JSON.parse(readFileSync(transportFile, 'utf8')) as { summary: { transport: string; clientCpuMs: number; echoCpuMs: number }[] }).summary : undefined;
const cpuOf = (t: string) => transport?.find((s) => s.transport === t);
const exchangeRatio = cpuOf('frames') && cpuOf('grpc') ? (cpuOf('frames')!.clientCpuMs + cpuOf('frames')!.echoCpuMs) / (cpuOf('grpc')!.clientCpuMs + cpuOf('grpc')!.echoCpuMs) : 1;
const rx = r * exchangeRatio; // s per byte over the exchange connection
const c = Math.max(optFixedMs, 0) / 1000 / P; // s per element (Adam)
const agg = Math.max(optPerWorkerMs, 0) / 1000 / P; // s per element per worker (summing)

const G = P * 4;
const M = P * 4;
const C = a.gpuComputeMs / 1000;
const alpha = a.latencyUs / 1e6;
const links = [10, 25, 100];
const predictions = [];
for (const gbps of links) {
  const L = (gbps * 1e9) / 8;
  for (const W of [8, 16, 32, 64, 128, 256]) {
    const ps = C + Math.max((W * (G + M)) / L, W * (G + M) * r) + P * c + W * P * agg;
    const K = a.shards;
    const sharded = C + Math.max((G + M) / L, (W * (G + M)) / (K * L), (W * (G + M) * rx) / K) + (P * c + W * P * agg) / K;
    const ring = C + 2 * (W - 1) * alpha + ((2 * (W - 1)) / W) * (G / L) + P * c;
    const colocated = C + 2 * (W - 1) * alpha + Math.max((((W - 1) / W) * (G + M)) / L, ((2 * (W - 1)) / W) * (G + M) * rx) + (P * c) / W + P * agg;
    predictions.push({ gbps, workers: W, psMs: ps * 1000, shardedMs: sharded * 1000, ringMs: ring * 1000, colocatedMs: colocated * 1000, psEff: C / ps, shardedEff: C / sharded, ringEff: C / ring, colocatedEff: C / colocated });
  }
}

printTable(['mode', 'workers (loopback)', 'img/s', 'step ms', 'compute ms', 'communication ms', 'optimizer ms', 'bytes/step/worker'], [...measured, ...colocatedMeasured].map((m) => [m.mode, m.workers, m.imagesPerSecond, m.stepMs, m.computeMs, m.commMs, m.optimizerMs, m.bytesPerWorker]));
console.log(`\nfitted: communication ${commFixedMs.toFixed(1)} ms + ${commPerWorkerMs.toFixed(1)} ms per worker (r = ${(r * 1e9).toFixed(2)} ns/byte, ${(1 / r / 1e6).toFixed(0)} MB/s through the coordinator; r_x = ${(rx * 1e9).toFixed(2)} ns/byte over the exchange connection, ${exchangeRatio.toFixed(2)} × r from transport.json); ` +
  `optimizer ${optFixedMs.toFixed(1)} ms + ${optPerWorkerMs.toFixed(2)} ms per worker (Adam ${(c * 1e9).toFixed(2)} ns/element, summing ${(agg * 1e9).toFixed(2)} ns/element/worker)\n`);
printTable(
  ['link Gb/s', 'workers', 'single PS ms', `${a.shards} shards ms`, 'ring ms', 'co-located ms', 'efficiency PS / shards / ring / co-located'],
  predictions.map((p) => [p.gbps, p.workers, p.psMs, p.shardedMs, p.ringMs, p.colocatedMs, `${(100 * p.psEff).toFixed(0)} / ${(100 * p.shardedEff).toFixed(0)} / ${(100 * p.ringEff).toFixed(0)} / ${(100 * p.colocatedEff).toFixed(0)} %`]),
);
const path = writeResult('scaling', { options: a, measured, colocatedMeasured, fitted: { commFixedMs, commPerWorkerMs, secondsPerByte: r, exchangeSecondsPerByte: rx, exchangeCostRatio: exchangeRatio, adamSecondsPerElement: c, sumSecondsPerElementPerWorker: agg }, assumptions: { gpuComputeMs: a.gpuComputeMs, latencyUs: a.latencyUs, shards: a.shards, gradientBytes: G, weightBytes: M }, predictions });
console.log(`\nwritten to ${path}`);
