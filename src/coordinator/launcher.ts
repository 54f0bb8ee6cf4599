/**
 * `--launch local`: spawns the workers as child processes of the same `worker` program users
 * run by hand, pointed at this coordinator. Tracks them so the coordinator can tell when the
 * workers it is waiting for can no longer come.
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
}

export class LocalLauncher extends EventEmitter<{ exit: [id: string, code: number | null, signal: NodeJS.Signals | null] }> {
  private readonly children = new Map<string, ChildProcess>();

  constructor(private readonly log: Logger) {
    super();
  }

  get running(): number {
    return this.children.size;
  }

  start(spec: LaunchSpec): void {
    for (let i = 0; i < spec.count; i++) {
      const id = `w${i}`;
      const args = [WORKER_PROGRAM, '--coordinator', spec.coordinator, '--id', id, '--backend', spec.backend, '--log-level', spec.logLevel];
      const child = spawn(process.execPath, args, { stdio: ['ignore', 'ignore', 'inherit'] });
      this.children.set(id, child);
      child.on('exit', (code, signal) => {
        this.children.delete(id);
        const level = code === 0 ? 'info' : 'warn';
        this.log[level]({ workerId: id, pid: child.pid, code, signal }, 'local worker exited');
        this.emit('exit', id, code, signal);
      });
      child.on('error', (err) => this.log.error({ workerId: id, err: err.message }, 'could not start local worker'));
      this.log.info({ workerId: id, pid: child.pid }, 'local worker started');
    }
  }

  /** Waits up to `graceMs` for the children to exit by themselves, then terminates the rest. */
  async close(graceMs = 5000): Promise<void> {
    const deadline = Date.now() + graceMs;
    while (this.children.size > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    const left = [...this.children.values()];
    for (const child of left) child.kill('SIGTERM');
    await Promise.all(left.map((c) => (c.exitCode !== null ? Promise.resolve() : new Promise((r) => c.once('exit', r)))));
  }
}
