/**
 * Failures and security with the real programs (needs `npm run build`): the job token, local
 * workers killed and restarted, the coordinator killed (-9) and resumed from its checkpoint to
 * the same bytes, checkpoints of another configuration or corrupted, and SIGTERM drains.
 * Events are awaited by polling output, files and /proc with deadlines, never by sleeping.
 */
import { cpSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { RunReport } from '../../src/coordinator/report.js';
import { tokenMetadata } from '../../src/rpc/auth.js';
import { loadProto, PROTOCOL_VERSION } from '../../src/rpc/proto.js';
import {
  commandLine,
  coordinator,
  environment,
  isAlive,
  jsonLogs,
  killAll,
  killLocalWorker,
  killPids,
  listeningPort,
  plainLines,
  requireBuild,
  waitFor,
  worker,
  workerChildren,
  type Proc,
} from '../helpers/process.js';

const SMALL = ['--model', 'mlp', '--test-limit', '200', '--backend', 'wasm'];
let dir: string;
const orphans: number[] = [];

beforeAll(() => {
  requireBuild();
  dir = mkdtempSync(join(tmpdir(), 'tf-faults-'));
});
afterEach(async () => {
  await killAll();
  killPids(orphans.splice(0));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const readReport = (path: string) => JSON.parse(readFileSync(path, 'utf8')) as RunReport;
const stepComputed = (p: Proc) => jsonLogs(p.stderr()).some((l) => l.msg === 'step computed');
const checkpoints = (d: string) => (existsSync(d) ? readdirSync(d).filter((n) => /^ckpt-\d+\.tfck$/.test(n)).sort() : []);
const checkpointStep = (name: string) => Number(/^ckpt-(\d+)\.tfck$/.exec(name)![1]);

/**
 * Attaches with a raw client (no worker process needed) and says how the coordinator answered:
 * `admitted` when it sent a Welcome, otherwise the status it ended the call with.
 */
async function rawAttach(port: number, token: string | undefined): Promise<{ admitted: boolean; code?: grpc.status; details?: string }> {
  const proto = loadProto();
  const client = new proto.tensorfleet.v1.Coordinator(`127.0.0.1:${port}`, grpc.credentials.createInsecure());
  try {
    const call = client.Attach(tokenMetadata(token));
    const answer = new Promise<{ admitted: boolean; code?: grpc.status; details?: string }>((resolve) => {
      call.on('data', () => resolve({ admitted: true }));
      call.on('error', (err: grpc.ServiceError) => resolve({ admitted: false, code: err.code, details: err.details }));
      call.on('end', () => resolve({ admitted: false }));
    });
    call.write({ hello: { workerId: 'intruder', pid: 1, hostname: 'nowhere', backend: 'none', protocolVersion: PROTOCOL_VERSION } });
    const timeout = setTimeout(() => call.cancel(), 20_000);
    const result = await answer;
    clearTimeout(timeout);
    call.cancel();
    return result;
  } finally {
    client.close();
  }
}

describe('job token', () => {
  it('--launch none without --token or --insecure is a usage error: exit 2, one line', async () => {
    const r = await coordinator(['--launch', 'none', '--port', '0', ...SMALL]).result();
    expect(r.exitCode).toBe(2);
    const lines = r.stderr.trim().split('\n');
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(/^coordinator: .*--token.*--insecure/);
  });

  it('a worker with a wrong token or none is refused (UNAUTHENTICATED, exit 1); with TENSORFLEET_TOKEN it trains', async () => {
    const report = join(dir, 'auth.json');
    const c = coordinator(['--launch', 'none', '--port', '0', '--workers', '1', '--train-limit', '512', ...SMALL, '--report', report, '--log-level', 'warn'], { TENSORFLEET_TOKEN: 'the-right-token' });
    const port = await listeningPort(c);
    const target = ['--coordinator', `127.0.0.1:${port}`, '--backend', 'wasm', '--log-level', 'warn', '--connect-timeout', '30'];
    const [wrong, none] = await Promise.all([
      worker([...target, '--id', 'wrong'], { TENSORFLEET_TOKEN: 'a-wrong-token' }).result(),
      worker([...target, '--id', 'none']).result(),
    ]);
    for (const [r, why] of [[wrong, 'wrong job token'], [none, 'missing job token']] as const) {
      expect(r.exitCode, r.stderr).toBe(1);
      expect(r.stderr).toMatch(/UNAUTHENTICATED/);
      expect(r.stderr).toContain(why);
      expect(plainLines(r.stderr)).toHaveLength(1);
    }
    expect(c.exited).toBe(false);
    expect(jsonLogs(c.stderr()).filter((l) => /unauthenticated/i.test(String(l.msg)))).toHaveLength(2);

    const good = worker([...target, '--id', 'good'], { TENSORFLEET_TOKEN: 'the-right-token' });
    const [g, done] = await Promise.all([good.result(), c.result()]);
    expect(g.exitCode, g.stderr).toBe(0);
    expect(done.exitCode, done.stderr).toBe(0);
    const r = readReport(report);
    expect(r.status).toBe('completed');
    expect(r.perWorker.map((w) => w.id)).toEqual(['good']);
  });

  it('--launch local makes a token, hands it to its workers in the environment (not the command line) and enforces it', async () => {
    const report = join(dir, 'local-token.json');
    const c = coordinator(['--workers', '2', '--train-limit', '2048', '--batch-size', '8', ...SMALL, '--report', report, '--log-level', 'warn']);
    const port = await listeningPort(c);
    // Auth is on: no token, or a wrong one, is refused.
    expect(await rawAttach(port, undefined)).toMatchObject({ admitted: false, code: grpc.status.UNAUTHENTICATED });
    expect(await rawAttach(port, 'guess')).toMatchObject({ admitted: false, code: grpc.status.UNAUTHENTICATED });
    const workers = await waitFor('two local worker processes', () => {
      const w = workerChildren(c.pid);
      return w.length === 2 ? w : undefined;
    });
    const tokens = new Set<string>();
    for (const w of workers) {
      const env = environment(w.pid);
      const args = commandLine(w.pid);
      expect(env, `environment of worker ${w.pid}`).toBeDefined();
      const token = env!.TENSORFLEET_TOKEN;
      expect(token, 'TENSORFLEET_TOKEN in the worker environment').toBeDefined();
      expect(token!.length).toBeGreaterThanOrEqual(32);
      tokens.add(token!);
      expect(args!.join(' ')).not.toContain(token!);
      expect(args).not.toContain('--token');
    }
    expect(tokens.size).toBe(1);
    const [token] = [...tokens];
    expect(commandLine(c.pid)!.join(' ')).not.toContain(token!);

    const done = await c.result();
    expect(done.exitCode, done.stderr).toBe(0);
    const r = readReport(report);
    expect(r.status).toBe('completed');
    expect(r.samplesPerEpoch).toEqual([2048]);
  });

  it('--insecure runs without a token and logs a warning', async () => {
    const c = coordinator(['--launch', 'none', '--port', '0', '--insecure', '--workers', '1', '--train-limit', '512', ...SMALL, '--log-level', 'warn']);
    const port = await listeningPort(c);
    const w = await worker(['--coordinator', `127.0.0.1:${port}`, '--backend', 'wasm', '--log-level', 'warn']).result();
    const done = await c.result();
    expect(w.exitCode, w.stderr).toBe(0);
    expect(done.exitCode, done.stderr).toBe(0);
    const warnings = jsonLogs(done.stderr).filter((l) => l.level === 40 && /insecure|without a job token/.test(String(l.msg)));
    expect(warnings.length).toBeGreaterThanOrEqual(1);
  });
  it('TENSORFLEET_INSECURE=false (with a token in TENSORFLEET_TOKEN) does not turn the job token off', async () => {
    // An environment variable set to "false" must not mean --insecure: refusing the value
    // (usage error, exit 2) is fine; starting without authentication is not.
    const c = coordinator(['--launch', 'none', '--port', '0', '--workers', '1', '--train-limit', '256', ...SMALL, '--log-level', 'warn'], {
      TENSORFLEET_INSECURE: 'false',
      TENSORFLEET_TOKEN: 'env-token',
    });
    const started = await waitFor('the coordinator to listen or exit', () => (c.exited ? 'exited' : /listening on/.test(c.stdout()) ? 'listening' : undefined));
    if (started === 'exited') {
      const r = await c.result();
      expect(r.exitCode, r.stderr).toBe(2);
      expect(r.stderr).toMatch(/insecure/i);
      return;
    }
    const port = await listeningPort(c);
    const warnings = jsonLogs(c.stderr()).filter((l) => /insecure|without a job token/.test(String(l.msg)));
    expect(await rawAttach(port, undefined), `a client without a token was let in; coordinator warned: ${JSON.stringify(warnings)}`).toMatchObject({
      admitted: false,
      code: grpc.status.UNAUTHENTICATED,
    });
    expect(await rawAttach(port, 'env-token')).toMatchObject({ admitted: true });
  });
});

describe('local workers that die', () => {
  it('a local worker killed -9 is restarted under its id and rejoins; the run completes with every sample once', async () => {
    const report = join(dir, 'restart.json');
    const c = coordinator(['--workers', '3', '--min-workers', '1', '--train-limit', '2048', '--batch-size', '4', ...SMALL, '--report', report, '--log-level', 'debug'], {}, 300_000);
    await waitFor('training to run', () => stepComputed(c), 120_000);
    const victim = killLocalWorker(c.pid, 'w1');

    const done = await c.result();
    expect(done.exitCode, done.stderr.slice(-3000)).toBe(0);
    const r = readReport(report);
    expect(r.status).toBe('completed');
    expect(r.samplesPerEpoch).toEqual([2048]);
    expect(r.membershipChanges).toBeGreaterThanOrEqual(2);
    const w1 = r.perWorker.filter((w) => w.id === 'w1');
    expect(w1).toHaveLength(2);
    expect(w1[0]!.pid).toBe(victim);
    expect(w1[1]!.pid).not.toBe(victim);
    expect(w1[1]!.steps).toBeGreaterThan(0);
    expect(jsonLogs(done.stderr).some((l) => l.msg === 'restarting local worker' && l.workerId === 'w1')).toBe(true);
  }, 300_000);

  it('with --max-restarts 0 and --min-workers 2, losing one of 2 local workers fails the run (exit 1, a message)', async () => {
    const report = join(dir, 'no-restart.json');
    const c = coordinator(['--workers', '2', '--min-workers', '2', '--max-restarts', '0', '--train-limit', '2048', '--batch-size', '4', ...SMALL, '--report', report, '--log-level', 'debug']);
    await waitFor('training to run', () => stepComputed(c), 120_000);
    killLocalWorker(c.pid, 'w0');

    const done = await c.result();
    expect(done.exitCode).toBe(1);
    const lines = plainLines(done.stderr);
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(/^coordinator: training failed: .*(will not be restarted|min-workers)/);
    const r = readReport(report);
    expect(r.status).toBe('failed');
    expect(r.error).toMatch(/min-workers/);
  }, 240_000);
});

describe('coordinator crash and resume', () => {
  // Same job as the reference run: only the folders differ.
  const job = ['--workers', '2', '--train-limit', '2048', '--epochs', '2', '--checkpoint-every', '5', ...SMALL, '--log-level', 'warn'];
  const totalSteps = 2 * (2048 / 64);
  let reference: Promise<Buffer> | undefined;

  /** Run A, once: an uninterrupted run; resolves with its weights.bin. */
  function referenceWeights(): Promise<Buffer> {
    reference ??= (async () => {
      const c = coordinator([...job, '--checkpoint-dir', join(dir, 'A'), '--save-model', join(dir, 'MA'), '--report', join(dir, 'A.json')]);
      const r = await c.result();
      if (r.exitCode !== 0) throw new Error(`reference run failed:\n${r.stderr}`);
      return readFileSync(join(dir, 'MA', 'weights.bin'));
    })();
    return reference;
  }

  it('kill -9 mid-run, then --resume: completes from the checkpoint, no orphan worker, weights byte-identical to an uninterrupted run', async () => {
    const a = await referenceWeights();
    expect(readReport(join(dir, 'A.json')).steps).toBe(totalSteps);

    const B = join(dir, 'B');
    const args = [...job, '--checkpoint-dir', B, '--save-model', join(dir, 'MB'), '--report', join(dir, 'B.json')];
    const crashed = coordinator(args);
    await waitFor('a checkpoint of run B', () => checkpoints(B).length > 0 || crashed.exited, 120_000, 10);
    expect(crashed.exited, 'run B finished before it could be killed').toBe(false);
    const workers = workerChildren(crashed.pid).map((w) => w.pid);
    orphans.push(...workers);
    process.kill(crashed.pid, 'SIGKILL');
    const killed = await crashed.result();
    expect(killed.signal).toBe('SIGKILL');
    expect(workers.length).toBeGreaterThan(0);
    // Local workers notice their parent is gone and exit by themselves.
    await waitFor('the orphaned local workers to exit', () => workers.every((pid) => !isAlive(pid)), 20_000, 100);
    const newest = checkpoints(B).at(-1)!;
    const atStep = checkpointStep(newest);
    expect(atStep).toBeGreaterThan(0);
    expect(atStep).toBeLessThan(totalSteps);
    expect(existsSync(join(dir, 'MB'))).toBe(false);

    const resumed = await coordinator([...args, '--resume']).result();
    expect(resumed.exitCode, resumed.stderr).toBe(0);
    const r = readReport(join(dir, 'B.json'));
    expect(r.status).toBe('completed');
    expect(r.resumedFromStep).toBe(atStep);
    expect(r.steps).toBe(totalSteps);
    expect(r.samplesPerEpoch).toEqual([2048, 2048]);
    const b = readFileSync(join(dir, 'MB', 'weights.bin'));
    expect(b.length).toBe(a.length);
    expect(b.equals(a)).toBe(true);
  }, 300_000);

  it('--resume from a checkpoint of another configuration (lr, batch size) fails with one line naming the checkpoint', async () => {
    await referenceWeights();
    for (const change of [['--lr', '0.002'], ['--batch-size', '16']]) {
      const r = await coordinator([...job, ...change, '--checkpoint-dir', join(dir, 'A'), '--resume']).result();
      expect(r.exitCode, change.join(' ')).not.toBe(0);
      const lines = plainLines(r.stderr);
      expect(lines, r.stderr).toHaveLength(1);
      expect(lines[0]).toMatch(/checkpoint .*ckpt-\d+\.tfck/);
      expect(lines[0]).toContain('another job configuration');
    }
  }, 120_000);

  it('--resume from a corrupted checkpoint fails (exit 1) with one line saying it is corrupt', async () => {
    await referenceWeights();
    const C = join(dir, 'C');
    cpSync(join(dir, 'A'), C, { recursive: true });
    const newest = join(C, checkpoints(C).at(-1)!);
    const bytes = readFileSync(newest);
    const mid = Math.floor(bytes.length / 2);
    for (let i = mid; i < mid + 16; i++) bytes[i] = bytes[i]! ^ 0xff;
    writeFileSync(newest, bytes);

    const r = await coordinator([...job, '--checkpoint-dir', C, '--resume']).result();
    expect(r.exitCode).toBe(1);
    const lines = plainLines(r.stderr);
    expect(lines, r.stderr).toHaveLength(1);
    expect(lines[0]).toContain(newest);
    expect(lines[0]).toMatch(/corrupt/);
  }, 120_000);

  it('SIGTERM drains: exit 0, report "stopped" with lastCheckpoint, says how to resume; --resume completes to the same weights', async () => {
    const a = await referenceWeights();
    const D = join(dir, 'D');
    const report = join(dir, 'D.json');
    const args = [...job, '--checkpoint-dir', D, '--save-model', join(dir, 'MD'), '--report', report];
    const c = coordinator(args);
    await waitFor('a checkpoint of run D', () => checkpoints(D).length > 0 || c.exited, 120_000, 10);
    expect(c.exited, 'run D finished before it could be stopped').toBe(false);
    process.kill(c.pid, 'SIGTERM'); // not execa's kill(), which adds a SIGKILL 5 s later
    const stopped = await c.result();
    expect(stopped.exitCode, stopped.stderr).toBe(0);
    const s = readReport(report);
    expect(s.status).toBe('stopped');
    expect(s.lastCheckpoint).toBeDefined();
    expect(existsSync(s.lastCheckpoint!)).toBe(true);
    expect(s.steps).toBeLessThan(totalSteps);
    expect(stopped.stdout).toContain('--resume');
    expect(stopped.stdout).toContain(s.lastCheckpoint!);

    const resumed = await coordinator([...args, '--resume']).result();
    expect(resumed.exitCode, resumed.stderr).toBe(0);
    const r = readReport(report);
    expect(r.status).toBe('completed');
    expect(r.resumedFromStep).toBe(s.steps);
    expect(r.samplesPerEpoch).toEqual([2048, 2048]);
    expect(readFileSync(join(dir, 'MD', 'weights.bin')).equals(a)).toBe(true);
  }, 300_000);
});

describe('a worker told to stop', () => {
  it('SIGTERM to a worker: it exits 0, and the run completes with the other one (--min-workers 1)', async () => {
    const report = join(dir, 'worker-sigterm.json');
    const token = { TENSORFLEET_TOKEN: 'sigterm-token' };
    const c = coordinator(['--launch', 'none', '--port', '0', '--workers', '2', '--min-workers', '1', '--train-limit', '2048', '--batch-size', '8', ...SMALL, '--report', report, '--log-level', 'warn'], token);
    const port = await listeningPort(c);
    const target = ['--coordinator', `127.0.0.1:${port}`, '--backend', 'wasm'];
    const stays = worker([...target, '--id', 'stays', '--log-level', 'warn'], token);
    const leaves = worker([...target, '--id', 'leaves', '--log-level', 'debug'], token);
    await waitFor('the worker to compute a step', () => stepComputed(leaves) || leaves.exited, 120_000);
    expect(leaves.exited).toBe(false);
    process.kill(leaves.pid, 'SIGTERM');

    const l = await leaves.result();
    expect(l.exitCode, l.stderr).toBe(0);
    expect(plainLines(l.stderr)).toEqual([]);
    const [s, done] = await Promise.all([stays.result(), c.result()]);
    expect(s.exitCode, s.stderr).toBe(0);
    expect(done.exitCode, done.stderr).toBe(0);
    const r = readReport(report);
    expect(r.status).toBe('completed');
    expect(r.samplesPerEpoch).toEqual([2048]);
    expect(r.membershipChanges).toBeGreaterThanOrEqual(1);
    const byId = Object.fromEntries(r.perWorker.map((w) => [w.id, w]));
    expect(byId.leaves!.steps).toBeLessThan(r.steps);
    // perWorker counts gradients received, including those of a step aborted and redone
    expect(byId.stays!.steps).toBeGreaterThanOrEqual(r.steps);
    expect(byId.stays!.steps).toBeLessThanOrEqual(r.steps + r.abortedSteps);
  }, 240_000);
});
