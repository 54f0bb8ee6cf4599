/** Worker options: `WorkerOptions` (CLI flags and TENSORFLEET_* env vars) -> compileWorkerOptions(). */
import { hostname } from 'node:os';
import { BACKEND_CHOICES, isBackendChoice, type BackendChoice } from '../model/backend.js';
import { LOG_LEVELS, type LogLevel } from '../telemetry/logger.js';

export interface WorkerOptions {
  /** HOST:PORT of the coordinator. Required. */
  coordinator?: string;
  /** Default auto. */
  backend?: string;
  /** Worker name; default `<hostname>-<pid>`. */
  id?: string;
  logLevel?: string;
}

export interface CompiledWorkerOptions {
  coordinator: string;
  backend: BackendChoice;
  id: string;
  logLevel: LogLevel;
}

export function compileWorkerOptions(options: WorkerOptions): CompiledWorkerOptions {
  const target = options.coordinator;
  if (!target || !/^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+):\d{1,5}$/.test(target)) {
    throw new TypeError(`coordinator must be HOST:PORT; got '${target ?? ''}'`);
  }
  const backend = options.backend ?? 'auto';
  if (!isBackendChoice(backend)) throw new TypeError(`backend must be one of ${BACKEND_CHOICES.join(', ')}; got '${backend}'`);
  const logLevel = options.logLevel ?? 'info';
  if (!(LOG_LEVELS as readonly string[]).includes(logLevel)) throw new TypeError(`logLevel must be one of ${LOG_LEVELS.join(', ')}; got '${logLevel}'`);
  return { coordinator: target, backend, id: options.id || `${hostname()}-${process.pid}`, logLevel: logLevel as LogLevel };
}
