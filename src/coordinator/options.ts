/**
 * Coordinator options in one place: `CoordinatorOptions` (all optional, defaults documented)
 * -> `compileCoordinatorOptions()` -> fully resolved values. CLI flags and TENSORFLEET_* env
 * vars only fill CoordinatorOptions; validation throws a TypeError naming the field.
 */
import { BACKEND_CHOICES, isBackendChoice, type BackendChoice } from '../model/backend.js';
import { isModelName, MODEL_NAMES, type ModelName } from '../model/zoo.js';
import { DEFAULT_CHUNK_BYTES } from '../rpc/proto.js';
import { GRAD_DTYPES, type GradDtype } from '../rpc/tensor-codec.js';
import { LOG_LEVELS, type LogLevel } from '../telemetry/logger.js';

export const LAUNCH_MODES = ['local', 'none'] as const;
export type LaunchMode = (typeof LAUNCH_MODES)[number];
export const PS_MODES = ['in-process', 'process', 'colocated'] as const;
export type PsMode = (typeof PS_MODES)[number];

export interface CoordinatorOptions {
  /** Workers to wait for before training starts. Default 1. */
  workers?: number;
  /** Training goes on while at least this many workers remain, and pauses below. Default 1. */
  minWorkers?: number;
  /** Workers may join a running job up to this many. Default: `workers`. */
  maxWorkers?: number;
  /** With --launch local, how often a crashed worker process is restarted. Default 3. */
  maxRestarts?: number;
  /** A worker silent for this long is removed. Default 10000. */
  heartbeatTimeoutMs?: number;
  /** Job token every RPC must carry; generated for local workers when not given. */
  token?: string;
  /** Run without a job token (logs a warning). Default false. */
  insecure?: boolean;
  /** PEM files: serve TLS with cert+key; with a CA, require client certificates (mutual TLS). */
  tlsCert?: string;
  tlsKey?: string;
  tlsCa?: string;
  /** Folder for atomic checkpoints; none when unset. */
  checkpointDir?: string;
  /** Checkpoint every K committed steps (and at every epoch end and on drain). Default 100. */
  checkpointEvery?: number;
  /** Continue from the newest checkpoint in checkpointDir. Default false. */
  resume?: boolean;
  /** On SIGTERM, how long the step in flight may take to finish before it is aborted. Default 10000. */
  drainTimeoutMs?: number;
  /** `local` spawns the workers as child processes; `none` waits for external ones. Default local. */
  launch?: LaunchMode;
  /** Default 1. */
  epochs?: number;
  /** Per-worker batch size. Default 32. */
  batchSize?: number;
  /** Adam learning rate. Default 1e-3. */
  lr?: number;
  /** Default mnist-cnn. */
  model?: string;
  /** Folder with the four IDX files; default: the embedded MNIST. */
  dataDir?: string;
  /** Train on the first K samples only (0: all). */
  trainLimit?: number;
  /** Evaluate on the first K test samples only (0: all). */
  testLimit?: number;
  /** Seed of initial weights and permutations. Default 42. */
  seed?: number;
  /** Default 127.0.0.1 (use 0.0.0.0 for workers on other machines). */
  host?: string;
  /** Default 0 with --launch local (any free port), 50051 with --launch none. */
  port?: number;
  /** Backend of the coordinator's evaluation and of local workers. Default auto. */
  backend?: string;
  /** Write the trained model (tfjs layers format) into this folder. */
  saveModel?: string;
  /** Write the JSON run report to this file. */
  report?: string;
  logLevel?: string;
  /** Bytes per tensor chunk on the wire. Default 1 MiB. */
  chunkBytes?: number;
  /** Encoding of the gradients workers send (averaging stays float32). Default float32. */
  gradDtype?: string;
  /** Parameter-server shards the variables are split over (at most the model's parameter count). Default 1. */
  psShards?: number;
  /**
   * `in-process` shards live in the coordinator; `process` shards are `parameter-server`
   * processes; `colocated`: every worker serves one shard (as many shards as members). Default in-process.
   */
  psMode?: string;
  /** With psMode colocated: keep a rollback point (the full state) every K steps, for losing a member. Default 50. */
  snapshotEvery?: number;
  /** With psMode process and launch none: HOST:PORT of each externally run shard, psShards of them, in shard order. */
  psAddresses?: string[];
}

export interface CompiledCoordinatorOptions {
  workers: number;
  minWorkers: number;
  maxWorkers: number;
  maxRestarts: number;
  heartbeatTimeoutMs: number;
  token: string | undefined;
  insecure: boolean;
  tls: { cert?: string; key?: string; ca?: string };
  checkpointDir: string | undefined;
  checkpointEvery: number;
  resume: boolean;
  drainTimeoutMs: number;
  launch: LaunchMode;
  epochs: number;
  batchSize: number;
  lr: number;
  model: ModelName;
  dataDir: string | undefined;
  trainLimit: number;
  testLimit: number;
  seed: number;
  host: string;
  port: number;
  backend: BackendChoice;
  saveModel: string | undefined;
  report: string | undefined;
  logLevel: LogLevel;
  chunkBytes: number;
  gradDtype: GradDtype;
  psShards: number;
  psMode: PsMode;
  snapshotEvery: number;
  /** Empty unless the shards are external processes (psMode process, launch none). */
  psAddresses: string[];
}

function int(field: string, value: number | undefined, fallback: number, min: number, max = Number.MAX_SAFE_INTEGER): number {
  const v = value ?? fallback;
  if (!Number.isInteger(v) || v < min || v > max) {
    throw new TypeError(`${field} must be an integer from ${min} to ${max}; got ${value}`);
  }
  return v;
}

function oneOf<T extends string>(field: string, value: string | undefined, fallback: T, accepted: readonly T[]): T {
  const v = value ?? fallback;
  if (!(accepted as readonly string[]).includes(v)) throw new TypeError(`${field} must be one of ${accepted.join(', ')}; got '${value}'`);
  return v as T;
}

export function compileCoordinatorOptions(options: CoordinatorOptions = {}): CompiledCoordinatorOptions {
  const workers = int('workers', options.workers, 1, 1, 1024);
  const launch = oneOf('launch', options.launch, 'local', LAUNCH_MODES);
  const lr = options.lr ?? 1e-3;
  if (!(Number.isFinite(lr) && lr > 0)) throw new TypeError(`lr must be a positive number; got ${options.lr}`);
  const model = options.model ?? 'mnist-cnn';
  if (!isModelName(model)) throw new TypeError(`model must be one of ${MODEL_NAMES.join(', ')}; got '${model}'`);
  const backend = options.backend ?? 'auto';
  if (!isBackendChoice(backend)) throw new TypeError(`backend must be one of ${BACKEND_CHOICES.join(', ')}; got '${backend}'`);
  const maxWorkers = int('maxWorkers', options.maxWorkers, workers, workers, 1024);
  if (options.resume && !options.checkpointDir) throw new TypeError('resume needs checkpointDir (--checkpoint-dir)');
  const token = options.token || undefined;
  if (options.insecure && token) throw new TypeError('insecure and token exclude each other: give one');
  if (!options.insecure && !token) throw new TypeError('token is required (a job token every worker must present), or insecure: true');
  const psShards = int('psShards', options.psShards, 1, 1, 4096);
  const psMode = oneOf('psMode', options.psMode, 'in-process', PS_MODES);
  const psAddresses = compilePsAddresses(options.psAddresses ?? [], psShards, psMode, launch);
  if (psMode === 'colocated' && (options.tlsCert || options.tlsCa)) throw new TypeError('psMode colocated does not support TLS yet (workers would need server certificates for their shards): use psMode in-process or process with TLS');
  if (psMode === 'colocated' && psShards !== 1) throw new TypeError(`psShards is the number of members with psMode colocated (each worker serves one shard); got ${psShards}`);
  return {
    workers,
    minWorkers: int('minWorkers', options.minWorkers, 1, 1, maxWorkers),
    maxWorkers,
    maxRestarts: int('maxRestarts', options.maxRestarts, 3, 0, 1000),
    heartbeatTimeoutMs: int('heartbeatTimeoutMs', options.heartbeatTimeoutMs, 10_000, 200, 3_600_000),
    token,
    insecure: options.insecure ?? false,
    tls: { cert: options.tlsCert || undefined, key: options.tlsKey || undefined, ca: options.tlsCa || undefined },
    checkpointDir: options.checkpointDir || undefined,
    checkpointEvery: int('checkpointEvery', options.checkpointEvery, 100, 1),
    resume: options.resume ?? false,
    drainTimeoutMs: int('drainTimeoutMs', options.drainTimeoutMs, 10_000, 0, 3_600_000),
    launch,
    epochs: int('epochs', options.epochs, 1, 1, 100_000),
    batchSize: int('batchSize', options.batchSize, 32, 1, 65_536),
    lr,
    model,
    dataDir: options.dataDir || undefined,
    trainLimit: int('trainLimit', options.trainLimit, 0, 0),
    testLimit: int('testLimit', options.testLimit, 0, 0),
    seed: int('seed', options.seed, 42, 0, 0xffffffff),
    host: options.host ?? '127.0.0.1',
    port: int('port', options.port, launch === 'local' ? 0 : 50051, 0, 65535),
    backend,
    saveModel: options.saveModel || undefined,
    report: options.report || undefined,
    logLevel: oneOf('logLevel', options.logLevel, 'info', LOG_LEVELS),
    chunkBytes: int('chunkBytes', options.chunkBytes, DEFAULT_CHUNK_BYTES, 4, 3 << 20),
    gradDtype: oneOf('gradDtype', options.gradDtype, 'float32', GRAD_DTYPES),
    psShards,
    psMode,
    snapshotEvery: int('snapshotEvery', options.snapshotEvery, 50, 1),
    psAddresses,
  };
}

const HOST_PORT = /^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+):\d{1,5}$/;

/** External shards are named with --launch none and process mode only, one address per shard. */
function compilePsAddresses(addresses: string[], psShards: number, psMode: PsMode, launch: LaunchMode): string[] {
  if (addresses.length === 0) {
    if (psMode === 'process' && launch === 'none') throw new TypeError(`psAddresses must name the ${psShards} parameter-server shard(s) (HOST:PORT each) with psMode process and launch none`);
    return [];
  }
  if (psMode !== 'process' || launch !== 'none') throw new TypeError('psAddresses is only for psMode process with launch none (local shards are started by the coordinator)');
  for (const a of addresses) if (!HOST_PORT.test(a)) throw new TypeError(`psAddresses must be HOST:PORT each; got '${a}'`);
  if (addresses.length !== psShards) throw new TypeError(`psAddresses names ${addresses.length} shard(s); psShards is ${psShards}`);
  return [...addresses];
}
