/**
 * "Pods as processes": the cpu overlay's coordinator Deployment and worker Job, run as local
 * processes exactly as their manifests write them (command, args, env, envFrom), to show that
 * what Kubernetes would start trains to completion, and that a coordinator "pod" killed and
 * started again with the same args resumes from its checkpoint while the worker "pods" (not
 * restarted) reconnect by themselves.
 *
 * What stands in for Kubernetes: `node <checkout>/dist/...` for the image's /app/dist/...; the
 * Service's DNS name and port resolve to 127.0.0.1 and the coordinator's port; the checkpoint
 * claim's mount path is a temporary folder; ConfigMap values come from the rendered manifests
 * and the Secret from the command docs/kubernetes.md gives; JOB_COMPLETION_INDEX is each worker
 * pod's index (the downward-API annotation).
 *
 * Overridden on top of the manifests' values, and why:
 * - TENSORFLEET_TRAIN_LIMIT=1024, TENSORFLEET_TEST_LIMIT=200, TENSORFLEET_MODEL=mlp,
 *   TENSORFLEET_EPOCHS=2: a small job that runs in seconds on two cores;
 * - TENSORFLEET_BATCH_SIZE=8, TENSORFLEET_CHECKPOINT_EVERY=8: 64 steps an epoch with a
 *   checkpoint every 8, so that the coordinator can be killed with most of the job ahead;
 * - TENSORFLEET_BACKEND=wasm: the image's @tensorflow/tfjs-node is not installed here;
 * - TENSORFLEET_HOST=127.0.0.1 and TENSORFLEET_PORT=<a free port>: this machine's loopback
 *   rather than every interface and the fixed 50051 of a pod's own network namespace.
 */
import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { RunReport } from '../../src/coordinator/report.js';
import { container, containerEnv, expand, find, podSpec, render, ROOT, SKIPPED, tokenSecret, type Any, type K8sObject, type PodFacts } from '../helpers/k8s.js';
import { cleanEnv, killAll, requireBuild, startNode, waitFor, WORKER, type Proc } from '../helpers/process.js';

const OVERRIDES = {
  TENSORFLEET_TRAIN_LIMIT: '1024',
  TENSORFLEET_TEST_LIMIT: '200',
  TENSORFLEET_MODEL: 'mlp',
  TENSORFLEET_EPOCHS: '2',
  TENSORFLEET_BATCH_SIZE: '8',
  TENSORFLEET_CHECKPOINT_EVERY: '8',
  TENSORFLEET_BACKEND: 'wasm',
  TENSORFLEET_HOST: '127.0.0.1',
};
const STEPS = 2 * (1024 / (2 * 8));

async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as { port: number }).port;
  await new Promise((resolve) => server.close(resolve));
  return port;
}

interface PodProcess {
  program: string;
  args: string[];
  env: Record<string, string>;
}

/** The process a container of a rendered pod template would run, mapped onto this machine. */
function podProcess(objects: K8sObject[], owner: K8sObject, containerName: string, pod: PodFacts, stateDir: string, port: number): PodProcess {
  const c = container(owner, containerName);
  const service = find(objects, 'Service', 'tensorfleet-coordinator') as Any;
  const grpcPort = service.spec.ports.find((p: Any) => p.name === 'grpc').port;
  const claims = new Set((podSpec(owner).volumes ?? []).filter((v: Any) => v.persistentVolumeClaim).map((v: Any) => v.name));
  const mounts: string[] = (c.volumeMounts ?? []).filter((m: Any) => claims.has(m.name)).map((m: Any) => m.mountPath);
  const dns = [`${service.metadata.name}.default.svc.cluster.local`, `${service.metadata.name}.default.svc`, service.metadata.name];
  const local = (value: string) => {
    let v = value;
    for (const name of dns) v = v.split(`${name}:${grpcPort}`).join(`127.0.0.1:${port}`);
    for (const m of mounts) if (v === m || v.startsWith(`${m}/`)) v = stateDir + v.slice(m.length);
    return v;
  };
  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries(containerEnv(c, objects, pod))) env[k] = local(v);
  const [interpreter, script, ...rest] = [...c.command, ...(c.args ?? [])].map((a: string) => local(expand(a, env)));
  expect(interpreter, 'the manifests run node').toBe('node');
  expect(script!.startsWith('/app/'), `${script} is in the image's /app`).toBe(true);
  return { program: join(ROOT, relative('/app', script!)), args: rest, env: { ...env, ...OVERRIDES, TENSORFLEET_PORT: String(port) } };
}

if (SKIPPED) console.warn(`tests/e2e/k8s-pods.test.ts: ${SKIPPED}`);

describe.skipIf(SKIPPED !== undefined)(`pods as processes (cpu overlay)${SKIPPED ? ` (${SKIPPED})` : ''}`, () => {
  let objects: K8sObject[];
  let dir: string;
  const dirs: string[] = [];
  beforeAll(() => {
    requireBuild();
    objects = [...render('cpu'), tokenSecret(`pods-as-processes-${process.pid}`)];
  });
  afterEach(() => killAll());
  afterAll(() => dirs.forEach((d) => rmSync(d, { recursive: true, force: true })));

  async function pods() {
    dir = mkdtempSync(join(tmpdir(), 'tf-k8s-pods-'));
    dirs.push(dir);
    const port = await freePort();
    const deployment = find(objects, 'Deployment', 'tensorfleet-coordinator');
    const job = find(objects, 'Job', 'tensorfleet-workers') as Any;
    const coordinator = podProcess(objects, deployment, 'coordinator', { name: 'tensorfleet-coordinator-0' }, dir, port);
    const workers = Array.from({ length: job.spec.completions as number }, (_, i) =>
      podProcess(objects, job, 'worker', { name: `tensorfleet-workers-${i}`, annotations: { 'batch.kubernetes.io/job-completion-index': String(i) } }, dir, port),
    );
    return { coordinator, workers, dir };
  }
  const start = (p: PodProcess): Proc => startNode(p.program, p.args, p.env, 180_000);
  const report = () => JSON.parse(readFileSync(join(dir, 'report.json'), 'utf8')) as RunReport;

  it('the coordinator and the worker Job, started as their manifests say, train to completion', async () => {
    const { coordinator, workers } = await pods();
    expect(coordinator.args).toEqual(['--launch', 'none', '--resume', '--checkpoint-dir', join(dir, 'checkpoints')]);
    expect(workers.map((w) => [w.program, w.env.TENSORFLEET_WORKER_ID, w.env.TENSORFLEET_COORDINATOR])).toEqual([
      [WORKER, 'worker-0', `127.0.0.1:${coordinator.env.TENSORFLEET_PORT}`],
      [WORKER, 'worker-1', `127.0.0.1:${coordinator.env.TENSORFLEET_PORT}`],
    ]);
    // Pods start in any order: the workers retry until the coordinator listens.
    const procs = [...workers.map(start), start(coordinator)];
    const results = await Promise.all(procs.map((p) => p.result()));
    for (const [i, r] of results.entries()) expect(r.exitCode, `process ${i}:\n${r.stderr.slice(-2000)}`).toBe(0);
    expect(results[2]!.stdout).toMatch(/done: test accuracy \d+\.\d\d%/);
    const r = report();
    expect(r).toMatchObject({ status: 'completed', model: 'mlp', workers: 2, steps: STEPS, samplesPerEpoch: [1024, 1024] });
    expect(r.resumedFromStep).toBeUndefined();
    expect(r.perWorker.map((w) => w.id).sort()).toEqual(['worker-0', 'worker-1']);
    expect(existsSync(join(dir, 'model', 'model.json'))).toBe(true);
  });

  it('a coordinator killed (-9) and started again with the same args resumes from its checkpoint; the workers reconnect by themselves', async () => {
    const { coordinator, workers } = await pods();
    const workerProcs = workers.map(start);
    const first = start(coordinator);
    const checkpoints = join(dir, 'checkpoints');
    await waitFor('the first checkpoint', () => existsSync(checkpoints) && readdirSync(checkpoints).some((f) => f.endsWith('.tfck')), 120_000, 5);
    process.kill(first.pid, 'SIGKILL');
    const killed = await first.result();
    expect(killed.signal).toBe('SIGKILL');
    expect(killed.stdout).not.toMatch(/done:/);
    expect(existsSync(join(dir, 'report.json'))).toBe(false);
    expect(workerProcs.map((w) => w.exited)).toEqual([false, false]);

    const second = start(coordinator);
    const results = await Promise.all([second, ...workerProcs].map((p) => p.result()));
    for (const [i, r] of results.entries()) expect(r.exitCode, `process ${i}:\n${r.stderr.slice(-2000)}`).toBe(0);
    const r = report();
    expect(r).toMatchObject({ status: 'completed', steps: STEPS, samplesPerEpoch: [1024, 1024] });
    expect(r.resumedFromStep).toBeGreaterThan(0);
    expect(r.resumedFromStep).toBeLessThan(STEPS);
    expect(r.perWorker.map((w) => w.id).sort()).toEqual(['worker-0', 'worker-1']);
    for (const w of workerProcs) expect(w.stderr()).toMatch(/coordinator lost; reconnecting|coordinator silent; reconnecting/);
  });

  it('TENSORFLEET_PS_MODE=colocated in the shared settings (docs/kubernetes.md) is all it takes: the worker pods serve the shards and train to completion', async () => {
    const { coordinator, workers } = await pods();
    const colocated = (p: PodProcess): PodProcess => ({ ...p, env: { ...p.env, TENSORFLEET_PS_MODE: 'colocated' } });
    const procs = [...workers.map(colocated).map(start), start(colocated(coordinator))];
    const results = await Promise.all(procs.map((p) => p.result()));
    for (const [i, r] of results.entries()) expect(r.exitCode, `process ${i}:\n${r.stderr.slice(-2000)}`).toBe(0);
    const r = report();
    expect(r).toMatchObject({ status: 'completed', psMode: 'colocated', steps: STEPS, samplesPerEpoch: [1024, 1024], rolledBackSteps: 0 });
    // each worker pod sends the other its half of the slices: half the bytes of the parameter server
    expect(r.bytesPerStepPerWorker.sent).toBeGreaterThan(0);
    for (const w of procs.slice(0, 2)) expect(w.stderr()).toMatch(/serving a co-located parameter-server shard/);
  });
});

describe('worker start-up in a pod', () => {
  const require = createRequire(import.meta.url);
  const nativeInstalled = ['@tensorflow/tfjs-node', '@tensorflow/tfjs-node-gpu'].some((p) => {
    try {
      require.resolve(p);
      return true;
    } catch {
      return false;
    }
  });

  it.skipIf(nativeInstalled)('--backend tensorflow without native TensorFlow exits 1 with one clear line (no silent CPU fallback)', async () => {
    requireBuild();
    const run = await promisify(execFile)('node', [WORKER, '--backend', 'tensorflow', '--coordinator', '127.0.0.1:1', '--log-level', 'silent'], { env: cleanEnv(), timeout: 60_000 }).then(
      () => ({ code: 0, stderr: '' }),
      (err: { code: number; stderr: string }) => ({ code: err.code, stderr: err.stderr }),
    );
    expect(run.code).toBe(1);
    const lines = run.stderr.trim().split('\n');
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(/^worker: backend 'tensorflow' is not available: .*@tensorflow\/tfjs-node/);
  });
});
