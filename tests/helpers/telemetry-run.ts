/** An in-process run (coordinator + workers over loopback gRPC) watched by a Telemetry, as the CLI wires it. */
import { Coordinator } from '../../src/coordinator/trainer.js';
import type { CoordinatorOptions } from '../../src/coordinator/options.js';
import type { RunReport } from '../../src/coordinator/report.js';
import { silentLogger } from '../../src/telemetry/logger.js';
import { Telemetry, type TelemetryOptions } from '../../src/telemetry/telemetry.js';
import { TrainingWorker } from '../../src/worker/worker.js';
import { TEST_TOKEN } from './cluster.js';

export interface WatchedRun {
  report: RunReport;
  telemetry: Telemetry;
  coordinator: Coordinator;
}

/** Trains; the telemetry is left open (its HTTP server still serves): the caller closes it. */
export async function trainWatched(options: CoordinatorOptions, telemetryOptions: Partial<TelemetryOptions> = {}): Promise<WatchedRun> {
  const telemetry = new Telemetry({ epochs: options.epochs ?? 1, log: silentLogger, http: { host: '127.0.0.1', port: 0 }, ...telemetryOptions });
  const coordinator = new Coordinator({ backend: 'wasm', launch: 'none', port: 0, token: TEST_TOKEN, ...options }, { ...telemetry.hooks() });
  coordinator.membership.on('joined', (s) => telemetry.onMembership({ kind: 'joined', workerId: s.id, size: coordinator.membership.size }));
  coordinator.membership.on('left', (s, reason) => telemetry.onMembership({ kind: 'left', workerId: s.id, reason, size: coordinator.membership.size }));
  const workers: TrainingWorker[] = [];
  try {
    const port = await coordinator.start();
    const o = coordinator.options;
    await telemetry.start(
      { counters: () => coordinator.counters, sessions: () => coordinator.membership.history },
      { model: o.model, backend: coordinator.backendInfo.name, workers: o.workers, epochs: o.epochs, batchSize: o.batchSize, trainSamples: coordinator.dataSizes.train, testSamples: coordinator.dataSizes.test },
    );
    for (let i = 0; i < o.workers; i++) workers.push(new TrainingWorker({ coordinator: `127.0.0.1:${port}`, backend: o.backend, id: `w${i}`, token: TEST_TOKEN }));
    const runs = workers.map((w) => w.run());
    const report = await coordinator.run();
    await Promise.all(runs);
    telemetry.setStatus(report.status);
    return { report, telemetry, coordinator };
  } catch (err) {
    await telemetry.close();
    throw err;
  } finally {
    for (const w of workers) w.close();
    await coordinator.close();
  }
}

/** A parsed Prometheus text exposition (format 0.0.4). */
export interface Exposition {
  types: Map<string, string>;
  help: Map<string, string>;
  samples: Array<{ name: string; labels: Record<string, string>; value: number }>;
}

const SAMPLE = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})?\s+(\S+)(\s+-?\d+)?$/;
const LABEL = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g;

/** Parses the text format strictly: throws on a line that is neither a comment nor a sample. */
export function parseExposition(text: string): Exposition {
  const out: Exposition = { types: new Map(), help: new Map(), samples: [] };
  for (const line of text.split('\n')) {
    if (line.trim() === '') continue;
    if (line.startsWith('# HELP ')) {
      const [name, ...rest] = line.slice(7).split(' ');
      out.help.set(name!, rest.join(' '));
      continue;
    }
    if (line.startsWith('# TYPE ')) {
      const [name, type] = line.slice(7).split(' ');
      if (!['counter', 'gauge', 'histogram', 'summary', 'untyped'].includes(type!)) throw new Error(`bad TYPE line: ${line}`);
      out.types.set(name!, type!);
      continue;
    }
    if (line.startsWith('#')) continue;
    const m = SAMPLE.exec(line);
    if (!m) throw new Error(`not a sample line: ${line}`);
    const labels: Record<string, string> = {};
    if (m[3]) {
      const consumed = m[3].replace(LABEL, (_all, k: string, v: string) => {
        labels[k] = v;
        return '';
      });
      if (consumed.replace(/,/g, '').trim() !== '') throw new Error(`bad labels in: ${line}`);
    }
    const raw = m[4]!;
    const value = raw === '+Inf' ? Infinity : raw === '-Inf' ? -Infinity : raw === 'NaN' ? NaN : Number(raw);
    if (Number.isNaN(value) && raw !== 'NaN') throw new Error(`bad value in: ${line}`);
    out.samples.push({ name: m[1]!, labels, value });
  }
  return out;
}

/** The family a sample belongs to (histogram samples end in _bucket, _sum, _count). */
export function familyOf(name: string, types: Map<string, string>): string | undefined {
  if (types.has(name)) return name;
  const base = name.replace(/_(bucket|sum|count)$/, '');
  return types.has(base) ? base : undefined;
}

export function sampleValue(e: Exposition, name: string, labels: Record<string, string> = {}): number | undefined {
  return e.samples.find((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v))?.value;
}
