/**
 * `--ps-mode colocated` with the real programs (needs `npm run build`): local workers serve the
 * shards; a worker killed -9 takes its shard with it, the run goes back to its last rollback
 * point, the restarted worker rejoins, and every sample is still trained once. Between the
 * workers the slices go through shared regions (they share this host).
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { RunReport } from '../../src/coordinator/report.js';
import { COORDINATOR, coordinator, expectUsageErrors, jsonLogs, killAll, killLocalWorker, requireBuild, waitFor, type Proc } from '../helpers/process.js';

const SMALL = ['--model', 'mlp', '--test-limit', '200', '--backend', 'wasm'];
let dir: string;

beforeAll(() => {
  requireBuild();
  dir = mkdtempSync(join(tmpdir(), 'tf-colocated-'));
});
afterEach(() => killAll());
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const readReport = (path: string) => JSON.parse(readFileSync(path, 'utf8')) as RunReport;
const stepsComputed = (p: Proc) => jsonLogs(p.stderr()).filter((l) => l.msg === 'step computed').length;

describe('co-located shards (CLI)', () => {
  it('two local workers serve the shards: the run completes and each worker moves half the bytes of a parameter-server run', async () => {
    const report = join(dir, 'plain.json');
    const run = await execa('node', [COORDINATOR, '--workers', '2', '--ps-mode', 'colocated', '--train-limit', '512', ...SMALL, '--no-http', '--report', report, '--log-level', 'warn'], { reject: false, timeout: 120_000 });
    expect(run.exitCode, run.stderr).toBe(0);
    const r = readReport(report);
    expect(r.status).toBe('completed');
    expect(r.psMode).toBe('colocated');
    expect(r.steps).toBe(8);
    expect(r.samplesPerEpoch).toEqual([512]);
    expect(r.rolledBackSteps).toBe(0);
    expect(r.bytesPerStepPerWorker.sent).toBeGreaterThan(0);
  }, 120_000);

  it('a worker killed -9 takes its shard along: the run goes back to its rollback point, the restarted worker rejoins, every sample is trained once', async () => {
    const report = join(dir, 'killed.json');
    const c = coordinator(['--workers', '2', '--ps-mode', 'colocated', '--snapshot-every', '10', '--train-limit', '2048', '--batch-size', '4', ...SMALL, '--report', report, '--log-level', 'debug'], {}, 300_000);
    await waitFor('training to run', () => stepsComputed(c) >= 30, 120_000);
    killLocalWorker(c.pid, 'w1');

    const done = await c.result();
    expect(done.exitCode, done.stderr.slice(-3000)).toBe(0);
    const r = readReport(report);
    expect(r.status).toBe('completed');
    expect(r.samplesPerEpoch).toEqual([2048]);
    expect(r.rolledBackSteps).toBeGreaterThan(0);
    expect(r.rolledBackSteps).toBeLessThanOrEqual(10);
    const w1 = r.perWorker.filter((w) => w.id === 'w1');
    expect(w1).toHaveLength(2);
    expect(w1[1]!.steps).toBeGreaterThan(0);
    const logs = jsonLogs(done.stderr);
    expect(logs.some((l) => l.msg === 'a member left with its shard; going back to the rollback point')).toBe(true);
    expect(logs.filter((l) => l.msg === 'co-located shard group formed').length).toBeGreaterThanOrEqual(2);
    // The processes share a host: each shard took the other worker's slices through shared
    // regions, before the kill and again with the restarted worker.
    const shared = logs.filter((l) => l.msg === 'exchange connection on this host: shared regions');
    expect(shared.length).toBeGreaterThanOrEqual(3);
    expect(shared.every((l) => l.gradients === true && l.weights === true)).toBe(true);
  }, 300_000);

  it('usage errors exit 2 with one line', async () => {
    await expectUsageErrors(COORDINATOR, [
      [['--ps-mode', 'colocated', '--ps-shards', '2', '--insecure'], /number of members/],
      [['--ps-mode', 'colocated', '--snapshot-every', '0', '--insecure'], /snapshotEvery/],
    ]);
  }, 60_000);
});
