#!/usr/bin/env node
/**
 * `worker`: attaches to a coordinator and computes gradients until training completes.
 * SIGTERM/SIGINT leaves cleanly (the coordinator redoes the step without this worker).
 * Exit codes: 0 done or left, 1 refused (e.g. wrong token) or coordinator lost, 2 usage.
 */
import { Command, Option } from 'commander';
import { EXIT_FAILURE, EXIT_OK, exitWithParent, onShutdownSignal, parseOrExit, parseSeconds, usageError } from '../common/cli.js';
import { runStartupChecks } from '../common/startup-checks.js';
import { BACKEND_CHOICES } from '../model/backend.js';
import { createLogger, LOG_LEVELS } from '../telemetry/logger.js';
import { TrainingWorker } from './worker.js';

const opt = (flags: string, description: string, env: string) => new Option(flags, description).env(`TENSORFLEET_${env}`);
const program = new Command('worker')
  .description('Compute gradients for a tensorfleet coordinator.')
  .addOption(opt('--coordinator <host:port>', 'address of the coordinator', 'COORDINATOR'))
  .addOption(opt('--backend <name>', 'compute backend', 'BACKEND').choices(BACKEND_CHOICES).default('auto'))
  .addOption(opt('--id <name>', 'worker name, unique in the job (default: HOSTNAME-PID)', 'WORKER_ID'))
  .addOption(opt('--token <token>', 'the job token (prefer the environment variable: command lines are visible to other users)', 'TOKEN'))
  .addOption(opt('--tls-ca <file>', 'PEM CA that signed the coordinator certificate: connect with TLS', 'TLS_CA'))
  .addOption(opt('--tls-cert <file>', 'PEM client certificate (mutual TLS)', 'TLS_CERT'))
  .addOption(opt('--tls-key <file>', 'PEM private key of --tls-cert', 'TLS_KEY'))
  .addOption(opt('--connect-timeout <s>', 'keep trying to reach the coordinator this many seconds', 'CONNECT_TIMEOUT').argParser(parseSeconds).default(120_000, '120'))
  .addOption(opt('--log-level <level>', 'log level (logs go to stderr: JSON, or pretty on a terminal)', 'LOG_LEVEL').choices(LOG_LEVELS).default('info'))
  .allowExcessArguments(false);

parseOrExit(program, process.argv);
const flags = program.opts();
let worker: TrainingWorker;
try {
  worker = new TrainingWorker(
    {
      coordinator: flags.coordinator,
      backend: flags.backend,
      id: flags.id,
      token: flags.token,
      tlsCa: flags.tlsCa,
      tlsCert: flags.tlsCert,
      tlsKey: flags.tlsKey,
      connectTimeoutMs: flags.connectTimeout,
      logLevel: flags.logLevel,
    },
    createLogger(flags.logLevel, { name: 'worker' }),
  );
} catch (err) {
  if (err instanceof TypeError) usageError('worker', err.message);
  throw err;
}
runStartupChecks('worker', createLogger(flags.logLevel, { name: 'worker' }));
const controller = new AbortController();
onShutdownSignal((signal) => controller.abort(new Error(`received ${signal}`)));
exitWithParent(Number(process.env.TENSORFLEET_PARENT_PID) || undefined, EXIT_FAILURE);

worker.run(controller.signal).then(
  () => process.exit(EXIT_OK),
  (err) => {
    process.stderr.write(`worker: ${(err as Error).message}\n`);
    process.exit(EXIT_FAILURE);
  },
);
