/**
 * Structured logging through pino, to stderr so stdout stays the CLI's own output: JSON lines,
 * or pino-pretty's colored lines when stderr is a terminal.
 */
import { createRequire } from 'node:module';
import { destination, pino } from 'pino';

import type { Logger } from 'pino';
export type { Logger } from 'pino';

export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

export function createLogger(level: LogLevel = 'info', bindings: Record<string, unknown> = {}, pretty = Boolean(process.stderr.isTTY)): Logger {
  const options = { level, base: { pid: process.pid, ...bindings } };
  if (pretty) {
    // Loaded only for terminals: JSON consumers never pay for it.
    const pinoPretty = createRequire(import.meta.url)('pino-pretty') as typeof import('pino-pretty').PinoPretty;
    return pino(options, pinoPretty({ destination: 2, sync: true, colorize: true, translateTime: 'SYS:HH:MM:ss.l', ignore: 'pid,hostname' }));
  }
  return pino(options, destination({ fd: 2, sync: true }));
}

/** A logger that drops everything (library use and tests). */
export const silentLogger: Logger = pino({ level: 'silent' });
