/**
 * What the command-line programs share: option parsers, the usage-error exit (code 2, one
 * line), and the one place that handles SIGINT/SIGTERM.
 */
import { CommanderError, InvalidArgumentError, type Command } from 'commander';

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

/** Seconds (decimals allowed) to whole milliseconds. */
export function parseSeconds(value: string): number {
  const n = parseNumber(value);
  if (n < 0) throw new InvalidArgumentError('expected a number of seconds >= 0');
  return Math.round(n * 1000);
}

/**
 * An on/off flag that may come from the environment: `1`/`true`/`yes` is on, `0`/`false`/`no`
 * or empty is off, anything else is a usage error (commander would take any value as on).
 */
export function envFlag(programName: string, flagOn: boolean | undefined, name: string): boolean {
  if (flagOn) return true;
  const raw = process.env[name];
  if (raw === undefined) return false;
  const v = raw.trim().toLowerCase();
  if (['1', 'true', 'yes', 'on'].includes(v)) return true;
  if (['0', 'false', 'no', 'off', ''].includes(v)) return false;
  usageError(programName, `${name} must be true or false; got '${raw}'`);
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

/** Calls `onFirst` on the first SIGINT/SIGTERM; a second signal exits at once. */
export function onShutdownSignal(onFirst: (signal: NodeJS.Signals) => void): void {
  let seen = false;
  const handler = (signal: NodeJS.Signals) => {
    if (seen) process.exit(128 + (signal === 'SIGINT' ? 2 : 15));
    seen = true;
    onFirst(signal);
  };
  process.on('SIGINT', handler);
  process.on('SIGTERM', handler);
}

/** Exits when the process that launched this one is gone (local workers of a killed coordinator). */
export function exitWithParent(parentPid: number | undefined, code: number): void {
  if (!parentPid) return;
  setInterval(() => {
    if (process.ppid !== parentPid) process.exit(code);
  }, 1000).unref();
}
