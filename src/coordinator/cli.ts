#!/usr/bin/env node
/**
 * `coordinator`: starts the coordinator with its parameter server, launches local workers
 * (unless --launch none), trains, evaluates, and writes the report and the model. SIGTERM or
 * SIGINT drains: the step in flight finishes (or is aborted), a checkpoint is written, workers
 * are told, and the process exits 0.
 */
import { Command, Option } from 'commander';
import { EXIT_FAILURE, EXIT_OK, onShutdownSignal, parseInteger, parseNumber, parseOrExit, parseSeconds, usageError } from '../common/cli.js';
import { BACKEND_CHOICES } from '../model/backend.js';
import { MODEL_NAMES } from '../model/zoo.js';
import { generateToken } from '../rpc/auth.js';
import { GRAD_DTYPES } from '../rpc/tensor-codec.js';
import { TlsConfigError } from '../rpc/tls.js';
import { createLogger, LOG_LEVELS } from '../telemetry/logger.js';
import { Progress } from '../telemetry/progress.js';
import { CheckpointError } from './checkpoint.js';
import { CheckpointMismatchError, TrainingFailedError } from './errors.js';
import { LocalLauncher } from './launcher.js';
import { LAUNCH_MODES, type CoordinatorOptions } from './options.js';
import { writeReport, type RunReport } from './report.js';
import { Coordinator } from './trainer.js';

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
  .addOption(opt('--insecure', 'run without a job token (anyone who reaches the port can join)', 'INSECURE'))
  .addOption(opt('--tls-cert <file>', 'PEM certificate: serve TLS', 'TLS_CERT'))
  .addOption(opt('--tls-key <file>', 'PEM private key of --tls-cert', 'TLS_KEY'))
  .addOption(opt('--tls-ca <file>', 'PEM CA: require worker certificates signed by it (mutual TLS)', 'TLS_CA'))
  .addOption(opt('--heartbeat-timeout <s>', 'remove a worker silent this many seconds', 'HEARTBEAT_TIMEOUT').argParser(parseSeconds).default(10_000, '10'))
  .addOption(opt('--checkpoint-dir <dir>', 'write atomic checkpoints here', 'CHECKPOINT_DIR'))
  .addOption(opt('--checkpoint-every <k>', 'checkpoint every K steps (and at each epoch end and on drain)', 'CHECKPOINT_EVERY').argParser(parseInteger).default(100))
  .addOption(opt('--resume', 'continue from the newest checkpoint in --checkpoint-dir (a fresh start when there is none)', 'RESUME'))
  .addOption(opt('--drain-timeout <s>', 'on SIGTERM, seconds the step in flight may take before it is aborted', 'DRAIN_TIMEOUT').argParser(parseSeconds).default(10_000, '10'))
  .addOption(opt('--grad-dtype <dtype>', 'encoding of the gradients workers send (averaging stays float32)', 'GRAD_DTYPE').choices(GRAD_DTYPES).default('float32'))
  .addOption(opt('--save-model <dir>', 'write the trained model (TensorFlow.js layers format) here', 'SAVE_MODEL'))
  .addOption(opt('--report <file>', 'write the JSON run report here', 'REPORT'))
  .addOption(opt('--log-level <level>', 'log level (logs go to stderr as JSON)', 'LOG_LEVEL').choices(LOG_LEVELS).default('info'))
  .addOption(opt('--chunk-bytes <n>', 'bytes per tensor chunk on the wire', 'CHUNK_BYTES').argParser(parseInteger).hideHelp())
  .allowExcessArguments(false);

parseOrExit(program, process.argv);
const flags = program.opts();
if (flags.launch === 'none' && !flags.token && !flags.insecure) {
  usageError('coordinator', '--launch none needs --token (or TENSORFLEET_TOKEN) for the workers to present, or --insecure');
}
const token: string | undefined = flags.insecure ? undefined : (flags.token ?? generateToken());
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
  insecure: Boolean(flags.insecure),
  tlsCert: flags.tlsCert,
  tlsKey: flags.tlsKey,
  tlsCa: flags.tlsCa,
  heartbeatTimeoutMs: flags.heartbeatTimeout,
  checkpointDir: flags.checkpointDir,
  checkpointEvery: flags.checkpointEvery,
  resume: Boolean(flags.resume),
  drainTimeoutMs: flags.drainTimeout,
  saveModel: flags.saveModel,
  report: flags.report,
  logLevel: flags.logLevel,
  chunkBytes: flags.chunkBytes,
  gradDtype: flags.gradDtype,
};

const log = createLogger(flags.logLevel, { name: 'coordinator' });
const progress = new Progress(process.stdout, flags.epochs);
let coordinator: Coordinator;
try {
  coordinator = new Coordinator(options, { log, onStep: (e) => progress.step(e), onEpoch: (e) => progress.epoch(e) });
} catch (err) {
  if (err instanceof TypeError) usageError('coordinator', err.message);
  throw err;
}
const o = coordinator.options;
const controller = new AbortController();
onShutdownSignal((signal) => {
  log.warn({ signal }, 'signal received; draining');
  coordinator.drain();
});
const launcher = new LocalLauncher(log.child({ component: 'launcher' }));
let finished = false;

async function main(): Promise<number> {
  let report: RunReport;
  try {
    const port = await coordinator.start();
    progress.line(`coordinator listening on ${o.host}:${port} (backend ${coordinator.backendInfo.name}: ${coordinator.backendInfo.device})`);
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
        env: { TENSORFLEET_TOKEN: o.token, TENSORFLEET_TLS_CA: o.tls.ca ?? (o.tls.cert ? o.tls.cert : undefined), TENSORFLEET_TLS_CERT: o.tls.ca ? o.tls.cert : undefined, TENSORFLEET_TLS_KEY: o.tls.ca ? o.tls.key : undefined },
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
    await launcher.close();
  }
  if (o.report) writeReport(o.report, report);
  if (report.status === 'completed') {
    progress.line(
      `done: test accuracy ${((report.testAccuracy ?? NaN) * 100).toFixed(2)}%, test loss ${(report.testLoss ?? NaN).toFixed(4)}, ` +
        `${report.steps} steps, ${report.imagesPerSecond.toFixed(1)} img/s, training ${report.trainSeconds.toFixed(1)} s, wall ${report.wallSeconds.toFixed(1)} s` +
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
