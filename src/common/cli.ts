/**
 * What the command-line programs share: option parsers, the usage-error exit (code 2, one
 * line), and the one place that turns SIGINT/SIGTERM into an AbortSignal.
 */
import { Command, CommanderError, InvalidArgumentError } from 'commander';

export const EXIT_OK = 0;
export const EXIT_FAILURE = 1;
export const EXIT_USAGE = 2;

export function parseInteger(value: string): number {
  if (!/^-?\d+$/.test(value.trim())) throw new InvalidArgumentError('expected a whole number');
  return Number(value);
}

export function parseNumber(value: string): number {
  const n = Number(value);
  if (value.trim() === '' || !Number.isFinite(n)) throw new InvalidArgumentError('expected a number');
  return n;
}

/** Parses argv; on a usage error prints one line and exits 2 (help and version exit 0). */
export function parseOrExit(program: Command, argv: string[]): void {
  program.exitOverride();
  program.configureOutput({ writeErr: () => undefined });
  try {
    program.parse(argv);
  } catch (err) {
    if (err instanceof CommanderError) {
      if (err.code === 'commander.helpDisplayed' || err.code === 'commander.version' || err.exitCode === 0) process.exit(EXIT_OK);
      usageError(program.name(), err.message.replace(/^error: /, ''));
    }
    throw err;
  }
}

export function usageError(programName: string, message: string): never {
  process.stderr.write(`${programName}: ${message.split('\n')[0]} (see ${programName} --help)\n`);
  process.exit(EXIT_USAGE);
}

/** An AbortController aborted by the first SIGINT/SIGTERM; a second one exits at once. */
export function abortOnSignals(onSignal?: (signal: NodeJS.Signals) => void): AbortController {
  const controller = new AbortController();
  const handler = (signal: NodeJS.Signals) => {
    if (controller.signal.aborted) process.exit(128 + (signal === 'SIGINT' ? 2 : 15));
    onSignal?.(signal);
    controller.abort(new Error(`received ${signal}`));
  };
  process.on('SIGINT', handler);
  process.on('SIGTERM', handler);
  return controller;
}
