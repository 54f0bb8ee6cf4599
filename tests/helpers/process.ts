/**
 * Helpers for end-to-end tests that drive the real `coordinator` and `worker` programs (built
 * into dist/): start them with a clean environment, watch their output for events with a
 * bounded deadline instead of sleeping, find their children, and kill whatever is left.
 */
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { execa, type ResultPromise } from 'execa';

const root = fileURLToPath(new URL('../..', import.meta.url));
export const COORDINATOR = join(root, 'dist/coordinator/cli.js');
export const WORKER = join(root, 'dist/worker/cli.js');

export function requireBuild(): void {
  if (!existsSync(COORDINATOR) || !existsSync(WORKER)) throw new Error('dist/ is missing: run `npm run build` first');
}

/** This process's environment without any TENSORFLEET_* variable, plus `extra`. */
export function cleanEnv(extra: Record<string, string> = {}): Record<string, string> {
  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries(process.env)) if (v !== undefined && !k.startsWith('TENSORFLEET_')) env[k] = v;
  return { ...env, ...extra };
}

export interface Proc {
  /** The execa subprocess (a promise of its result; never rejects: reject is false). */
  sub: ResultPromise<{ reject: false; extendEnv: false; env: Record<string, string>; timeout: number }>;
  pid: number;
  /** Everything written so far. */
  stdout(): string;
  stderr(): string;
  exited: boolean;
  /** Resolves with the exit code (null when killed by a signal). */
  result(): Promise<{ exitCode: number | undefined; signal: string | undefined; stdout: string; stderr: string }>;
}

const live = new Set<Proc>();

/** Starts `node <program> ...args` with a clean environment (plus `env`). */
export function startNode(program: string, args: string[], env: Record<string, string> = {}, timeout = 240_000): Proc {
  const sub = execa('node', [program, ...args], { reject: false, extendEnv: false, env: cleanEnv(env), timeout });
  let out = '';
  let err = '';
  sub.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  sub.stderr!.on('data', (d: Buffer) => (err += d.toString()));
  const proc: Proc = {
    sub,
    pid: sub.pid!,
    stdout: () => out,
    stderr: () => err,
    exited: false,
    result: async () => {
      const r = await sub;
      return { exitCode: r.exitCode, signal: r.signal, stdout: String(r.stdout), stderr: String(r.stderr) };
    },
  };
  live.add(proc);
  void sub.then(() => {
    proc.exited = true;
    live.delete(proc);
  });
  return proc;
}

export const coordinator = (args: string[], env: Record<string, string> = {}, timeout?: number) => startNode(COORDINATOR, args, env, timeout);
export const worker = (args: string[], env: Record<string, string> = {}, timeout?: number) => startNode(WORKER, args, env, timeout);

/** Polls `probe` until it returns a value other than undefined/false, or throws after `timeoutMs`. */
export async function waitFor<T>(what: string, probe: () => T | undefined | false, timeoutMs = 60_000, everyMs = 25): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = probe();
    if (v !== undefined && v !== false) return v;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}

/** Waits for the "listening on H:P" line of a coordinator and returns the port. */
export async function listeningPort(proc: Proc, timeoutMs = 60_000): Promise<number> {
  const port = await waitFor(
    'the coordinator to listen',
    () => {
      const m = /listening on [^\s:]+:(\d+)/.exec(proc.stdout());
      if (m) return Number(m[1]);
      if (proc.exited) throw new Error(`coordinator exited before listening:\n${proc.stderr()}`);
      return undefined;
    },
    timeoutMs,
  );
  return port;
}

/** JSON log lines (pino) in a stream's text; other lines are skipped. */
export function jsonLogs(text: string): Array<Record<string, unknown>> {
  const out: Array<Record<string, unknown>> = [];
  for (const line of text.split('\n')) {
    if (!line.startsWith('{')) continue;
    try {
      out.push(JSON.parse(line) as Record<string, unknown>);
    } catch {
      // a line cut in the middle (still being written)
    }
  }
  return out;
}

/** Lines of a stream's text that are not JSON log lines. */
export function plainLines(text: string): string[] {
  return text.split('\n').filter((l) => l.trim() !== '' && !l.startsWith('{'));
}

/** Direct children of `ppid` that are alive, with their command lines. */
export function childProcesses(ppid: number): Array<{ pid: number; args: string[] }> {
  const out: Array<{ pid: number; args: string[] }> = [];
  const entries: string[] = [];
  try {
    // children are listed per thread that forked them
    for (const tid of readdirSync(`/proc/${ppid}/task`)) {
      entries.push(...readFileSync(`/proc/${ppid}/task/${tid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean));
    }
  } catch {
    return out;
  }
  for (const p of entries) {
    const pid = Number(p);
    if (!isAlive(pid)) continue;
    const args = commandLine(pid);
    if (args) out.push({ pid, args });
  }
  return out;
}

/** Worker processes (running dist/worker/cli.js) among the children of `ppid`. */
export function workerChildren(ppid: number): Array<{ pid: number; args: string[]; id: string | undefined }> {
  return childProcesses(ppid)
    .filter((c) => c.args.some((a) => a.endsWith('worker/cli.js')))
    .map((c) => {
      const i = c.args.indexOf('--id');
      return { ...c, id: i >= 0 ? c.args[i + 1] : undefined };
    });
}

/** SIGKILLs the local worker `id` that coordinator `ppid` started; returns its pid (throws if there is none). */
export function killLocalWorker(ppid: number, id: string): number {
  const victim = workerChildren(ppid).find((w) => w.id === id);
  if (!victim) throw new Error(`no local worker ${id} under process ${ppid}`);
  process.kill(victim.pid, 'SIGKILL');
  return victim.pid;
}

/** Runs `program` with each case's arguments: each must exit 2 with one line on stderr matching the case's pattern. */
export async function expectUsageErrors(program: string, cases: ReadonlyArray<readonly [readonly string[], RegExp]>): Promise<void> {
  for (const [args, pattern] of cases) {
    const run = await execa('node', [program, ...args], { reject: false, timeout: 30_000 });
    const lines = run.stderr.trim().split('\n');
    if (run.exitCode !== 2 || lines.length !== 1 || !pattern.test(lines[0]!)) {
      throw new Error(`${args.join(' ')}: expected exit 2 and one line matching ${pattern}; got exit ${run.exitCode} and:\n${run.stderr}`);
    }
  }
}

export function commandLine(pid: number): string[] | undefined {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').filter((a) => a !== '');
  } catch {
    return undefined;
  }
}

export function environment(pid: number): Record<string, string> | undefined {
  try {
    const env: Record<string, string> = {};
    for (const kv of readFileSync(`/proc/${pid}/environ`, 'utf8').split('\0')) {
      const i = kv.indexOf('=');
      if (i > 0) env[kv.slice(0, i)] = kv.slice(i + 1);
    }
    return env;
  } catch {
    return undefined;
  }
}

/** True while the process exists and is not a zombie (an orphan's zombie may linger under a non-reaping init). */
export function isAlive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const state = stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
    return state !== 'Z' && state !== 'X';
  } catch {
    return false;
  }
}

function descendants(pid: number): number[] {
  const out: number[] = [];
  for (const c of childProcesses(pid)) out.push(c.pid, ...descendants(c.pid));
  return out;
}

/** SIGKILLs every process started by startNode that is still running, and their descendants. */
export async function killAll(): Promise<void> {
  const pids: number[] = [];
  for (const p of live) if (!p.exited) pids.push(...descendants(p.pid), p.pid);
  for (const pid of pids) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // already gone
    }
  }
  await Promise.all([...live].map((p) => p.sub.catch(() => undefined)));
  live.clear();
}

/** SIGKILLs pids that are still alive (orphans left by a test). */
export function killPids(pids: number[]): void {
  for (const pid of pids) {
    if (!isAlive(pid)) continue;
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // gone
    }
  }
}
