/**
 * `--launch local`: spawns the workers as child processes of the same `worker` program users
 * run by hand, pointed at this coordinator, with the job token in their environment (never on
 * the command line). A worker that crashes is restarted up to `maxRestarts` times in all; one
 * that exits 0 has left on purpose and is not. Emits 'gone' when a worker is down for good.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { EventEmitter } from 'node:events';
import { fileURLToPath } from 'node:url';
import type { Logger } from '../telemetry/logger.js';

export const WORKER_PROGRAM = fileURLToPath(new URL('../worker/cli.js', import.meta.url));

export interface LaunchSpec {
  count: number;
  coordinator: string;
  backend: string;
  logLevel: string;
  maxRestarts: number;
  /** Extra environment: the token and TLS files. */
  env: Record<string, string | undefined>;
  /** Node flags of every worker process (local-gc.ts). */
  nodeFlags?: string[];
}

export class LocalLauncher extends EventEmitter<{ gone: [id: string] }> {
  private readonly children = new Map<string, ChildProcess>();
  private spec: LaunchSpec | undefined;
  private closing = false;
  restarts = 0;

  constructor(private readonly log: Logger) {
    super();
  }

  get running(): number {
    return this.children.size;
  }

  start(spec: LaunchSpec): void {
    this.spec = spec;
    for (let i = 0; i < spec.count; i++) this.spawnWorker(`w${i}`);
  }

  private spawnWorker(id: string): void {
    const spec = this.spec!;
    const args = [WORKER_PROGRAM, '--coordinator', spec.coordinator, '--id', id, '--backend', spec.backend, '--log-level', spec.logLevel];
    const env = { ...process.env, ...spec.env, TENSORFLEET_PARENT_PID: String(process.pid) };
    const child = spawn(process.execPath, [...(spec.nodeFlags ?? []), ...args], { stdio: ['ignore', 'ignore', 'inherit'], env });
    this.children.set(id, child);
    child.on('exit', (code, signal) => {
      this.children.delete(id);
      const crashed = code !== 0;
      this.log[crashed ? 'warn' : 'info']({ workerId: id, pid: child.pid, code, signal }, 'local worker exited');
      if (crashed && !this.closing && this.restarts < spec.maxRestarts) {
        this.restarts++;
        this.log.warn({ workerId: id, restart: this.restarts, maxRestarts: spec.maxRestarts }, 'restarting local worker');
        setTimeout(() => !this.closing && this.spawnWorker(id), 200).unref();
        return;
      }
      this.emit('gone', id);
    });
    child.on('error', (err) => this.log.error({ workerId: id, err: err.message }, 'could not start local worker'));
    this.log.info({ workerId: id, pid: child.pid, nodeFlags: spec.nodeFlags ?? [] }, 'local worker started');
  }

  /** PIDs of the running workers, by id. */
  pids(): Map<string, number> {
    return new Map([...this.children].map(([id, c]) => [id, c.pid!]));
  }

  /** Waits up to `graceMs` for the children to exit by themselves, then terminates the rest. */
  async close(graceMs = 5000): Promise<void> {
    this.closing = true;
    const deadline = Date.now() + graceMs;
    while (this.children.size > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    const left = [...this.children.values()];
    for (const child of left) child.kill('SIGTERM');
    await Promise.all(left.map((c) => (c.exitCode !== null || c.signalCode !== null ? Promise.resolve() : new Promise((r) => c.once('exit', r)))));
  }
}
