/**
 * `--ps-mode process` with `--launch local`: spawns the K `parameter-server` processes on
 * 127.0.0.1 port 0, token and TLS files in their environment (never on the command line), and
 * reads each one's `{"port":N}` line. A shard is never restarted: its variables would be lost,
 * so one that exits ends the run (ShardLostError through the coordinator's control stream).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import type { Logger } from '../telemetry/logger.js';
import { TrainingFailedError } from './errors.js';

export const PARAMETER_SERVER_PROGRAM = fileURLToPath(new URL('../ps/cli.js', import.meta.url));

export class ShardLauncher {
  private readonly children: ChildProcess[] = [];
  private closing = false;

  constructor(private readonly log: Logger) {}

  /** PIDs of the shard processes, in shard order. */
  get pids(): number[] {
    return this.children.map((c) => c.pid!);
  }

  /** Starts `count` shards; resolves with their addresses once every one listens. */
  async start(count: number, options: { host: string; logLevel: string; env: Record<string, string | undefined>; nodeFlags?: string[] }): Promise<string[]> {
    const env = { ...process.env, ...options.env, TENSORFLEET_PARENT_PID: String(process.pid) };
    const ports = await Promise.all(
      Array.from({ length: count }, (_, index) => {
        const args = [PARAMETER_SERVER_PROGRAM, '--host', '127.0.0.1', '--port', '0', '--log-level', options.logLevel];
        const child = spawn(process.execPath, [...(options.nodeFlags ?? []), ...args], { stdio: ['ignore', 'pipe', 'inherit'], env });
        this.children.push(child);
        child.on('exit', (code, signal) => {
          if (!this.closing) this.log.error({ shard: index, pid: child.pid, code, signal }, 'parameter-server shard exited');
        });
        return new Promise<number>((resolve, reject) => {
          const lines = createInterface({ input: child.stdout! });
          lines.once('line', (line) => {
            const port = Number((JSON.parse(line) as { port?: unknown }).port);
            if (Number.isInteger(port) && port > 0) resolve(port);
            else reject(new TrainingFailedError(`parameter-server shard ${index} announced no port (${line.slice(0, 80)})`));
          });
          child.once('exit', (code, signal) => reject(new TrainingFailedError(`parameter-server shard ${index} exited before listening (code ${code}, signal ${signal})`)));
          child.once('error', (err) => reject(new TrainingFailedError(`cannot start parameter-server shard ${index}: ${err.message}`)));
        });
      }),
    );
    this.log.info({ shards: count, pids: this.pids, ports }, 'parameter-server shards started');
    return ports.map((p) => `${options.host}:${p}`);
  }

  /**
   * Terminates the shards (SIGTERM) and waits for them to exit; one still there after
   * `graceMs` (hung, or stopped: a stopped process does not act on SIGTERM) gets SIGKILL.
   * Idempotent.
   */
  async close(graceMs = 3000): Promise<void> {
    this.closing = true;
    const running = this.children.filter((c) => c.exitCode === null && c.signalCode === null);
    for (const child of running) child.kill('SIGTERM');
    const force = setTimeout(() => {
      for (const child of running) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    }, graceMs);
    await Promise.all(running.map((c) => (c.exitCode !== null || c.signalCode !== null ? Promise.resolve() : new Promise((r) => c.once('exit', r)))));
    clearTimeout(force);
  }
}
