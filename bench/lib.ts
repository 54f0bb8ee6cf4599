/** What the benchmarks share: running the real coordinator, medians, tables, result files. */
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { execa } from 'execa';
import type { RunReport } from '../src/coordinator/report.js';

export const ROOT = fileURLToPath(new URL('..', import.meta.url));
export const COORDINATOR = join(ROOT, 'dist/coordinator/cli.js');

/**
 * Runs `coordinator ARGS --report FILE` (with `env` added to this process's environment; the
 * local workers inherit it) and returns the report; throws on a non-zero exit. `coordinator`:
 * another build's dist/coordinator/cli.js (its local workers are that build's too).
 */
export async function runCoordinator(args: string[], env: Record<string, string> = {}, coordinator = COORDINATOR): Promise<RunReport> {
  const dir = mkdtempSync(join(tmpdir(), 'tf-bench-'));
  try {
    const report = join(dir, 'report.json');
    const run = await execa('node', [coordinator, ...args, '--report', report, '--log-level', 'warn'], { reject: false, env });
    if (run.exitCode !== 0) throw new Error(`coordinator ${args.join(' ')} exited ${run.exitCode}: ${run.stderr.slice(-2000)}`);
    return JSON.parse(readFileSync(report, 'utf8')) as RunReport;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** Runs a bench script (TypeScript, through tsx) whose last stdout line is JSON. */
export async function runScript<T>(script: string, args: string[]): Promise<T> {
  const run = await execa(join(ROOT, 'node_modules/.bin/tsx'), [join(ROOT, script), ...args], { reject: false });
  if (run.exitCode !== 0) throw new Error(`${script} exited ${run.exitCode}: ${run.stderr.slice(-2000)}`);
  const lines = run.stdout.trim().split('\n');
  return JSON.parse(lines[lines.length - 1]!) as T;
}

export function median(values: number[]): number {
  const s = [...values].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

export function printTable(headers: string[], rows: (string | number)[][]): void {
  const cells = rows.map((r) => r.map((c) => (typeof c === 'number' ? formatNumber(c) : c)));
  const widths = headers.map((h, i) => Math.max(h.length, ...cells.map((r) => r[i]!.length)));
  const line = (r: string[]) => `| ${r.map((c, i) => c.padEnd(widths[i]!)).join(' | ')} |`;
  console.log(line(headers));
  console.log(`|${widths.map((w) => '-'.repeat(w + 2)).join('|')}|`);
  for (const r of cells) console.log(line(r));
}

function formatNumber(n: number): string {
  if (Number.isInteger(n)) return String(n);
  return Math.abs(n) >= 100 ? n.toFixed(1) : Math.abs(n) >= 1 ? n.toFixed(3) : n.toFixed(4);
}

/** CPU time per step of every process of a run (the report's coordinator + workers); null when the report lacks either (older builds, short runs). */
export function cpuMsPerStepOf(r: RunReport): number | null {
  const c = r.cpuMsPerStep;
  return c?.coordinator != null && c.workers != null ? c.coordinator + c.workers : null;
}

/** Throws unless `name` is a plain file name for bench/results (check a --name option before a long run). */
export function checkResultName(name: string): string {
  if (!/^[\w.-]+$/.test(name)) throw new TypeError(`--name must be a plain file name; got '${name}'`);
  return name;
}

/** Writes bench/results/<name>.json. */
export function writeResult(name: string, result: unknown): string {
  checkResultName(name);
  const dir = join(ROOT, 'bench/results');
  mkdirSync(dir, { recursive: true });
  const path = join(dir, `${name}.json`);
  writeFileSync(path, `${JSON.stringify({ name, date: new Date().toISOString(), machine: machineInfo(), ...(result as object) }, null, 2)}\n`);
  return path;
}

export function machineInfo() {
  return { node: process.version, cpus: (globalThis as { navigator?: { hardwareConcurrency?: number } }).navigator?.hardwareConcurrency ?? null, platform: process.platform };
}

/** Parses `--name value` pairs into numbers/strings with defaults. */
export function parseArgs<T extends Record<string, string | number>>(argv: string[], defaults: T): T {
  const out: Record<string, string | number> = { ...defaults };
  for (let i = 0; i < argv.length; i += 2) {
    const key = argv[i]!.replace(/^--/, '').replace(/-(\w)/g, (_, c: string) => c.toUpperCase());
    if (!(key in defaults)) throw new Error(`unknown option ${argv[i]}; accepted: ${Object.keys(defaults).join(', ')}`);
    out[key] = typeof defaults[key] === 'number' ? Number(argv[i + 1]) : argv[i + 1]!;
  }
  return out as T;
}

/** One stdout line of a running coordinator, and a way to stop it (SIGTERM: it drains and still writes its report). */
export type CoordinatorLineHandler = (line: string, stop: () => void) => void;

/**
 * Like runCoordinator, but hands every stdout line to `onLine` while the run goes on, which may
 * stop it early; `stopped` tells whether it did. A drained run's report has status `stopped` and
 * the epochs completed before the signal in `epochHistory`.
 */
export async function runCoordinatorWatching(args: string[], onLine: CoordinatorLineHandler): Promise<{ report: RunReport; stopped: boolean }> {
  const dir = mkdtempSync(join(tmpdir(), 'tf-bench-'));
  try {
    const report = join(dir, 'report.json');
    const child = spawn('node', [COORDINATOR, ...args, '--report', report, '--log-level', 'warn'], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stopped = false;
    const stop = () => {
      if (stopped || child.exitCode !== null) return;
      stopped = true;
      child.kill('SIGTERM');
    };
    let stderr = '';
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr = (stderr + chunk).slice(-4000)));
    const exited = new Promise<number | null>((resolve, reject) => {
      child.once('error', reject);
      child.once('close', (code) => resolve(code));
    });
    for await (const line of createInterface({ input: child.stdout })) onLine(line, stop);
    const code = await exited;
    if (code !== 0) throw new Error(`coordinator ${args.join(' ')} exited ${code}: ${stderr.slice(-2000)}`);
    return { report: JSON.parse(readFileSync(report, 'utf8')) as RunReport, stopped };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** Whether `python` exists and imports torch (the PyTorch peer's requirement). */
export async function hasTorch(python: string): Promise<boolean> {
  if (!existsSync(python)) return false;
  const r = await execa(python, ['-c', 'import torch'], { reject: false });
  return r.exitCode === 0;
}
