/** `--ps-mode process`: the coordinator starting `parameter-server` processes (needs `npm run build`). */
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import * as net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { RunReport } from '../../src/coordinator/report.js';
import { RemoteShard } from '../../src/ps/shard-client.js';
import { expectUsageErrors } from '../helpers/process.js';

const root = fileURLToPath(new URL('../..', import.meta.url));
const COORDINATOR = join(root, 'dist/coordinator/cli.js');
const PARAMETER_SERVER = join(root, 'dist/ps/cli.js');
let dir: string;

beforeAll(() => {
  if (!existsSync(PARAMETER_SERVER)) throw new Error('dist/ is missing: run `npm run build` first');
  dir = mkdtempSync(join(tmpdir(), 'tf-shards-'));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

describe('parameter-server shard processes', () => {
  it('--ps-shards 2 --ps-mode process trains with two shard processes and stops them', async () => {
    const report = join(dir, 'report.json');
    const run = await execa('node', [COORDINATOR, '--workers', '2', '--ps-shards', '2', '--ps-mode', 'process', '--model', 'mlp', '--train-limit', '512', '--test-limit', '100', '--backend', 'wasm', '--no-http', '--report', report, '--log-level', 'warn'], { reject: false, timeout: 120_000 });
    expect(run.exitCode, run.stderr).toBe(0);
    const pids = [...run.stdout.matchAll(/\(pid (\d+)\)/g)].map((m) => Number(m[1]));
    expect(pids).toHaveLength(2);
    for (const pid of pids) expect(alive(pid)).toBe(false);
    const r = JSON.parse(readFileSync(report, 'utf8')) as RunReport;
    expect(r.status).toBe('completed');
    expect(r.psShards).toBe(2);
    expect(r.psMode).toBe('process');
    expect(r.steps).toBe(8);
    expect(r.samplesPerEpoch).toEqual([512]);
    expect(r.bytesPerStepPerWorker.sent).toBeGreaterThan(0);
    expect(r.testAccuracy).toBeGreaterThan(0.3);
  });

  /** Starts a run over the whole training set (long enough for anything to happen to a shard) and waits for its second shard's address and pid. */
  async function runWithShards(extra: string[] = []) {
    const child = execa('node', [COORDINATOR, '--workers', '2', '--ps-shards', '2', '--ps-mode', 'process', '--model', 'mlp', '--backend', 'wasm', '--no-http', '--log-level', 'silent', ...extra], { reject: false, timeout: 120_000 });
    const victim = await new Promise<{ address: string; pid: number }>((resolve, reject) => {
      let out = '';
      child.stdout!.on('data', (d: Buffer) => {
        out += d.toString();
        const m = /parameter-server shards: \S+ \(pid \d+\), (\S+) \(pid (\d+)\)/.exec(out);
        if (m) resolve({ address: m[1]!, pid: Number(m[2]) });
      });
      child.on('exit', () => reject(new Error(`coordinator exited before announcing its shards: ${out}`)));
    });
    return { child, victim };
  }

  async function expectShardLost(child: Awaited<ReturnType<typeof runWithShards>>['child'], address: string) {
    const run = await child;
    expect(run.exitCode).toBe(1);
    const lines = run.stderr.trim().split('\n');
    expect(lines, run.stderr).toHaveLength(1);
    expect(lines[0]).toContain(`parameter-server shard 1 at ${address} lost`);
    expect(lines[0]).toMatch(/^coordinator: /);
  }

  it('a shard killed with SIGKILL ends the run: exit 1 and one line naming the shard', async () => {
    const { child, victim } = await runWithShards();
    process.kill(victim.pid, 'SIGKILL');
    await expectShardLost(child, victim.address);
  });

  it('a hung shard (SIGSTOP: its connection stays open) is found by HTTP/2 pings within the heartbeat timeout and ends the run', async () => {
    const { child, victim } = await runWithShards(['--heartbeat-timeout', '2']);
    const stoppedAt = performance.now();
    process.kill(victim.pid, 'SIGSTOP');
    try {
      await expectShardLost(child, victim.address);
      // pings every 0.5 s, each answered within 2 s: lost after about 2.5 s
      expect(performance.now() - stoppedAt).toBeLessThan(15_000);
    } finally {
      if (alive(victim.pid)) process.kill(victim.pid, 'SIGKILL');
    }
  }, 60_000);

  it('usage errors exit 2 with one line', async () => {
    await expectUsageErrors(COORDINATOR, [
      [['--ps-shards', '0'], /psShards must be an integer/],
      [['--ps-mode', 'threads'], /ps-mode/],
      [['--ps-mode', 'process', '--launch', 'none', '--token', 't', '--ps-shards', '2'], /psAddresses must name the 2/],
    ]);
    await expectUsageErrors(PARAMETER_SERVER, [
      [['--insecure', '--exchange-port', '70000'], /--exchange-port must be from 0 to 65535/],
      [['--insecure', '--port', '5000', '--exchange-port', '5000'], /--exchange-port must differ from --port/],
    ]);
  });

  it('--exchange-port fixes the port workers exchange tensors on, and the coordinator learns it over gRPC', async () => {
    const probe = net.createServer();
    await new Promise<void>((r) => probe.listen(0, '127.0.0.1', r));
    const fixed = (probe.address() as net.AddressInfo).port;
    await new Promise<void>((r) => probe.close(() => r()));
    const ps = execa('node', [PARAMETER_SERVER, '--insecure', '--port', '0', '--exchange-port', String(fixed), '--log-level', 'warn'], { reject: false });
    try {
      const port = await new Promise<number>((resolve, reject) => {
        ps.stdout!.once('data', (b: Buffer) => resolve((JSON.parse(b.toString()) as { port: number }).port));
        void ps.then((r) => reject(new Error(`parameter-server exited: ${r.stderr}`)));
      });
      const control = new RemoteShard({ address: `127.0.0.1:${port}`, range: { index: 0, offset: 0, length: 8 }, token: undefined, tls: {}, connectTimeoutMs: 10_000 });
      try {
        await control.init({ jobId: 'j', gradDtype: 'float32', chunkBytes: 1 << 20, adam: { lr: 1e-3, beta1: 0.9, beta2: 0.999, epsilon: 1e-7 } }, { weights: new Float32Array(8), m: new Float32Array(8), v: new Float32Array(8), iterations: 0, version: 0 });
        expect(control.exchangePort).toBe(fixed);
      } finally {
        control.close();
      }
    } finally {
      ps.kill('SIGTERM');
      await ps;
    }
  });
});
