/**
 * The table printed when a run ends: per worker its steps, samples, images/s and how its step
 * time split into computing, sending (encode + transfer), waiting for the slowest gradient and
 * waiting for the optimizer; then the straggler line.
 */
import { stragglerLine, type StragglerSummary } from './straggler.js';

export interface SummaryWorker {
  id: string;
  steps: number;
  samples: number;
  phaseSeconds: { compute: number; encode: number; transfer: number; wait: number; optimizer: number; total: number };
  stragglerSteps: number;
  waitCausedSeconds: number;
}

export function summaryTable(workers: readonly SummaryWorker[], straggler: StragglerSummary | null | undefined): string {
  const headers = ['worker', 'steps', 'samples', 'img/s', 'compute', 'send', 'wait', 'optimizer', 'last in', 'wait caused'];
  const rows = [...workers].sort((a, b) => a.id.localeCompare(b.id, 'en', { numeric: true })).map((w) => {
    const p = w.phaseSeconds;
    const share = (x: number) => (p.total > 0 ? `${((100 * x) / p.total).toFixed(1)}%` : '-');
    return [
      w.id,
      String(w.steps),
      String(w.samples),
      p.total > 0 ? (w.samples / p.total).toFixed(1) : '-',
      share(p.compute),
      share(p.encode + p.transfer),
      share(p.wait),
      share(p.optimizer),
      w.steps > 0 ? `${w.stragglerSteps} (${((100 * w.stragglerSteps) / w.steps).toFixed(0)}%)` : '-',
      `${w.waitCausedSeconds.toFixed(2)} s`,
    ];
  });
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const line = (cells: string[]) => cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join('  ');
  const out = [line(headers), ...rows.map(line)];
  out.push(stragglerLine(straggler));
  return out.join('\n');
}
