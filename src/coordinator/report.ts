/** The JSON run report (DESIGN.md, Interfaces), written atomically. */
import { mkdirSync, renameSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';

export interface EpochSummary {
  epoch: number;
  steps: number;
  samples: number;
  trainLoss: number;
  testAccuracy: number;
  testLoss: number;
  trainSeconds: number;
}

export interface WorkerSummary {
  id: string;
  pid: number;
  hostname: string;
  backend: string;
  steps: number;
  samples: number;
  computeSeconds: number;
  peakRssBytes: number;
}

export interface RunReport {
  status: 'completed' | 'failed';
  error?: string;
  model: string;
  backend: string;
  workers: number;
  epochs: number;
  steps: number;
  batchSize: number;
  globalBatchSize: number;
  lr: number;
  seed: number;
  trainSamples: number;
  testSamples: number;
  samplesPerEpoch: number[];
  testAccuracy: number | null;
  testLoss: number | null;
  imagesPerSecond: number;
  trainSeconds: number;
  wallSeconds: number;
  membershipChanges: number;
  abortedSteps: number;
  staleGradients: number;
  bytesPerStepPerWorker: { sent: number; received: number };
  coordinatorPeakRssBytes: number;
  epochHistory: EpochSummary[];
  perWorker: WorkerSummary[];
  savedModel?: string;
}

export function writeReport(path: string, report: RunReport): void {
  mkdirSync(dirname(path), { recursive: true });
  const tmp = `${path}.tmp-${process.pid}`;
  writeFileSync(tmp, `${JSON.stringify(report, null, 2)}\n`);
  renameSync(tmp, path);
}
