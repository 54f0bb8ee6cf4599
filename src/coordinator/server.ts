/**
 * The coordinator's gRPC service: admits workers on their Attach stream (Hello -> Welcome),
 * routes their gradient chunks to their sessions, and removes them when the stream ends.
 */
import * as grpc from '@grpc/grpc-js';
import { TokenVerifier } from '../rpc/auth.js';
import type { GradDtype } from '../rpc/tensor-codec.js';
import { serverCredentials, type TlsFiles } from '../rpc/tls.js';
import { loadProto, PROTOCOL_VERSION, type WorkerMessage__Output } from '../rpc/proto.js';
import type { Logger } from '../telemetry/logger.js';
import type { JobConfig } from '../rpc/generated/tensorfleet/v1/JobConfig.js';
import { AdmissionError, ProtocolError } from './errors.js';
import { HealthService } from './health.js';
import type { Membership } from './membership.js';
import { failCall, WorkerSession, type AttachCall } from './worker-session.js';
import { raiseServerWindows, serverOptions } from '../rpc/flow-control.js';
import { malformed, tolerantService } from '../rpc/tolerant.js';
import { shutdownServer } from '../rpc/shutdown.js';

/** Worker names: what fits a hostname or a Kubernetes pod name, and nothing else. */
export const WORKER_ID = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;


export interface ServerSettings {
  jobId: string;
  jobConfig: JobConfig;
  modelSize: number;
  chunkBytes: number;
  maxWorkers: number;
  heartbeatTimeoutMs: number;
  token: string | undefined;
  tls: TlsFiles;
  gradDtype: GradDtype;
  /** Parameter-server shard processes workers exchange weights and gradients with (none: this process). */
  shards?: { address: string; offset: number; length: number }[];
  /** Co-located shards: every worker serves one shard and reports its port (ShardReady). */
  colocated?: boolean;
}

/** `HOST:PORT` of a peer's shard, from the address its Attach stream comes from (grpc-js' getPeer()). */
export function shardAddressOf(peer: string, port: number): string {
  const cut = peer.lastIndexOf(':');
  let host = cut > 0 ? peer.slice(0, cut) : peer;
  if (host.startsWith('[') && host.endsWith(']')) host = host.slice(1, -1);
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(host);
  if (mapped) host = mapped[1]!;
  return host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`;
}

export class CoordinatorServer {
  private readonly server = new grpc.Server(serverOptions());
  port = 0;
  /** False once training ended: new workers are turned away. */
  accepting = true;
  private readonly verifier: TokenVerifier;
  /** grpc.health.v1.Health on the same port, for Kubernetes' grpc probes. */
  private readonly health: HealthService;
  private monitor: NodeJS.Timeout | undefined;
  /** Workers removed for silence, for the report. */
  timedOut = 0;
  /** Calls ended for protocol violations or refused admission. */
  rejected = 0;

  constructor(
    private readonly settings: ServerSettings,
    private readonly membership: Membership,
    private readonly log: Logger,
  ) {
    this.verifier = new TokenVerifier(settings.token);
    const service = loadProto().tensorfleet.v1.Coordinator.service;
    // Bytes that do not parse reach the handler as a 'malformed' message, answered INVALID_ARGUMENT.
    this.server.addService(tolerantService(service), {
      Attach: (call: AttachCall) => this.attach(call),
    });
    this.health = new HealthService(this.server);
  }

  async start(host: string, port: number): Promise<number> {
    raiseServerWindows(this.server, 'beforeBind');
    this.port = await new Promise<number>((resolve, reject) => {
      this.server.bindAsync(`${host.includes(':') ? `[${host}]` : host}:${port}`, serverCredentials(this.settings.tls), (err, bound) =>
        err ? reject(err) : resolve(bound),
      );
    });
    raiseServerWindows(this.server, 'afterBind');
    this.startLivenessMonitor();
    return this.port;
  }

  /** Draining or finished: refuse new workers. */
  setServing(serving: boolean): void {
    this.accepting = serving;
    this.health.setServing(serving);
  }

  get heartbeatIntervalMs(): number {
    return Math.max(50, Math.floor(this.settings.heartbeatTimeoutMs / 4));
  }

  /**
   * Sends heartbeats and removes members silent for longer than the timeout. When this
   * process itself was blocked (a long evaluation), nobody is blamed: clocks restart.
   */
  private startLivenessMonitor(): void {
    const interval = this.heartbeatIntervalMs;
    let lastTick = performance.now();
    this.monitor = setInterval(() => {
      const now = performance.now();
      const blocked = now - lastTick > 2 * interval;
      lastTick = now;
      for (const session of this.membership.ranked()) {
        if (blocked) {
          session.lastSeenMs = now;
          continue;
        }
        if (session.isSilent(now, this.settings.heartbeatTimeoutMs)) {
          const seconds = ((now - session.lastSeenMs) / 1000).toFixed(1);
          this.log.warn({ workerId: session.id, silentSeconds: seconds }, 'no heartbeat; removing worker');
          this.timedOut++;
          session.fail(grpc.status.DEADLINE_EXCEEDED, `no heartbeat for ${seconds} s`);
          this.membership.remove(session, `no heartbeat for ${seconds} s`);
        } else {
          session.send({ heartbeat: { sentAtMs: Date.now() } });
        }
      }
    }, interval);
    this.monitor.unref();
  }

  /** Stops accepting calls; waits briefly for streams to end, then cuts the rest. */
  async close(graceMs = 2000): Promise<void> {
    this.accepting = false;
    clearInterval(this.monitor);
    await shutdownServer(this.server, graceMs);
  }

  private attach(call: AttachCall): void {
    let session: WorkerSession | undefined;
    /** Set once the call is being ended with an error: nothing it sends afterwards counts. */
    let dead = false;
    const drop = (reason: string) => {
      if (!session) return;
      session.closed = true;
      this.membership.remove(session, reason);
    };
    const denied = this.verifier.check(call.metadata);
    if (denied) {
      this.log.warn({ peer: call.getPeer(), reason: denied }, 'unauthenticated attach refused');
      dead = true;
      failCall(call, grpc.status.UNAUTHENTICATED, denied);
      return;
    }
    call.on('data', (msg: WorkerMessage__Output) => {
      if (dead || session?.closed) return;
      if (session) session.lastSeenMs = performance.now();
      try {
        const unparsed = malformed(msg);
        if (unparsed !== undefined) throw new ProtocolError(`malformed message: ${unparsed}`);
        if (!session) {
          session = this.admit(call, msg);
          return;
        }
        switch (msg.kind) {
          case 'gradient':
            session.onGradient(msg.gradient!);
            break;
          case 'heartbeat':
            session.onHeartbeat();
            break;
          case 'shardListening': {
            const port = msg.shardListening!.port;
            if (!this.settings.colocated) throw new ProtocolError('shard_listening, but this job does not co-locate shards');
            if (!(port >= 1 && port <= 65535)) throw new ProtocolError(`shard_listening names port ${port}`);
            session.shardAddress = shardAddressOf(call.getPeer(), port);
            this.log.info({ workerId: session.id, shard: session.shardAddress }, 'worker serves a shard');
            this.membership.emit('shardReady', session);
            break;
          }
          default:
            throw new ProtocolError(`unexpected '${msg.kind ?? 'empty'}' message after hello`);
        }
      } catch (err) {
        dead = true;
        const message = (err as Error).message;
        const code = err instanceof AdmissionError ? err.code : grpc.status.INVALID_ARGUMENT;
        this.rejected++;
        this.log.warn({ workerId: session?.id, code: grpc.status[code], err: message }, 'rejecting worker');
        if (session) {
          session.fail(code, message);
          drop(`protocol error: ${message}`);
        } else {
          failCall(call, code, message);
        }
      }
    });
    call.on('end', () => {
      drop('stream ended');
      if (!dead) call.end();
    });
    call.on('error', (err) => drop(`stream error: ${err.message}`));
    call.on('close', () => drop('stream closed'));
  }

  private admit(call: AttachCall, msg: WorkerMessage__Output): WorkerSession {
    if (msg.kind !== 'hello' || !msg.hello) throw new AdmissionError(grpc.status.INVALID_ARGUMENT, 'the first message must be hello');
    const hello = msg.hello;
    if (hello.hostname.length > 255 || hello.backend.length > 64 || hello.device.length > 256) throw new AdmissionError(grpc.status.INVALID_ARGUMENT, 'hello fields too long');
    if (hello.protocolVersion !== PROTOCOL_VERSION) {
      throw new AdmissionError(grpc.status.FAILED_PRECONDITION, `protocol version ${hello.protocolVersion} is not supported; expected ${PROTOCOL_VERSION}`);
    }
    if (!this.accepting) throw new AdmissionError(grpc.status.UNAVAILABLE, 'training has ended');
    if (!WORKER_ID.test(hello.workerId)) {
      throw new AdmissionError(grpc.status.INVALID_ARGUMENT, `worker id '${hello.workerId.slice(0, 80)}' must match ${WORKER_ID}`);
    }
    const id = hello.workerId;
    // A worker that reconnects under its name replaces its old stream (which may not have
    // noticed it is dead yet); that also aborts any step the old stream was part of.
    const previous = this.membership.get(id);
    if (previous) {
      this.log.warn({ workerId: id }, 'worker reconnected; dropping its previous stream');
      previous.fail(grpc.status.ABORTED, 'replaced by a newer connection of the same worker');
      this.membership.remove(previous, 'replaced by a newer connection');
    }
    if (this.membership.size >= this.settings.maxWorkers) {
      throw new AdmissionError(grpc.status.RESOURCE_EXHAUSTED, `the job already has its ${this.settings.maxWorkers} workers (--max-workers)`);
    }
    const seq = this.membership.nextJoinSeq();
    const session = new WorkerSession(id, hello.pid, hello.hostname, hello.backend, hello.device, seq, call, this.settings.modelSize, this.settings.gradDtype);
    session.send({
      welcome: {
        jobId: this.settings.jobId,
        workerId: id,
        config: this.settings.jobConfig,
        chunkBytes: this.settings.chunkBytes,
        heartbeatIntervalMs: this.heartbeatIntervalMs,
        shards: this.settings.shards ?? [],
        hostShard: this.settings.colocated ?? false,
      },
    });
    this.log.info({ workerId: id, pid: hello.pid, host: hello.hostname, backend: hello.backend, device: hello.device }, 'worker joined');
    this.membership.add(session);
    return session;
  }
}
