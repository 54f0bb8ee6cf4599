/**
 * Bad input: more than 10,000 random and mutated messages to the Attach RPC of a live
 * coordinator. Nothing crashes, the parameter server's weights stay bit-identical, and
 * training afterwards still converges.
 */
import * as grpc from '@grpc/grpc-js';
import { describe, expect, it } from 'vitest';
import { Coordinator } from '../../src/coordinator/trainer.js';
import { tokenMetadata } from '../../src/rpc/auth.js';
import { loadProto, type CoordinatorMessage__Output, type WorkerMessage } from '../../src/rpc/proto.js';
import { TrainingWorker } from '../../src/worker/worker.js';
import { bytesOf } from '../helpers/cluster.js';
import { encodeWorkerMessage, mutate, prng, randomBytes, rawStream, validHello } from '../helpers/fuzz.js';

const TOKEN = 'fuzz-token-0123456789';

/** A structured message with random (often invalid) field values. */
function randomMessage(rand: () => number, size: number): WorkerMessage {
  const pick = <T>(xs: T[]) => xs[Math.floor(rand() * xs.length)]!;
  const num = () => pick([0, 1, -1, 2 ** 31, 2 ** 32 - 1, 2 ** 53, NaN, Infinity, Math.floor(rand() * 1e6)]);
  const str = () => pick(['', 'w0', 'x'.repeat(300), '../../etc', 'ü\u0000z', 'worker-ok']);
  switch (Math.floor(rand() * 4)) {
    case 0:
      return { hello: { workerId: str(), pid: num(), hostname: str(), backend: str(), protocolVersion: pick([0, 1, 2, 99]) } };
    case 1: {
      const total = pick([size * 4, size * 4 + 4, 0, 2 ** 40]);
      return {
        gradient: {
          step: num(), round: num(), sampleCount: num(), loss: num(), computeMs: num(), maxRssBytes: num(),
          chunk: { offset: pick([0, 4, total, 2 ** 33]), totalBytes: total, data: randomBytes(rand, Math.floor(rand() * 2048)) },
        },
      };
    }
    case 2:
      return { heartbeat: { sentAtMs: num() } };
    default:
      return {};
  }
}

describe('fuzzing the Attach RPC', () => {
  it('survives 10,000+ random and mutated messages with the weights unchanged, then trains', async () => {
    const coordinator = new Coordinator({
      workers: 2, minWorkers: 2, maxWorkers: 2, token: TOKEN, backend: 'wasm', launch: 'none', port: 0,
      model: 'mlp', trainLimit: 1024, testLimit: 500, epochs: 3, batchSize: 32, heartbeatTimeoutMs: 3000,
    });
    const workers: TrainingWorker[] = [];
    try {
      const port = await coordinator.start();
      const running = coordinator.run();
      running.catch(() => undefined);
      const initial = Buffer.from(Float32Array.from(coordinator.weights).buffer);
      const size = coordinator.weights.length;
      const rand = prng(20261128);
      const validEncodings = [
        encodeWorkerMessage(validHello('fuzz-valid')),
        encodeWorkerMessage({ heartbeat: { sentAtMs: 5 } }),
        encodeWorkerMessage({ gradient: { step: 0, round: 1, sampleCount: 16, loss: 1, computeMs: 1, maxRssBytes: 1, chunk: { offset: 0, totalBytes: size * 4, data: Buffer.alloc(1024) } } }),
      ];

      // Phase A: sequential streams of random bytes, mutated encodings, random structures, bad tokens.
      let sent = 0;
      const outcomes = new Map<string, number>();
      let stream = 0;
      while (sent < 10_000) {
        const kind = stream++ % 5;
        const n = 1 + Math.floor(rand() * 6);
        const messages: Buffer[] = [];
        if (kind !== 0 && rand() < 0.5) messages.push(encodeWorkerMessage(validHello(`fuzz-${stream % 7}`)));
        for (let i = 0; i < n; i++) {
          if (kind === 0 || kind === 1) messages.push(randomBytes(rand, Math.floor(rand() * 512)));
          else if (kind === 2) messages.push(mutate(rand, validEncodings[Math.floor(rand() * validEncodings.length)]!));
          else messages.push(encodeWorkerMessage(randomMessage(rand, size)));
        }
        const token = kind === 4 && rand() < 0.3 ? (rand() < 0.5 ? 'wrong' : undefined) : TOKEN;
        const outcome = await rawStream(port, token, messages);
        outcomes.set(outcome, (outcomes.get(outcome) ?? 0) + 1);
        sent += messages.length;
      }
      expect(sent).toBeGreaterThanOrEqual(10_000);
      expect(outcomes.get('UNAUTHENTICATED') ?? 0).toBeGreaterThan(0);
      expect(outcomes.get('INVALID_ARGUMENT') ?? 0).toBeGreaterThan(0);
      // Malformed bytes are the client's fault: INVALID_ARGUMENT, never INTERNAL.
      expect(outcomes.get('INTERNAL') ?? 0).toBe(0);
      expect(bytesOf(coordinator.weights).equals(initial)).toBe(true);

      // Phase B: a fuzz member takes part in real steps and answers them with bad gradients.
      workers.push(new TrainingWorker({ coordinator: `127.0.0.1:${port}`, backend: 'wasm', id: 'real-0', token: TOKEN }));
      const runs = [workers[0]!.run()];
      // If an assertion fails first, `finally` closes the workers: keep their rejections handled.
      runs[0]!.catch(() => undefined);
      const proto = loadProto();
      const answers: Array<(step: { step: number; round: number; n: number }) => WorkerMessage[]> = [
        (s) => [{ gradient: { step: s.step, round: s.round + 1000, sampleCount: s.n, loss: 1, computeMs: 1, maxRssBytes: 0, chunk: { offset: 0, totalBytes: size * 4, data: Buffer.alloc(size * 4) } } }],
        (s) => [{ gradient: { step: s.step, round: s.round, sampleCount: s.n + 1, loss: 1, computeMs: 1, maxRssBytes: 0, chunk: { offset: 0, totalBytes: size * 4, data: Buffer.alloc(8) } } }],
        (s) => [{ gradient: { step: s.step, round: s.round, sampleCount: s.n, loss: 1, computeMs: 1, maxRssBytes: 0, chunk: { offset: 8, totalBytes: size * 4, data: Buffer.alloc(8) } } }],
        (s) => [{ gradient: { step: s.step, round: s.round, sampleCount: s.n, loss: 1, computeMs: 1, maxRssBytes: 0, chunk: { offset: 0, totalBytes: size * 4, data: Buffer.alloc(size * 4 + 4) } } }],
        (s) => {
          const nan = new Float32Array(size).fill(0.001);
          nan[size >> 1] = NaN;
          return [{ gradient: { step: s.step, round: s.round, sampleCount: s.n, loss: 1, computeMs: 1, maxRssBytes: 0, chunk: { offset: 0, totalBytes: size * 4, data: Buffer.from(nan.buffer) } } }];
        },
        (s) => {
          const inf = new Float32Array(size);
          inf[3] = -Infinity;
          return [{ gradient: { step: s.step, round: s.round, sampleCount: s.n, loss: 1, computeMs: 1, maxRssBytes: 0, chunk: { offset: 0, totalBytes: size * 4, data: Buffer.from(inf.buffer) } } }];
        },
      ];
      const codes: string[] = [];
      for (const answer of answers) {
        const client = new proto.tensorfleet.v1.Coordinator(`127.0.0.1:${port}`, grpc.credentials.createInsecure());
        const call = client.Attach(tokenMetadata(TOKEN));
        call.write(validHello('fuzz-member'));
        const code = await new Promise<string>((resolve) => {
          call.on('data', (msg: CoordinatorMessage__Output) => {
            if (msg.kind === 'step') for (const m of answer({ step: msg.step!.step, round: msg.step!.round, n: msg.step!.indices.length })) call.write(m);
          });
          call.on('error', (e: grpc.ServiceError) => resolve(grpc.status[e.code] ?? String(e.code)));
          call.on('end', () => resolve('ok'));
          setTimeout(() => resolve('timeout'), 30_000).unref();
        });
        call.cancel();
        client.close();
        codes.push(code);
      }
      // A gradient for another round is dropped as stale; that member then stays silent and is
      // removed by the heartbeat timeout. Every other bad answer ends the stream at once.
      expect(codes).toEqual(['DEADLINE_EXCEEDED', 'INVALID_ARGUMENT', 'INVALID_ARGUMENT', 'INVALID_ARGUMENT', 'INVALID_ARGUMENT', 'INVALID_ARGUMENT']);
      expect(bytesOf(coordinator.weights).equals(initial)).toBe(true);

      // Phase C: with a second real worker, training goes on and converges.
      workers.push(new TrainingWorker({ coordinator: `127.0.0.1:${port}`, backend: 'wasm', id: 'real-1', token: TOKEN }));
      runs.push(workers[1]!.run());
      runs[1]!.catch(() => undefined);
      const report = await running;
      await Promise.all(runs);
      expect(report.status).toBe('completed');
      expect(report.rejectedContributions).toBe(2);
      expect(report.samplesPerEpoch).toEqual([1024, 1024, 1024]);
      expect(report.staleGradients).toBeGreaterThanOrEqual(1);
      expect(report.heartbeatTimeouts).toBeGreaterThanOrEqual(1);
      console.log('fuzz: test accuracy after training', report.testAccuracy, 'outcomes', JSON.stringify([...outcomes]));
      expect(report.testAccuracy).toBeGreaterThan(0.75);
    } finally {
      for (const w of workers) w.close();
      await coordinator.close();
    }
  }, 300_000);
});
