/**
 * The standard gRPC health service on the coordinator's port, as the kubelet's native `grpc`
 * probes use it: no token, plaintext; SERVING while workers are admitted, NOT_SERVING for
 * readiness once draining, and the 'liveness' service SERVING throughout.
 */
import * as grpc from '@grpc/grpc-js';
import { service as healthService } from 'grpc-health-check';
import { afterEach, describe, expect, it } from 'vitest';
import { COORDINATOR_SERVICE, LIVENESS_SERVICE } from '../../src/coordinator/health.js';
import { Coordinator } from '../../src/coordinator/trainer.js';
import { TEST_TOKEN } from '../helpers/cluster.js';

type HealthClient = grpc.Client & {
  Check(request: { service: string }, callback: (err: grpc.ServiceError | null, response?: { status: string }) => void): void;
};
const HealthClient = grpc.makeGenericClientConstructor(healthService as unknown as grpc.ServiceDefinition, 'Health') as unknown as new (
  address: string,
  credentials: grpc.ChannelCredentials,
) => HealthClient;

let coordinator: Coordinator | undefined;
let client: HealthClient | undefined;
afterEach(async () => {
  client?.close();
  await coordinator?.close();
  coordinator = client = undefined;
});

function check(service: string): Promise<string> {
  return new Promise((resolve, reject) =>
    client!.Check({ service }, (err, response) => (err ? reject(err) : resolve(String(response!.status)))),
  );
}

async function statuses(): Promise<Record<string, string>> {
  return { '': await check(''), [COORDINATOR_SERVICE]: await check(COORDINATOR_SERVICE), [LIVENESS_SERVICE]: await check(LIVENESS_SERVICE) };
}

describe('gRPC health service', () => {
  it('answers SERVING without a token, then NOT_SERVING (readiness) after drain while liveness stays SERVING', async () => {
    coordinator = new Coordinator({ launch: 'none', port: 0, token: TEST_TOKEN, backend: 'wasm', model: 'mlp', trainLimit: 256, testLimit: 64, workers: 2 });
    const port = await coordinator.start();
    client = new HealthClient(`127.0.0.1:${port}`, grpc.credentials.createInsecure());
    expect(await statuses()).toEqual({ '': 'SERVING', [COORDINATOR_SERVICE]: 'SERVING', [LIVENESS_SERVICE]: 'SERVING' });
    await expect(check('no.such.Service')).rejects.toMatchObject({ code: grpc.status.NOT_FOUND });

    // Waiting for its workers, as a pod does before the Job's pods attach; then SIGTERM's drain.
    const run = coordinator.run();
    coordinator.drain();
    expect(await statuses()).toEqual({ '': 'NOT_SERVING', [COORDINATOR_SERVICE]: 'NOT_SERVING', [LIVENESS_SERVICE]: 'SERVING' });
    const report = await run;
    expect(report.status).toBe('stopped');
    // Still answering until the process closes the server.
    expect(await check('')).toBe('NOT_SERVING');
  });
});
