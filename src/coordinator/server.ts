/**
 * The coordinator's gRPC service: admits workers on their Attach stream (Hello -> Welcome),
 * routes their gradient chunks to their sessions, and removes them when the stream ends.
 */
import * as grpc from '@grpc/grpc-js';
import { loadProto, PROTOCOL_VERSION, type WorkerMessage__Output } from '../rpc/proto.js';
import type { Logger } from '../telemetry/logger.js';
import type { JobConfig } from '../rpc/generated/tensorfleet/v1/JobConfig.js';
import { AdmissionError, ProtocolError } from './errors.js';
import type { Membership } from './membership.js';
import { WorkerSession, type AttachCall } from './worker-session.js';

export interface ServerSettings {
  jobId: string;
  jobConfig: JobConfig;
  modelSize: number;
  chunkBytes: number;
  maxWorkers: number;
}

export class CoordinatorServer {
  private readonly server = new grpc.Server({
    'grpc.max_receive_message_length': 4 * 1024 * 1024,
    'grpc.max_send_message_length': 4 * 1024 * 1024,
  });
  port = 0;
  /** False once training ended: new workers are turned away. */
  accepting = true;

  constructor(
    private readonly settings: ServerSettings,
    private readonly membership: Membership,
    private readonly log: Logger,
  ) {
    const proto = loadProto();
    this.server.addService(proto.tensorfleet.v1.Coordinator.service, {
      Attach: (call: AttachCall) => this.attach(call),
    });
  }

  async start(host: string, port: number): Promise<number> {
    this.port = await new Promise<number>((resolve, reject) => {
      this.server.bindAsync(`${host.includes(':') ? `[${host}]` : host}:${port}`, grpc.ServerCredentials.createInsecure(), (err, bound) =>
        err ? reject(err) : resolve(bound),
      );
    });
    return this.port;
  }

  /** Stops accepting calls; waits briefly for streams to end, then cuts the rest. */
  async close(graceMs = 2000): Promise<void> {
    this.accepting = false;
    await new Promise<void>((resolve) => {
      const timer = setTimeout(() => {
        this.server.forceShutdown();
        resolve();
      }, graceMs);
      timer.unref();
      this.server.tryShutdown(() => {
        clearTimeout(timer);
        resolve();
      });
    });
  }

  private attach(call: AttachCall): void {
    let session: WorkerSession | undefined;
    const drop = (reason: string) => {
      if (!session) return;
      session.closed = true;
      this.membership.remove(session, reason);
    };
    call.on('data', (msg: WorkerMessage__Output) => {
      try {
        if (!session) {
          session = this.admit(call, msg);
          return;
        }
        switch (msg.kind) {
          case 'gradient':
            session.onGradient(msg.gradient!);
            break;
          case 'heartbeat':
            break;
          default:
            throw new ProtocolError(`unexpected '${msg.kind ?? 'empty'}' message after hello`);
        }
      } catch (err) {
        const code = err instanceof AdmissionError ? err.code : grpc.status.INVALID_ARGUMENT;
        this.log.warn({ workerId: session?.id, err: (err as Error).message }, 'rejecting worker');
        if (session) {
          session.fail(code, (err as Error).message);
          drop(`protocol error: ${(err as Error).message}`);
        } else {
          call.destroy(Object.assign(new Error((err as Error).message), { code, details: (err as Error).message }));
        }
      }
    });
    call.on('end', () => {
      drop('stream ended');
      call.end();
    });
    call.on('error', (err) => drop(`stream error: ${err.message}`));
    call.on('close', () => drop('stream closed'));
  }

  private admit(call: AttachCall, msg: WorkerMessage__Output): WorkerSession {
    if (msg.kind !== 'hello' || !msg.hello) throw new AdmissionError(grpc.status.INVALID_ARGUMENT, 'the first message must be hello');
    const hello = msg.hello;
    if (hello.protocolVersion !== PROTOCOL_VERSION) {
      throw new AdmissionError(grpc.status.FAILED_PRECONDITION, `protocol version ${hello.protocolVersion} is not supported; expected ${PROTOCOL_VERSION}`);
    }
    if (!this.accepting) throw new AdmissionError(grpc.status.UNAVAILABLE, 'training has ended');
    if (this.membership.size >= this.settings.maxWorkers) {
      throw new AdmissionError(grpc.status.RESOURCE_EXHAUSTED, `the job already has its ${this.settings.maxWorkers} workers`);
    }
    const seq = this.membership.nextJoinSeq();
    const id = hello.workerId || `worker-${seq}`;
    if (this.membership.has(id)) throw new AdmissionError(grpc.status.ALREADY_EXISTS, `a worker named '${id}' is already attached`);
    const session = new WorkerSession(id, hello.pid, hello.hostname, hello.backend, seq, call, this.settings.modelSize);
    session.send({ welcome: { jobId: this.settings.jobId, workerId: id, config: this.settings.jobConfig, chunkBytes: this.settings.chunkBytes } });
    this.log.info({ workerId: id, pid: hello.pid, host: hello.hostname, backend: hello.backend }, 'worker joined');
    this.membership.add(session);
    return session;
  }
}
