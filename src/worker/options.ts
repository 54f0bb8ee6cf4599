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
  /** The job token (sent with every call). */
  token?: string;
  /** PEM files: the CA that signed the coordinator's certificate; a client certificate for mutual TLS. */
  tlsCa?: string;
  tlsCert?: string;
  tlsKey?: string;
  /** Keep trying to reach the coordinator this long (at start, and after losing it). Default 120000. */
  connectTimeoutMs?: number;
  logLevel?: string;
}

export interface CompiledWorkerOptions {
  coordinator: string;
  backend: BackendChoice;
  id: string;
  token: string | undefined;
  tls: { ca?: string; cert?: string; key?: string };
  connectTimeoutMs: number;
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
  const connectTimeoutMs = options.connectTimeoutMs ?? 120_000;
  if (!Number.isInteger(connectTimeoutMs) || connectTimeoutMs < 0) throw new TypeError(`connectTimeoutMs must be a whole number of ms >= 0; got ${options.connectTimeoutMs}`);
  const id = options.id || `${hostname()}-${process.pid}`;
  if (!/^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/.test(id)) throw new TypeError(`id must be 1-128 letters, digits, '.', '_' or '-'; got '${id}'`);
  return {
    coordinator: target,
    backend,
    id,
    token: options.token || undefined,
    tls: { ca: options.tlsCa || undefined, cert: options.tlsCert || undefined, key: options.tlsKey || undefined },
    connectTimeoutMs,
    logLevel: logLevel as LogLevel,
  };
}
