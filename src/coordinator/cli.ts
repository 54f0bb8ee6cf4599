#!/usr/bin/env node
/**
 * `coordinator`: starts the coordinator with its parameter server, launches local workers
 * (unless --launch none), trains, evaluates, and writes the report and the model. SIGTERM or
 * SIGINT drains: the step in flight finishes (or is aborted), a checkpoint is written, workers
 * are told, and the process exits 0.
 */
import { Command, Option } from 'commander';
import { envFlag, EXIT_FAILURE, EXIT_OK, onShutdownSignal, parseInteger, parseNumber, parseOrExit, parseSeconds, usageError } from '../common/cli.js';
import { runStartupChecks } from '../common/startup-checks.js';
import { BACKEND_CHOICES } from '../model/backend.js';
import { MODEL_NAMES } from '../model/zoo.js';
import { generateToken } from '../rpc/auth.js';
import { GRAD_DTYPES } from '../rpc/tensor-codec.js';
import { checkLocalWorkerTls, TlsConfigError } from '../rpc/tls.js';
import { createLogger, LOG_LEVELS } from '../telemetry/logger.js';
import { Progress } from '../telemetry/progress.js';
import { summaryTable } from '../telemetry/summary-table.js';
import { Telemetry } from '../telemetry/telemetry.js';
import { CheckpointError } from './checkpoint.js';
import { CheckpointMismatchError, TrainingFailedError } from './errors.js';
import { LocalLauncher } from './launcher.js';
import { ShardLauncher } from './shard-launcher.js';
import { localNodeFlags } from './local-gc.js';
import { compileCoordinatorOptions, LAUNCH_MODES, PS_MODES, type CoordinatorOptions } from './options.js';
import { writeReport, type RunReport } from './report.js';
import { WARMUP_STEPS } from './steady-rate.js';
import { Coordinator } from './trainer.js';

/** Port of /metrics and the dashboard when the gRPC port is fixed (that of OpenTelemetry's Prometheus exporter). */
const DEFAULT_HTTP_PORT = 9464;

function collectAddresses(value: string, previous: string[] | undefined): string[] {
  return [...(previous ?? []), ...value.split(',').map((a) => a.trim()).filter((a) => a !== '')];
}

function opt(flags: string, description: string, env: string): Option {
  return new Option(flags, description).env(`TENSORFLEET_${env}`);
}

const program = new Command('coordinator')
  .description('Train a model data-parallel over gRPC workers, with an in-process parameter server.')
  .addOption(opt('--workers <n>', 'workers to start with (local) or wait for (none)', 'WORKERS').argParser(parseInteger).default(1))
  .addOption(opt('--min-workers <n>', 'keep training while at least this many remain; pause below', 'MIN_WORKERS').argParser(parseInteger).default(1))
  .addOption(opt('--max-workers <n>', 'let workers join a running job up to this many (default: --workers)', 'MAX_WORKERS').argParser(parseInteger))
  .addOption(opt('--launch <mode>', 'spawn local worker processes, or wait for external ones', 'LAUNCH').choices(LAUNCH_MODES).default('local'))
  .addOption(opt('--max-restarts <n>', 'restart crashed local workers up to this many times in all', 'MAX_RESTARTS').argParser(parseInteger).default(3))
  .addOption(opt('--epochs <n>', 'passes over the training set', 'EPOCHS').argParser(parseInteger).default(1))
  .addOption(opt('--batch-size <n>', 'samples per worker per step', 'BATCH_SIZE').argParser(parseInteger).default(32))
  .addOption(opt('--lr <x>', 'Adam learning rate', 'LR').argParser(parseNumber).default(1e-3))
  .addOption(opt('--model <name>', 'model to train', 'MODEL').choices(MODEL_NAMES).default('mnist-cnn'))
  .addOption(opt('--data-dir <dir>', 'folder with the four MNIST IDX files, raw or .gz (default: the embedded MNIST)', 'DATA_DIR'))
  .addOption(opt('--train-limit <k>', 'train on the first K samples only (0: all)', 'TRAIN_LIMIT').argParser(parseInteger).default(0))
  .addOption(opt('--test-limit <k>', 'evaluate on the first K test samples only (0: all)', 'TEST_LIMIT').argParser(parseInteger).default(0))
  .addOption(opt('--seed <s>', 'seed of the initial weights and the data order', 'SEED').argParser(parseInteger).default(42))
  .addOption(opt('--host <h>', 'address to listen on (0.0.0.0 for workers on other machines)', 'HOST').default('127.0.0.1'))
  .addOption(opt('--port <p>', 'port to listen on (default: any free port with --launch local, 50051 with --launch none)', 'PORT').argParser(parseInteger))
  .addOption(opt('--backend <name>', 'compute backend of the coordinator and of local workers', 'BACKEND').choices(BACKEND_CHOICES).default('auto'))
  .addOption(opt('--token <token>', 'job token workers must present (default with --launch local: a random one handed to the workers)', 'TOKEN'))
  .addOption(new Option('--insecure', 'run without a job token (anyone who reaches the port can join) (env: TENSORFLEET_INSECURE=true)'))
  .addOption(opt('--tls-cert <file>', 'PEM certificate: serve TLS', 'TLS_CERT'))
  .addOption(opt('--tls-key <file>', 'PEM private key of --tls-cert', 'TLS_KEY'))
  .addOption(opt('--tls-ca <file>', 'PEM CA: require worker certificates signed by it (mutual TLS)', 'TLS_CA'))
  .addOption(opt('--heartbeat-timeout <s>', 'remove a worker silent this many seconds', 'HEARTBEAT_TIMEOUT').argParser(parseSeconds).default(10_000, '10'))
  .addOption(opt('--checkpoint-dir <dir>', 'write atomic checkpoints here', 'CHECKPOINT_DIR'))
  .addOption(opt('--checkpoint-every <k>', 'checkpoint every K steps (and at each epoch end and on drain)', 'CHECKPOINT_EVERY').argParser(parseInteger).default(100))
  .addOption(new Option('--resume', 'continue from the newest checkpoint in --checkpoint-dir (a fresh start when there is none) (env: TENSORFLEET_RESUME=true)'))
  .addOption(opt('--drain-timeout <s>', 'on SIGTERM, seconds the step in flight may take before it is aborted', 'DRAIN_TIMEOUT').argParser(parseSeconds).default(10_000, '10'))
  .addOption(opt('--grad-dtype <dtype>', 'encoding of the gradients workers send (averaging stays float32)', 'GRAD_DTYPE').choices(GRAD_DTYPES).default('float32'))
  .addOption(opt('--ps-shards <k>', 'split the variables over K parameter-server shards', 'PS_SHARDS').argParser(parseInteger).default(1))
  .addOption(opt('--ps-mode <mode>', 'shards inside the coordinator, `parameter-server` processes (started here with --launch local), or colocated: one shard served by each worker', 'PS_MODE').choices(PS_MODES).default('in-process'))
  .addOption(opt('--snapshot-every <k>', 'with --ps-mode colocated: keep a rollback point every K steps (a lost worker takes its shard with it)', 'SNAPSHOT_EVERY').argParser(parseInteger).default(50))
  .addOption(opt('--ps-address <host:port>', 'with --ps-mode process and --launch none: an external shard, in shard order (repeat it; env: comma-separated)', 'PS_ADDRESSES').argParser(collectAddresses))
  .addOption(opt('--save-model <dir>', 'write the trained model (TensorFlow.js layers format) here', 'SAVE_MODEL'))
  .addOption(opt('--report <file>', 'write the JSON run report here', 'REPORT'))
  .addOption(opt('--log-level <level>', 'log level (logs go to stderr: JSON, or pretty on a terminal)', 'LOG_LEVEL').choices(LOG_LEVELS).default('info'))
  .addOption(opt('--http-port <p>', `serve /metrics, /healthz and the dashboard on this port of --host (default: any free port when --port is 0, else ${DEFAULT_HTTP_PORT}; -1: off)`, 'HTTP_PORT').argParser(parseInteger))
  .addOption(opt('--no-http', 'serve no metrics and no dashboard', 'NO_HTTP'))
  .addOption(opt('--trace <file>', 'write a Chrome trace-event JSON file of the run (opens in Perfetto)', 'TRACE'))
  .addOption(opt('--chunk-bytes <n>', 'bytes per tensor chunk on the wire', 'CHUNK_BYTES').argParser(parseInteger).hideHelp())
  .allowExcessArguments(false);

parseOrExit(program, process.argv);
const flags = program.opts();
const insecure = envFlag('coordinator', flags.insecure, 'TENSORFLEET_INSECURE');
const resume = envFlag('coordinator', flags.resume, 'TENSORFLEET_RESUME');
if (insecure && flags.token) usageError('coordinator', '--insecure and --token (or TENSORFLEET_TOKEN) exclude each other: give one');
if (flags.launch === 'none' && !flags.token && !insecure) {
  usageError('coordinator', '--launch none needs --token (or TENSORFLEET_TOKEN) for the workers to present, or --insecure');
}
const token: string | undefined = insecure ? undefined : (flags.token ?? generateToken());
const options: CoordinatorOptions = {
  workers: flags.workers,
  minWorkers: flags.minWorkers,
  maxWorkers: flags.maxWorkers,
  maxRestarts: flags.maxRestarts,
  launch: flags.launch,
  epochs: flags.epochs,
  batchSize: flags.batchSize,
  lr: flags.lr,
  model: flags.model,
  dataDir: flags.dataDir,
  trainLimit: flags.trainLimit,
  testLimit: flags.testLimit,
  seed: flags.seed,
  host: flags.host,
  port: flags.port,
  backend: flags.backend,
  token,
  insecure,
  tlsCert: flags.tlsCert,
  tlsKey: flags.tlsKey,
  tlsCa: flags.tlsCa,
  heartbeatTimeoutMs: flags.heartbeatTimeout,
  checkpointDir: flags.checkpointDir,
  checkpointEvery: flags.checkpointEvery,
  resume,
  drainTimeoutMs: flags.drainTimeout,
  saveModel: flags.saveModel,
  report: flags.report,
  logLevel: flags.logLevel,
  chunkBytes: flags.chunkBytes,
  gradDtype: flags.gradDtype,
  psShards: flags.psShards,
  psMode: flags.psMode,
  snapshotEvery: flags.snapshotEvery,
  psAddresses: flags.psAddress,
};

const log = createLogger(flags.logLevel, { name: 'coordinator' });
const progress = new Progress(process.stdout, flags.epochs);
const httpPort: number | undefined = flags.httpPort;
if (httpPort !== undefined && (httpPort < -1 || httpPort > 65535)) usageError('coordinator', `--http-port must be from -1 (off) to 65535; got ${httpPort}`);
let coordinator: Coordinator;
let telemetry: Telemetry;
try {
  const c = compileCoordinatorOptions(options);
  const http = flags.http === false || httpPort === -1 ? undefined : { host: c.host, port: httpPort ?? (c.port === 0 ? 0 : DEFAULT_HTTP_PORT), fallbackToFreePort: httpPort === undefined };
  telemetry = new Telemetry({ epochs: c.epochs, log, progress, http, trace: Boolean(flags.trace) });
  coordinator = new Coordinator(options, { log, ...telemetry.hooks() });
} catch (err) {
  if (err instanceof TypeError) usageError('coordinator', err.message);
  throw err;
}
runStartupChecks('coordinator', log);
const o = coordinator.options;
let localWorkerCa: string | undefined;
if (o.launch === 'local' && o.tls.cert) {
  try {
    localWorkerCa = checkLocalWorkerTls(o.tls);
  } catch (err) {
    if (err instanceof TlsConfigError) usageError('coordinator', err.message);
    throw err;
  }
}
coordinator.membership.on('joined', (s) => telemetry.onMembership({ kind: 'joined', workerId: s.id, size: coordinator.membership.size }));
coordinator.membership.on('left', (s, reason) => telemetry.onMembership({ kind: 'left', workerId: s.id, reason, size: coordinator.membership.size }));
const controller = new AbortController();
onShutdownSignal((signal) => {
  log.warn({ signal }, 'signal received; draining');
  telemetry.setStatus('draining', `on ${signal}`);
  coordinator.drain();
});
const launcher = new LocalLauncher(log.child({ component: 'launcher' }));
const shardLauncher = new ShardLauncher(log.child({ component: 'shard-launcher' }));
if (flags.psAddress && o.psMode === 'process' && o.launch === 'local') usageError('coordinator', '--ps-address is for external shards (--launch none); with --launch local the coordinator starts its shards');
let finished = false;
// Local processes that compute or move a step's bytes: the coordinator, its workers, its shard processes.
const localFlags = (() => {
  try {
    return localNodeFlags(1 + (o.launch === 'local' ? o.workers : 0) + (o.launch === 'local' && o.psMode === 'process' ? o.psShards : 0));
  } catch (err) {
    return usageError('coordinator', (err as Error).message);
  }
})();

async function main(): Promise<number> {
  let report: RunReport;
  try {
    let psAddresses: string[] | undefined;
    if (o.psMode === 'process' && o.launch === 'local') {
      // Local shards serve like the coordinator: its token, its certificate, its CA for mutual TLS.
      psAddresses = await shardLauncher.start(o.psShards, {
        host: o.tls.cert ? 'localhost' : '127.0.0.1',
        logLevel: o.logLevel,
        nodeFlags: localFlags,
        env: {
          TENSORFLEET_TOKEN: o.token,
          TENSORFLEET_INSECURE: o.token ? undefined : 'true',
          TENSORFLEET_TLS_CERT: o.tls.cert,
          TENSORFLEET_TLS_KEY: o.tls.key,
          TENSORFLEET_TLS_CA: o.tls.ca,
        },
      });
    }
    const port = await coordinator.start(psAddresses);
    if (o.psMode === 'process') {
      const pids = shardLauncher.pids;
      progress.line(`parameter-server shards: ${(psAddresses ?? o.psAddresses).map((a, i) => (pids[i] ? `${a} (pid ${pids[i]})` : a)).join(', ')}`);
    }
    progress.line(`coordinator listening on ${o.host}:${port} (backend ${coordinator.backendInfo.name}: ${coordinator.backendInfo.device})`);
    const dashboard = await telemetry.start(
      { counters: () => coordinator.counters, sessions: () => coordinator.membership.history },
      { model: o.model, backend: coordinator.backendInfo.name, workers: o.workers, epochs: o.epochs, batchSize: o.batchSize, trainSamples: coordinator.dataSizes.train, testSamples: coordinator.dataSizes.test },
    );
    if (dashboard) progress.line(`dashboard on ${dashboard} (metrics at ${dashboard}metrics)`);
    if (o.launch === 'local') {
      launcher.on('gone', () => {
        if (launcher.running < o.minWorkers && !finished) {
          controller.abort(new TrainingFailedError(`local workers exited and will not be restarted; ${launcher.running} running, --min-workers is ${o.minWorkers}`));
        }
      });
      launcher.start({
        count: o.workers,
        coordinator: `${o.tls.cert ? 'localhost' : '127.0.0.1'}:${port}`,
        backend: o.backend,
        logLevel: o.logLevel,
        maxRestarts: o.maxRestarts,
        nodeFlags: localFlags,
        // Local workers trust what checkLocalWorkerTls verified, and under mutual TLS present the coordinator's certificate.
        env: {
          TENSORFLEET_TOKEN: o.token,
          TENSORFLEET_TLS_CA: localWorkerCa,
          TENSORFLEET_TLS_CERT: o.tls.ca ? o.tls.cert : undefined,
          TENSORFLEET_TLS_KEY: o.tls.ca ? o.tls.key : undefined,
        },
      });
    } else {
      progress.line(`waiting for ${o.workers} worker(s): worker --coordinator HOST:${port}${o.token ? ' (with the job token in TENSORFLEET_TOKEN)' : ''}`);
    }
    report = await coordinator.run(controller.signal);
  } catch (err) {
    const error = err instanceof Error ? err : new Error(String(err));
    log.error({ err: error.message }, 'training failed');
    process.stderr.write(`coordinator: ${describeFailure(error)}\n`);
    report = coordinator.failureReport(error);
  } finally {
    finished = true;
    await coordinator.close();
    await shardLauncher.close();
  }
  // Local workers exit by themselves after a completed run; otherwise they are told to leave now.
  await launcher.close(report.status === 'completed' ? 5000 : 0);
  telemetry.setStatus(report.status, report.error);
  if (o.report) writeReport(o.report, report);
  if (report.perWorker.length > 0 && report.status !== 'failed') progress.line(summaryTable(report.perWorker, report.straggler));
  try {
    await telemetry.close(flags.trace, { status: report.status, imagesPerSecond: report.imagesPerSecond });
    if (flags.trace) progress.line(`trace written to ${flags.trace} (open it in https://ui.perfetto.dev or chrome://tracing)`);
  } catch (err) {
    process.stderr.write(`coordinator: cannot write the trace ${flags.trace}: ${(err as Error).message}\n`);
    return EXIT_FAILURE;
  }
  if (report.status === 'completed') {
    progress.line(
      `done: test accuracy ${((report.testAccuracy ?? NaN) * 100).toFixed(2)}%, test loss ${(report.testLoss ?? NaN).toFixed(4)}, ` +
        `${report.steps} steps, ${report.imagesPerSecond.toFixed(1)} img/s (${report.steadyImagesPerSecond?.toFixed(1) ?? '-'} after the first ${WARMUP_STEPS} steps), training ${report.trainSeconds.toFixed(1)} s, wall ${report.wallSeconds.toFixed(1)} s` +
        (report.savedModel ? `, model saved to ${report.savedModel}` : ''),
    );
    return EXIT_OK;
  }
  if (report.status === 'stopped') {
    progress.line(`stopped at step ${report.steps}${report.lastCheckpoint ? `; resume with --resume from ${report.lastCheckpoint}` : ' (no --checkpoint-dir: progress is lost)'}`);
    return EXIT_OK;
  }
  return EXIT_FAILURE;
}

function describeFailure(error: Error): string {
  if (error instanceof CheckpointMismatchError || error instanceof CheckpointError || error instanceof TlsConfigError) return error.message;
  return `training failed: ${error.message}`;
}

main().then(
  (code) => process.exit(code),
  (err) => {
    process.stderr.write(`coordinator: ${(err as Error).stack ?? err}\n`);
    process.exit(EXIT_FAILURE);
  },
);
