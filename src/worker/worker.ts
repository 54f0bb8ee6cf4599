/**
 * A worker: attaches to the coordinator with one long-lived stream, then loops: take the
 * weights it is sent, compute the gradient of the mean loss over the step's slice, send it
 * back in chunks. It keeps nothing durable: when the coordinator goes away it reconnects (with
 * capped, jittered backoff, on retryable codes only) and is sent the weights again.
 */
import { hostname } from 'node:os';
import * as grpc from '@grpc/grpc-js';
import { gatherBatch } from '../data/batch.js';
import { loadMnist, type LabeledImages } from '../data/mnist.js';
import { selectBackend, type BackendInfo } from '../model/backend.js';
import { GradientComputer } from '../model/gradients.js';
import { assertSameLayout } from '../model/variables.js';
import { tokenMetadata } from '../rpc/auth.js';
import { Backoff, isRetryable, sleep } from '../rpc/backoff.js';
import { ChunkAssembler, splitIntoChunks } from '../rpc/chunks.js';
import { encodeGradient, isGradDtype, type GradDtype } from '../rpc/tensor-codec.js';
import { loadProto, PROTOCOL_VERSION, type CoordinatorMessage__Output, type JobConfig__Output, type WorkerMessage } from '../rpc/proto.js';
import { channelCredentials } from '../rpc/tls.js';
import { silentLogger, type Logger } from '../telemetry/logger.js';
import { CoordinatorLostError, RejectedError, SupersededError, UnexpectedMessageError } from './errors.js';
import { compileWorkerOptions, type CompiledWorkerOptions, type WorkerOptions } from './options.js';
import { ShardLinks } from './shard-links.js';
import { startingHeartbeatNeeded } from './heartbeat.js';
import { clientChannelOptions } from '../rpc/flow-control.js';
import { ShardServer } from '../ps/shard-server.js';

export interface WorkerResult {
  /** True when the coordinator finished training; false when this worker left (signal). */
  completed: boolean;
  reason: string;
  steps: number;
}

type CoordinatorOutputWelcome = CoordinatorMessage__Output['welcome'];
type Duplex = grpc.ClientDuplexStream<WorkerMessage, CoordinatorMessage__Output>;
type Outcome = { kind: 'stopped'; completed: boolean; reason: string; welcomed: boolean } | { kind: 'lost'; code: grpc.status; details: string; welcomed: boolean };

interface Job {
  config: JobConfig__Output;
  computer: GradientComputer;
  train: LabeledImages;
  weights: ChunkAssembler;
  gradient: Float32Array;
  gradDtype: GradDtype;
  /** The gradient in its wire encoding when it is not float32. */
  encoded: Uint16Array | undefined;
  chunkBytes: number;
  version: number;
  /** Streams to the parameter-server shards (undefined: the coordinator sends the weights). */
  shards: ShardLinks | undefined;
}

/**
 * Where a worker's co-located shard listens. The coordinator hands the other workers the
 * address this worker's stream comes from, so the shard must listen where that is: on the
 * loopback when the coordinator is reached there (both families for `localhost`, which may
 * resolve to either), else on every interface, IPv6 and IPv4 (`::`), or IPv4 only (`0.0.0.0`)
 * on a host without IPv6.
 */
export function shardBindHosts(coordinator: string): { hosts: string[]; fallback?: string } {
  if (/^127\./.test(coordinator)) return { hosts: ['127.0.0.1'] };
  if (/^\[::1\]:/.test(coordinator)) return { hosts: ['::1'] };
  if (/^localhost:/i.test(coordinator)) return { hosts: ['127.0.0.1', '::1'] };
  return { hosts: ['::'], fallback: '0.0.0.0' };
}

export class TrainingWorker {
  readonly options: CompiledWorkerOptions;
  private readonly log: Logger;
  private job: Job | undefined;
  private backend: BackendInfo | undefined;
  private call: Duplex | undefined;
  private steps = 0;
  private lastEncodeMs = 0;
  /** This process's CPU time (µs) when it last reported it (with a Gradient) or joined a job. */
  private cpuMicrosReported = 0;
  /**
   * For skipping the "starting" heartbeat (startingHeartbeatNeeded, heartbeat.ts): the Attach
   * stream's heartbeat interval, the compute time of this stream's previous step (undefined
   * before its first), and when this worker last wrote a heartbeat or gradient on it.
   */
  private heartbeatIntervalMs = 0;
  private lastComputeMs: number | undefined;
  private lastReportMs = 0;
  /** The stream the silence watchdog cancelled (its CANCELLED status means "reconnect"). */
  private silencedCall: Duplex | undefined;
  private closed = false;
  /** Co-located shards (Welcome.host_shard): the ParameterShard this worker serves. */
  private shardServer: ShardServer | undefined;

  constructor(options: WorkerOptions, log: Logger = silentLogger) {
    this.options = compileWorkerOptions(options);
    this.log = log.child({ component: 'worker', workerId: this.options.id });
  }

  /** Trains until the coordinator says training is complete; leaves cleanly when `signal` aborts. */
  async run(signal?: AbortSignal): Promise<WorkerResult> {
    this.backend = await selectBackend(this.options.backend);
    const { name: backend, device, adapter, passedOver } = this.backend;
    this.log.info({ backend, device, adapter, passedOver }, 'backend selected');
    if (adapter?.software) this.log.warn({ adapter: adapter.name }, 'the WebGPU adapter is a software device (CPU emulation): correct but slow');
    const backoff = new Backoff({ initialMs: 100, maxMs: 5000 });
    let giveUpAt = performance.now() + this.options.connectTimeoutMs;
    const left = () => ({ completed: false, reason: 'left on request', steps: this.steps });
    try {
      for (;;) {
        if (signal?.aborted) return left();
        const outcome = await this.session(signal);
        if (signal?.aborted) return left();
        if (outcome.welcomed) {
          backoff.reset();
          giveUpAt = performance.now() + this.options.connectTimeoutMs;
        }
        if (outcome.kind === 'stopped') {
          this.log.info({ reason: outcome.reason, steps: this.steps }, 'stopped by the coordinator');
          if (outcome.completed) return { completed: true, reason: outcome.reason, steps: this.steps };
        } else {
          const what = `${grpc.status[outcome.code] ?? outcome.code}: ${outcome.details}`;
          if (!isRetryable(outcome.code)) throw new RejectedError(outcome.code, `coordinator at ${this.options.coordinator} refused this worker (${what})`);
          if (performance.now() > giveUpAt) {
            throw new CoordinatorLostError(`coordinator at ${this.options.coordinator} unreachable for ${Math.round(this.options.connectTimeoutMs / 1000)} s (${what})`);
          }
          this.log.warn({ code: grpc.status[outcome.code], details: outcome.details }, 'coordinator lost; reconnecting');
        }
        try {
          await sleep(backoff.next(), signal);
        } catch {
          return left();
        }
      }
    } finally {
      this.close();
    }
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    for (const cleanup of [() => this.call?.cancel(), () => this.job?.shards?.close(), () => this.job?.computer.dispose(), () => this.shardServer?.close()]) {
      try {
        cleanup();
      } catch (err) {
        this.log.warn({ err: (err as Error).message }, 'cleanup step failed');
      }
    }
  }

  /** One Attach stream, from Hello to its end. Never throws for stream errors: it reports them. */
  private async session(signal?: AbortSignal): Promise<Outcome> {
    const proto = loadProto();
    const client = new proto.tensorfleet.v1.Coordinator(this.options.coordinator, channelCredentials(this.options.tls), clientChannelOptions());
    const call: Duplex = client.Attach(tokenMetadata(this.options.token));
    this.call = call;
    this.lastComputeMs = undefined;
    let welcomed = false;
    let lastHeard = performance.now();
    let heartbeat: NodeJS.Timeout | undefined;
    const onAbort = () => call.cancel();
    signal?.addEventListener('abort', onAbort, { once: true });
    // A step waiting for shard weights blocks this loop: the end of the stream must end that wait.
    call.on('status', () => this.job?.shards?.interrupt('the coordinator stream ended'));
    call.write({ hello: { workerId: this.options.id, pid: process.pid, hostname: hostname(), backend: this.backend!.name, device: this.backend!.device, protocolVersion: PROTOCOL_VERSION } });
    try {
      for await (const msg of call as AsyncIterable<CoordinatorMessage__Output>) {
        lastHeard = performance.now();
        if (msg.kind === 'welcome' && !welcomed) {
          welcomed = true;
          this.heartbeatIntervalMs = msg.welcome!.heartbeatIntervalMs;
          heartbeat = this.startHeartbeat(call, msg.welcome!.heartbeatIntervalMs, () => lastHeard, (t) => (lastHeard = t));
        }
        if (msg.kind === 'stop') {
          call.end();
          return { kind: 'stopped', completed: msg.stop!.completed, reason: msg.stop!.reason, welcomed };
        }
        await this.handle(msg);
      }
      return { kind: 'lost', code: grpc.status.UNAVAILABLE, details: 'the coordinator ended the stream without a stop', welcomed };
    } catch (err) {
      const e = err as Partial<grpc.ServiceError>;
      // Cancelled by our own silence watchdog: the coordinator may just be busy (a first
      // evaluation compiling GPU shaders blocks it for seconds): reconnect, do not give up.
      if (e.code === grpc.status.CANCELLED && this.silencedCall === call) return { kind: 'lost', code: grpc.status.UNAVAILABLE, details: 'coordinator silent', welcomed };
      if (typeof e.code === 'number') return { kind: 'lost', code: e.code, details: e.details ?? e.message ?? '', welcomed };
      call.cancel();
      throw err;
    } finally {
      clearInterval(heartbeat);
      signal?.removeEventListener('abort', onAbort);
      client.close();
    }
  }

  /** Sends heartbeats; cancels the stream when the coordinator has been silent too long. */
  private startHeartbeat(call: Duplex, intervalMs: number, lastHeard: () => number, setHeard: (t: number) => void): NodeJS.Timeout {
    const interval = Math.max(50, intervalMs || 1000);
    const timeoutMs = 4 * interval;
    let lastTick = performance.now();
    const timer = setInterval(() => {
      const now = performance.now();
      // This process was blocked (a long step): nobody is to blame, restart the clock.
      if (now - lastTick > 2 * interval) setHeard(now);
      lastTick = now;
      if (now - lastHeard() > timeoutMs) {
        this.log.warn({ silentMs: Math.round(now - lastHeard()) }, 'coordinator silent; reconnecting');
        this.silencedCall = call;
        call.cancel();
        return;
      }
      call.write({ heartbeat: { sentAtMs: Date.now() } });
    }, interval);
    timer.unref();
    return timer;
  }

  private async handle(msg: CoordinatorMessage__Output): Promise<void> {
    switch (msg.kind) {
      case 'welcome':
        this.welcome(msg.welcome!);
        if (msg.welcome!.hostShard) await this.hostShard();
        return;
      case 'weights': {
        const job = this.requireJob();
        const w = msg.weights!;
        if (Number(w.chunk?.offset) === 0) job.weights.reset();
        if (job.weights.add(w.chunk)) {
          job.computer.setWeights(job.weights.values);
          job.version = Number(w.version);
        }
        return;
      }
      case 'step':
        await this.computeStep(msg.step!);
        return;
      case 'heartbeat':
        return;
      default:
        throw new UnexpectedMessageError(`unexpected message '${msg.kind ?? 'empty'}' from the coordinator`);
    }
  }

  private welcome(welcome: NonNullable<CoordinatorMessage__Output['welcome']>): void {
    const config = welcome.config;
    if (!config) throw new UnexpectedMessageError('welcome without a job config');
    const same =
      this.job &&
      this.job.config.model === config.model &&
      this.job.config.dataDir === config.dataDir &&
      this.job.config.trainLimit === config.trainLimit &&
      this.job.config.gradDtype === config.gradDtype;
    if (this.job && same) {
      // Reconnected to the same job: keep data and model, wait for fresh weights.
      this.job.version = -1;
      this.job.chunkBytes = welcome.chunkBytes;
      this.connectShards(this.job, welcome.shards);
      this.log.info({ jobId: welcome.jobId }, 'rejoined the job');
      return;
    }
    this.job?.shards?.close();
    this.job?.computer.dispose();
    const data = loadMnist({ dataDir: config.dataDir || undefined, trainLimit: config.trainLimit, skipTest: true });
    const computer = new GradientComputer(config.model);
    assertSameLayout(computer.layout, config.variables);
    const gradDtype = config.gradDtype || 'float32';
    if (!isGradDtype(gradDtype)) throw new UnexpectedMessageError(`gradient encoding '${gradDtype}' is not supported by this worker`);
    const size = computer.layout.totalSize;
    this.job = {
      config,
      computer,
      train: data.train,
      weights: new ChunkAssembler(size * 4),
      gradient: new Float32Array(size),
      gradDtype,
      encoded: gradDtype === 'float32' ? undefined : new Uint16Array(size),
      chunkBytes: welcome.chunkBytes,
      version: -1,
      shards: undefined,
    };
    this.connectShards(this.job, welcome.shards);
    const usage = process.resourceUsage();
    this.cpuMicrosReported = usage.userCPUTime + usage.systemCPUTime;
    this.log.info({ jobId: welcome.jobId, model: config.model, trainSamples: data.train.count }, 'joined the job');
  }

  /**
   * Serves this worker's co-located ParameterShard (once per process: it outlives reconnects)
   * and tells the coordinator its port. It listens on loopback when the coordinator is reached
   * there, else on every interface; it takes the job token like every other endpoint.
   */
  private async hostShard(): Promise<void> {
    if (!this.shardServer) {
      if (this.options.tls.ca || this.options.tls.cert) throw new UnexpectedMessageError('co-located shards over TLS are not supported yet: run the job without --tls-*, or with --ps-mode in-process|process');
      const server = new ShardServer({ token: this.options.token }, this.log.child({ component: 'shard' }));
      const { hosts, fallback } = shardBindHosts(this.options.coordinator);
      const [first, ...also] = hosts;
      const port = await server.start(first!, 0).catch((err: Error) => (fallback ? server.start(fallback, 0) : Promise.reject(err)));
      // The other loopback family on the same port, where the host has it.
      for (const host of also) await server.start(host, port).catch(() => undefined);
      // The coordinator re-initializes this shard only when it re-forms the group, between
      // steps: a step still waiting for the old group's weights will never get them.
      server.onInit = () => this.job?.shards?.supersede('the co-located shards were re-formed');
      this.shardServer = server;
      this.log.info({ hosts, port: server.port }, 'serving a co-located parameter-server shard');
    }
    this.call!.write({ shardListening: { port: this.shardServer.port } });
  }

  private async computeStep(step: NonNullable<CoordinatorMessage__Output['step']>): Promise<void> {
    const job = this.requireJob();
    if (step.shards.length > 0) this.connectShards(job, step.shards);
    if (job.shards) {
      try {
        await this.takeShardWeights(job, Number(step.version));
      } catch (err) {
        if (!(err instanceof SupersededError)) throw err;
        this.log.debug({ step: Number(step.step), reason: err.message }, 'step given up: the shards were re-formed');
        return;
      }
    }
    if (Number(step.version) !== job.version) {
      throw new UnexpectedMessageError(`step ${step.step} needs weights version ${step.version}; this worker holds ${job.version}`);
    }
    // Computing blocks this thread, heartbeats included: say "alive, starting" where needed and
    // let it go out first, with the weights this worker's co-located shard sends the other members.
    const now = performance.now();
    if (startingHeartbeatNeeded(now, this.lastReportMs, this.lastComputeMs, this.heartbeatIntervalMs)) {
      this.call!.write({ heartbeat: { sentAtMs: Date.now() } });
      this.lastReportMs = now;
    }
    await new Promise((resolve) => setImmediate(resolve));
    if (this.shardServer) await this.shardServer.flushed();
    const started = performance.now();
    const batch = gatherBatch(job.train, step.indices);
    const loss = await job.computer.computeGradients(batch, job.gradient);
    const computeMs = performance.now() - started;
    const usage = process.resourceUsage();
    const cpuMicros = usage.userCPUTime + usage.systemCPUTime;
    const cpuMs = (cpuMicros - this.cpuMicrosReported) / 1000;
    this.cpuMicrosReported = cpuMicros;
    const stats = { step: step.step, round: step.round, sampleCount: batch.count, loss, computeMs, maxRssBytes: usage.maxRSS * 1024, lastEncodeMs: this.lastEncodeMs, cpuMs };
    const encodeStart = performance.now();
    let payload: ArrayBufferView = job.gradient;
    if (job.encoded) {
      encodeGradient(job.gradient, job.gradDtype, job.encoded);
      payload = job.encoded;
    }
    if (job.shards) {
      // Each shard gets its slice; the coordinator gets the statistics and an empty chunk.
      const shardBytesSent = job.shards.send(Number(step.step), Number(step.round), payload as Float32Array | Uint16Array, job.chunkBytes);
      const [chunk] = splitIntoChunks(new Uint8Array(0), job.chunkBytes);
      this.call!.write({ gradient: { ...stats, chunk, shardBytesSent, shardBytesReceived: job.shards.takeBytesReceived() } });
    } else {
      for (const chunk of splitIntoChunks(payload, job.chunkBytes)) this.call!.write({ gradient: { ...stats, chunk } });
    }
    this.lastEncodeMs = performance.now() - encodeStart;
    this.lastReportMs = performance.now();
    this.lastComputeMs = computeMs;
    this.steps++;
    this.log.debug({ step: Number(step.step), loss, computeMs }, 'step computed');
  }

  /** With shards in the Welcome, opens a stream to each (closing those of a previous Welcome). */
  private connectShards(job: Job, endpoints: NonNullable<CoordinatorOutputWelcome>['shards']): void {
    job.shards?.close();
    job.shards = undefined;
    if (endpoints.length === 0) return;
    const list = endpoints.map((e) => ({ address: e.address, exchangePort: e.exchangePort, offset: Number(e.offset), length: Number(e.length), workerId: e.workerId || undefined }));
    job.shards = new ShardLinks(list, job.computer.weightsTarget(), this.options.id, this.options.token, this.options.tls, this.log, this.shardServer);
    this.log.info({ shards: list.map((e) => e.address) }, 'exchanging weights and gradients with parameter-server shards');
  }

  /**
   * Waits until every shard has sent its slice of `version`, then loads the weights (never a
   * synchronous read). The slices are written into the model as they arrive, so a version held
   * is still good only while nothing was written since it was loaded.
   */
  private async takeShardWeights(job: Job, version: number): Promise<void> {
    const target = job.computer.weightsTarget();
    if (job.version === version && !target.stale) return;
    await job.shards!.waitForVersion(version);
    target.load();
    job.version = version;
  }

  private requireJob(): Job {
    if (!this.job) throw new UnexpectedMessageError('a message before welcome');
    return this.job;
  }
}
