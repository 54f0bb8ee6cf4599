/**
 * TLS and mutual TLS between the real `coordinator` and `worker` programs, with a test PKI made
 * by the `openssl` command (a CA, a server certificate for localhost/127.0.0.1 with
 * extendedKeyUsage serverAuth, a client certificate with clientAuth). Needs `npm run build`.
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { RunReport } from '../../src/coordinator/report.js';
import { makeTestPki, opensslVersion, type TestPki } from '../helpers/certs.js';
import { coordinator, jsonLogs, killAll, listeningPort, requireBuild, waitFor, worker, type Proc } from '../helpers/process.js';

const TOKEN = 'tls-test-token-0123456789';
const SMALL = ['--model', 'mlp', '--train-limit', '512', '--test-limit', '200', '--backend', 'wasm'];
let dir: string;
let pki: TestPki;

beforeAll(() => {
  requireBuild();
  opensslVersion(); // a clear message (apt-get install openssl) when the command is missing
  dir = mkdtempSync(join(tmpdir(), 'tf-tls-'));
  pki = makeTestPki(dir);
});
afterEach(async () => killAll());
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function handWorker(port: number, id: string, tlsArgs: string[], connectTimeoutS = 120): Proc {
  return worker(['--coordinator', `localhost:${port}`, '--id', id, '--backend', 'wasm', '--connect-timeout', String(connectTimeoutS), '--log-level', 'warn', ...tlsArgs], { TENSORFLEET_TOKEN: TOKEN });
}

/** A worker that must not get in: it gives up after its connect timeout, exit 1, saying it could not connect. */
async function expectShutOut(p: Proc): Promise<void> {
  const r = await p.result();
  expect(r.exitCode, r.stderr).toBe(1);
  expect(r.stderr).toMatch(/^worker: coordinator at localhost:\d+ (unreachable|refused)/m);
}

/**
 * Waits for a coordinator with local workers to exit, but gives up early (instead of waiting for
 * the workers' 120 s connect timeout) once its workers keep failing to reconnect.
 */
async function waitForLocalRun(c: Proc, timeoutMs = 150_000): Promise<void> {
  await waitFor(
    'the coordinator to exit (or its local workers to keep failing to connect)',
    () => c.exited || jsonLogs(c.stderr()).filter((l) => l.msg === 'coordinator lost; reconnecting').length >= 4,
    timeoutMs,
    100,
  );
}

describe('TLS', () => {
  it('openssl made a CA-signed server certificate for localhost and 127.0.0.1', () => {
    const text = readFileSync(pki.serverCert, 'utf8');
    expect(text).toMatch(/BEGIN CERTIFICATE/);
    expect(readFileSync(pki.caCert, 'utf8')).not.toBe(text);
  });

  it('server TLS: a worker with --tls-ca trains; one without TLS, or trusting another CA, is shut out (exit 1)', async () => {
    const report = join(dir, 'tls.json');
    const c = coordinator(['--launch', 'none', '--port', '0', '--workers', '1', ...SMALL, '--tls-cert', pki.serverCert, '--tls-key', pki.serverKey, '--report', report, '--log-level', 'warn'], { TENSORFLEET_TOKEN: TOKEN });
    const port = await listeningPort(c);
    const plain = handWorker(port, 'plain', [], 3);
    const wrongCa = handWorker(port, 'wrong-ca', ['--tls-ca', pki.otherCaCert], 3);
    await expectShutOut(plain);
    await expectShutOut(wrongCa);
    expect(wrongCa.stderr()).toMatch(/certificate/i);
    expect(c.exited).toBe(false); // nobody got in: the coordinator is still waiting

    const good = handWorker(port, 'good', ['--tls-ca', pki.caCert]);
    const [w, done] = await Promise.all([good.result(), c.result()]);
    expect(w.exitCode, w.stderr).toBe(0);
    expect(done.exitCode, done.stderr).toBe(0);
    const r = JSON.parse(readFileSync(report, 'utf8')) as RunReport;
    expect(r.status).toBe('completed');
    expect(r.samplesPerEpoch).toEqual([512]);
    expect(r.perWorker.map((p) => p.id)).toEqual(['good']);
  });

  it('mutual TLS: a worker with CA + client certificate trains; one with only the CA is refused (exit 1)', async () => {
    const report = join(dir, 'mtls.json');
    const c = coordinator(
      ['--launch', 'none', '--port', '0', '--workers', '1', ...SMALL, '--tls-cert', pki.serverCert, '--tls-key', pki.serverKey, '--tls-ca', pki.caCert, '--report', report, '--log-level', 'warn'],
      { TENSORFLEET_TOKEN: TOKEN },
    );
    const port = await listeningPort(c);
    const caOnly = handWorker(port, 'ca-only', ['--tls-ca', pki.caCert], 3);
    await expectShutOut(caOnly);
    expect(c.exited).toBe(false);

    const good = handWorker(port, 'client-cert', ['--tls-ca', pki.caCert, '--tls-cert', pki.clientCert, '--tls-key', pki.clientKey]);
    const [w, done] = await Promise.all([good.result(), c.result()]);
    expect(w.exitCode, w.stderr).toBe(0);
    expect(done.exitCode, done.stderr).toBe(0);
    const r = JSON.parse(readFileSync(report, 'utf8')) as RunReport;
    expect(r.status).toBe('completed');
    expect(r.perWorker.map((p) => p.id)).toEqual(['client-cert']);
  });

  it('--launch local with a CA-signed --tls-cert alone is refused in one line; with its full chain the run completes', async () => {
    const refused = coordinator(['--workers', '2', ...SMALL, '--tls-cert', pki.serverCert, '--tls-key', pki.serverKey, '--log-level', 'warn']);
    const r1 = await refused.result();
    expect(r1.exitCode).toBe(2);
    const lines = r1.stderr.trim().split('\n');
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(/local workers must verify --tls-cert/);

    const report = join(dir, 'local-tls.json');
    const c = coordinator(['--workers', '2', ...SMALL, '--tls-cert', pki.serverFullChain, '--tls-key', pki.serverKey, '--report', report, '--log-level', 'warn']);
    await waitForLocalRun(c);
    const finished = c.exited;
    const stderr = c.stderr();
    if (!finished) await killAll();
    expect(finished, `the local workers could not connect over TLS:\n${stderr.slice(0, 3000)}`).toBe(true);
    const done = await c.result();
    expect(done.exitCode, done.stderr).toBe(0);
    const r = JSON.parse(readFileSync(report, 'utf8')) as RunReport;
    expect(r.status).toBe('completed');
    expect(r.samplesPerEpoch).toEqual([512]);
    expect(r.perWorker).toHaveLength(2);
  });

  it('--launch local with mutual TLS: a server-only certificate is refused in one line; a server+client one completes', async () => {
    const refused = coordinator(['--workers', '2', ...SMALL, '--tls-cert', pki.serverCert, '--tls-key', pki.serverKey, '--tls-ca', pki.caCert, '--log-level', 'warn']);
    const r1 = await refused.result();
    expect(r1.exitCode).toBe(2);
    expect(r1.stderr.trim().split('\n')).toHaveLength(1);
    expect(r1.stderr).toMatch(/must allow client authentication/);

    const report = join(dir, 'local-mtls.json');
    const c = coordinator(['--workers', '2', ...SMALL, '--tls-cert', pki.dualCert, '--tls-key', pki.dualKey, '--tls-ca', pki.caCert, '--report', report, '--log-level', 'warn']);
    await waitForLocalRun(c);
    const finished = c.exited;
    const stderr = c.stderr();
    if (!finished) await killAll();
    expect(finished, `the local workers could not connect over mutual TLS:\n${stderr.slice(0, 3000)}`).toBe(true);
    const done = await c.result();
    expect(done.exitCode, done.stderr).toBe(0);
    const r = JSON.parse(readFileSync(report, 'utf8')) as RunReport;
    expect(r.status).toBe('completed');
    expect(r.samplesPerEpoch).toEqual([512]);
    expect(r.perWorker).toHaveLength(2);
  });

  it('mutual TLS with two parameter-server shard processes: the workers\' exchange connections to them are mutual TLS too, and the run completes', async () => {
    const report = join(dir, 'local-mtls-shards.json');
    const c = coordinator(['--workers', '2', ...SMALL, '--ps-shards', '2', '--ps-mode', 'process', '--tls-cert', pki.dualCert, '--tls-key', pki.dualKey, '--tls-ca', pki.caCert, '--report', report, '--log-level', 'warn']);
    await waitForLocalRun(c);
    const finished = c.exited;
    const stderr = c.stderr();
    if (!finished) await killAll();
    expect(finished, `the workers could not reach the shards over mutual TLS:\n${stderr.slice(0, 3000)}`).toBe(true);
    const done = await c.result();
    expect(done.exitCode, done.stderr).toBe(0);
    const r = JSON.parse(readFileSync(report, 'utf8')) as RunReport;
    expect(r.status).toBe('completed');
    expect(r.samplesPerEpoch).toEqual([512]);
    expect(r.bytesPerStepPerWorker.sent).toBeGreaterThan(0);
  });
});
