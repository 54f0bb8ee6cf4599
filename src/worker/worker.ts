/**
 * A worker: attaches to the coordinator with one long-lived stream, then loops: take the
 * weights it is sent, compute the gradient of the mean loss over the step's slice, send it
 * back in chunks. It keeps nothing durable; a new worker joins by being sent the weights.
 */
import { hostname } from 'node:os';
import * as grpc from '@grpc/grpc-js';
import { gatherBatch } from '../data/batch.js';
import { loadMnist, type LabeledImages } from '../data/mnist.js';
import { selectBackend, type BackendInfo } from '../model/backend.js';
import { GradientComputer } from '../model/gradients.js';
import { assertSameLayout } from '../model/variables.js';
import { ChunkAssembler, splitIntoChunks } from '../rpc/chunks.js';
import { loadProto, PROTOCOL_VERSION, type CoordinatorMessage__Output, type WorkerMessage } from '../rpc/proto.js';
import { silentLogger, type Logger } from '../telemetry/logger.js';
import { CoordinatorLostError, UnexpectedMessageError } from './errors.js';
import { compileWorkerOptions, type CompiledWorkerOptions, type WorkerOptions } from './options.js';

export interface WorkerResult {
  completed: boolean;
  reason: string;
  steps: number;
}

type Duplex = grpc.ClientDuplexStream<WorkerMessage, CoordinatorMessage__Output>;

interface Job {
  computer: GradientComputer;
  train: LabeledImages;
  weights: ChunkAssembler;
  gradient: Float32Array;
  chunkBytes: number;
  version: number;
}

export class TrainingWorker {
  readonly options: CompiledWorkerOptions;
  private readonly log: Logger;
  private client: grpc.Client | undefined;
  private call: Duplex | undefined;
  private job: Job | undefined;
  private backend: BackendInfo | undefined;
  private steps = 0;
  private closed = false;

  constructor(options: WorkerOptions, log: Logger = silentLogger) {
    this.options = compileWorkerOptions(options);
    this.log = log.child({ component: 'worker', workerId: this.options.id });
  }

  /** Connects and trains until the coordinator says stop. */
  async run(signal?: AbortSignal): Promise<WorkerResult> {
    this.backend = await selectBackend(this.options.backend);
    this.log.info({ backend: this.backend.name, device: this.backend.device }, 'backend selected');
    const proto = loadProto();
    const client = new proto.tensorfleet.v1.Coordinator(this.options.coordinator, grpc.credentials.createInsecure(), {
      'grpc.max_receive_message_length': 4 * 1024 * 1024,
    });
    this.client = client;
    const call: Duplex = client.Attach();
    this.call = call;
    const onAbort = () => call.cancel();
    signal?.addEventListener('abort', onAbort, { once: true });
    call.write({ hello: { workerId: this.options.id, pid: process.pid, hostname: hostname(), backend: this.backend.name, protocolVersion: PROTOCOL_VERSION } });
    try {
      for await (const msg of call as AsyncIterable<CoordinatorMessage__Output>) {
        const stop = await this.handle(msg);
        if (stop) {
          call.end();
          this.log.info({ reason: stop.reason, steps: this.steps }, 'stopped by the coordinator');
          return { completed: stop.completed, reason: stop.reason, steps: this.steps };
        }
      }
    } catch (err) {
      if (signal?.aborted) throw signal.reason instanceof Error ? signal.reason : new Error('aborted');
      const e = err as grpc.ServiceError;
      if (typeof e.code === 'number') {
        throw new CoordinatorLostError(`coordinator at ${this.options.coordinator}: ${grpc.status[e.code]} ${e.details}`, { cause: err });
      }
      throw err;
    } finally {
      signal?.removeEventListener('abort', onAbort);
      this.close();
    }
    throw new CoordinatorLostError(`coordinator at ${this.options.coordinator} ended the stream without a stop`);
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    for (const cleanup of [() => this.call?.cancel(), () => this.client?.close(), () => this.job?.computer.dispose()]) {
      try {
        cleanup();
      } catch (err) {
        this.log.warn({ err: (err as Error).message }, 'cleanup step failed');
      }
    }
  }

  private async handle(msg: CoordinatorMessage__Output): Promise<{ reason: string; completed: boolean } | undefined> {
    switch (msg.kind) {
      case 'welcome':
        this.welcome(msg.welcome!);
        return undefined;
      case 'weights': {
        const job = this.requireJob();
        const w = msg.weights!;
        if (Number(w.chunk?.offset) === 0) job.weights.reset();
        if (job.weights.add(w.chunk)) {
          job.computer.setWeights(job.weights.values);
          job.version = Number(w.version);
        }
        return undefined;
      }
      case 'step':
        await this.computeStep(msg.step!);
        return undefined;
      case 'stop':
        return { reason: msg.stop!.reason, completed: msg.stop!.completed };
      case 'heartbeat':
        return undefined;
      default:
        throw new UnexpectedMessageError(`unexpected message '${msg.kind ?? 'empty'}' from the coordinator`);
    }
  }

  private welcome(welcome: NonNullable<CoordinatorMessage__Output['welcome']>): void {
    if (this.job) throw new UnexpectedMessageError('a second welcome on one stream');
    const config = welcome.config;
    if (!config) throw new UnexpectedMessageError('welcome without a job config');
    const data = loadMnist({ dataDir: config.dataDir || undefined, trainLimit: config.trainLimit, skipTest: true });
    const computer = new GradientComputer(config.model);
    assertSameLayout(computer.layout, config.variables);
    this.job = {
      computer,
      train: data.train,
      weights: new ChunkAssembler(computer.layout.totalSize),
      gradient: new Float32Array(computer.layout.totalSize),
      chunkBytes: welcome.chunkBytes,
      version: -1,
    };
    this.log.info({ jobId: welcome.jobId, model: config.model, trainSamples: data.train.count }, 'joined the job');
  }

  private async computeStep(step: NonNullable<CoordinatorMessage__Output['step']>): Promise<void> {
    const job = this.requireJob();
    if (Number(step.version) !== job.version) {
      throw new UnexpectedMessageError(`step ${step.step} needs weights version ${step.version}; this worker holds ${job.version}`);
    }
    const started = performance.now();
    const batch = gatherBatch(job.train, step.indices);
    const loss = await job.computer.computeGradients(batch, job.gradient);
    const computeMs = performance.now() - started;
    const stats = { step: step.step, round: step.round, sampleCount: batch.count, loss, computeMs, maxRssBytes: process.resourceUsage().maxRSS * 1024 };
    for (const chunk of splitIntoChunks(job.gradient, job.chunkBytes)) this.call!.write({ gradient: { ...stats, chunk } });
    this.steps++;
    this.log.debug({ step: Number(step.step), loss, computeMs }, 'step computed');
  }

  private requireJob(): Job {
    if (!this.job) throw new UnexpectedMessageError('a message before welcome');
    return this.job;
  }
}
