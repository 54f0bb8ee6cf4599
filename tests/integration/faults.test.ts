/**
 * Faults in one process, over loopback gRPC: workers that join a running job (up to
 * maxWorkers, and no further), a worker that leaves mid-run, and a client that says Hello and
 * then goes silent. Every run must still use every sample exactly once per epoch.
 */
import * as grpc from '@grpc/grpc-js';
import { describe, expect, it, vi } from 'vitest';
import { WorkerSession } from '../../src/coordinator/worker-session.js';
import { tokenMetadata } from '../../src/rpc/auth.js';
import { loadProto, PROTOCOL_VERSION, type CoordinatorMessage__Output } from '../../src/rpc/proto.js';
import { CoordinatorLostError } from '../../src/worker/errors.js';
import type { WorkerResult } from '../../src/worker/worker.js';
import { TEST_TOKEN } from '../helpers/cluster.js';
import { inProcessJob } from '../helpers/in-process-job.js';
import { waitFor } from '../helpers/process.js';

const job = inProcessJob();
const newCoordinator = job.coordinator;
const newWorker = job.worker;

describe('elastic membership (in process)', () => {
  // With co-located shards the group is re-formed from a snapshot when a worker joins: nothing is redone.
  it.each(['in-process', 'colocated'])('a third worker joins a running 2-worker job (maxWorkers 3, %s), takes part, and no sample is lost or repeated', async (psMode) => {
    const trainLimit = 2048;
    const worldSizes: number[] = [];
    let third: Promise<WorkerResult> | undefined;
    let port = 0;
    const c = newCoordinator({ workers: 2, maxWorkers: 3, trainLimit, batchSize: 8, epochs: 1, psMode }, (e) => {
      worldSizes.push(e.worldSize);
      if (e.step >= 1 && !third) third = newWorker(port, 'w2').run();
    });
    port = await c.start();
    const runs = [newWorker(port, 'w0').run(), newWorker(port, 'w1').run()];
    const report = await c.run();
    const results = await Promise.all([...runs, third!]);

    expect(report.status).toBe('completed');
    expect(report.samplesPerEpoch).toEqual([trainLimit]);
    expect(results.map((r) => r.completed)).toEqual([true, true, true]);
    expect(report.perWorker.map((w) => w.id).sort()).toEqual(['w0', 'w1', 'w2']);
    const w2 = report.perWorker.find((w) => w.id === 'w2')!;
    expect(w2.steps).toBeGreaterThan(0);
    expect(worldSizes[0]).toBe(2);
    expect(worldSizes).toContain(3);
    expect(report.membershipChanges).toBeGreaterThanOrEqual(1);
    // every sample of the epoch was trained once: the committed steps add up to the set
    expect(report.epochHistory[0]!.samples).toBe(trainLimit);
    expect(report.rolledBackSteps).toBe(0);
  });

  it('a worker beyond maxWorkers is refused with RESOURCE_EXHAUSTED (after retrying for its connect timeout)', async () => {
    const c = newCoordinator({ workers: 2, maxWorkers: 3, trainLimit: 256, batchSize: 8 });
    const port = await c.start();
    // Admission happens as soon as the server listens: fill the job before training starts.
    const runs = ['w0', 'w1', 'w2'].map((id) => newWorker(port, id).run());
    await waitFor('three members', () => c.membership.size === 3, 60_000);

    const fourth = newWorker(port, 'w3', { connectTimeoutMs: 1000 }).run();
    const error = await fourth.then(
      () => undefined,
      (err: unknown) => err,
    );
    expect(error).toBeInstanceOf(CoordinatorLostError);
    expect((error as Error).message).toMatch(/RESOURCE_EXHAUSTED/);
    expect((error as Error).message).toMatch(/max-workers/);
    expect(c.membership.has('w3')).toBe(false);

    const report = await c.run();
    await Promise.all(runs);
    expect(report.status).toBe('completed');
    expect(report.samplesPerEpoch).toEqual([256]);
    expect(report.perWorker.map((w) => w.id).sort()).toEqual(['w0', 'w1', 'w2']);
  });
});

describe('workers leaving (in process)', () => {
  it('a worker whose signal aborts mid-run leaves; the others finish the epochs with every sample exactly once', async () => {
    const trainLimit = 1024;
    const { report, results } = await job.runWithLeaver({ workers: 3, minWorkers: 1, trainLimit, batchSize: 8, epochs: 2 }, 2);
    const [r0, r1, r2] = results;

    expect(report.status).toBe('completed');
    expect(report.samplesPerEpoch).toEqual([trainLimit, trainLimit]);
    expect(report.membershipChanges).toBeGreaterThanOrEqual(1);
    expect(report.abortedSteps).toBeGreaterThanOrEqual(0);
    expect(r0!.completed).toBe(true);
    expect(r1!.completed).toBe(true);
    expect(r2!.completed).toBe(false);
    expect(r2!.reason).toMatch(/left/);
    const perWorker = Object.fromEntries(report.perWorker.map((w) => [w.id, w]));
    expect(perWorker.w2!.steps).toBeLessThan(report.steps);
    // perWorker counts gradients received, including those of a step aborted and redone
    expect(perWorker.w0!.steps).toBeGreaterThanOrEqual(report.steps);
    expect(perWorker.w0!.steps).toBeLessThanOrEqual(report.steps + report.abortedSteps);
    // samples computed by workers cover the epochs (more if an aborted step was redone)
    expect(report.perWorker.reduce((a, w) => a + w.samples, 0)).toBeGreaterThanOrEqual(2 * trainLimit);
  });

  it('a worker with short steps announces the first step of its stream only: far fewer heartbeats than steps, and none removed', async () => {
    const heartbeats = vi.spyOn(WorkerSession.prototype, 'onHeartbeat');
    job.defer(() => heartbeats.mockRestore());
    const c = newCoordinator({ workers: 1, trainLimit: 1024, batchSize: 16 }); // 64 steps, heartbeat interval 2.5 s
    const port = await c.start();
    const run = newWorker(port, 'w0').run();
    const report = await c.run();
    expect((await run).completed).toBe(true);
    expect(report.steps).toBe(64);
    expect(report.heartbeatTimeouts).toBe(0);
    // The first step's, plus the periodic ones of the worker's timer.
    expect(heartbeats.mock.calls.length).toBeGreaterThanOrEqual(1);
    expect(heartbeats.mock.calls.length).toBeLessThanOrEqual(2 + Math.ceil(report.wallSeconds / 2.5));
  });

  it('a client that sends Hello and then nothing is removed after heartbeatTimeoutMs; the run completes with the real worker', async () => {
    const trainLimit = 512;
    const c = newCoordinator({ workers: 2, minWorkers: 1, maxWorkers: 2, heartbeatTimeoutMs: 600, trainLimit, batchSize: 16 });
    const port = await c.start();

    const proto = loadProto();
    const client = new proto.tensorfleet.v1.Coordinator(`127.0.0.1:${port}`, grpc.credentials.createInsecure());
    job.defer(() => client.close());
    const call = client.Attach(tokenMetadata(TEST_TOKEN));
    job.defer(() => call.cancel());
    const kinds: string[] = [];
    call.on('data', (m: CoordinatorMessage__Output) => kinds.push(m.kind ?? ''));
    const ended = new Promise<grpc.ServiceError | undefined>((resolve) => {
      call.on('error', (err: grpc.ServiceError) => resolve(err));
      call.on('end', () => resolve(undefined));
    });
    call.write({ hello: { workerId: 'silent', pid: 1, hostname: 'nowhere', backend: 'none', protocolVersion: PROTOCOL_VERSION } });
    await waitFor('the silent client to be admitted', () => c.membership.has('silent'), 30_000);

    const real = newWorker(port, 'w0').run();
    const report = await c.run();
    const result = await real;
    const end = await ended;

    expect(report.status).toBe('completed');
    expect(result.completed).toBe(true);
    expect(report.heartbeatTimeouts).toBeGreaterThanOrEqual(1);
    expect(report.samplesPerEpoch).toEqual([trainLimit]);
    expect(kinds[0]).toBe('welcome');
    expect(end?.code).toBe(grpc.status.DEADLINE_EXCEEDED);
    expect(end?.details).toMatch(/no heartbeat/);
    const silent = report.perWorker.find((w) => w.id === 'silent')!;
    expect(silent.steps).toBe(0);
    const realSamples = report.perWorker.filter((w) => w.id === 'w0').reduce((n, w) => n + w.samples, 0);
    expect(realSamples).toBeGreaterThanOrEqual(trainLimit);
  });
});
