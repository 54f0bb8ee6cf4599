#!/usr/bin/env node
/** `worker`: attaches to a coordinator and computes gradients until told to stop. */
import { Command, Option } from 'commander';
import { abortOnSignals, EXIT_FAILURE, EXIT_OK, parseOrExit, usageError } from '../common/cli.js';
import { BACKEND_CHOICES } from '../model/backend.js';
import { createLogger, LOG_LEVELS } from '../telemetry/logger.js';
import { TrainingWorker } from './worker.js';

const program = new Command('worker')
  .description('Compute gradients for a tensorfleet coordinator.')
  .addOption(new Option('--coordinator <host:port>', 'address of the coordinator').env('TENSORFLEET_COORDINATOR'))
  .addOption(new Option('--backend <name>', 'compute backend').choices(BACKEND_CHOICES).default('auto').env('TENSORFLEET_BACKEND'))
  .addOption(new Option('--id <name>', 'worker name (default: HOSTNAME-PID)').env('TENSORFLEET_WORKER_ID'))
  .addOption(new Option('--log-level <level>', 'log level (logs go to stderr as JSON)').choices(LOG_LEVELS).default('info').env('TENSORFLEET_LOG_LEVEL'))
  .allowExcessArguments(false);

parseOrExit(program, process.argv);
const flags = program.opts();
let worker: TrainingWorker;
try {
  worker = new TrainingWorker(
    { coordinator: flags.coordinator, backend: flags.backend, id: flags.id, logLevel: flags.logLevel },
    createLogger(flags.logLevel, { name: 'worker' }),
  );
} catch (err) {
  if (err instanceof TypeError) usageError('worker', err.message);
  throw err;
}
const controller = abortOnSignals();

worker.run(controller.signal).then(
  () => process.exit(EXIT_OK),
  (err) => {
    process.stderr.write(`worker: ${(err as Error).message}\n`);
    process.exit(controller.signal.aborted ? EXIT_OK : EXIT_FAILURE);
  },
);
