#!/usr/bin/env node
/**
 * `parameter-server`: one parameter-server shard (tensorfleet.v1.ParameterShard) for a
 * coordinator run with `--ps-mode process`. It holds nothing until the coordinator's Init.
 * Logs go to stderr (pino); stdout carries exactly one line, `{"port":N}`, once it listens, so a
 * parent that started it with `--port 0` learns the port. Workers exchange tensors with it on a
 * second port (`--exchange-port`), which the coordinator learns over the gRPC port. SIGTERM/SIGINT close it (exit 0); it
 * also exits when TENSORFLEET_PARENT_PID names a parent that is gone.
 * Exit codes: 0 closed, 1 failed (e.g. the port is taken), 2 usage.
 */
import { Command, Option } from 'commander';
import { envFlag, EXIT_FAILURE, EXIT_OK, exitWithParent, onShutdownSignal, parseInteger, parseOrExit, usageError } from '../common/cli.js';
import { tlsEnabled } from '../rpc/tls.js';
import { createLogger, LOG_LEVELS } from '../telemetry/logger.js';
import { ShardServer } from './shard-server.js';

const opt = (flags: string, description: string, env: string) => new Option(flags, description).env(`TENSORFLEET_${env}`);
const program = new Command('parameter-server')
  .description('Serve one parameter-server shard for a tensorfleet coordinator (--ps-mode process).')
  .addOption(opt('--port <p>', 'port to listen on (0: any free port, printed as {"port":N} on stdout)', 'PS_PORT').argParser(parseInteger).default(0))
  .addOption(opt('--exchange-port <p>', "port of the workers' exchange connections (0: any free port; the coordinator tells the workers)", 'PS_EXCHANGE_PORT').argParser(parseInteger).default(0))
  .addOption(opt('--host <h>', 'address to listen on (0.0.0.0 for workers on other machines)', 'PS_HOST').default('127.0.0.1'))
  .addOption(opt('--token <token>', 'the job token every call must present (prefer the environment variable)', 'TOKEN'))
  .addOption(new Option('--insecure', 'run without a job token (env: TENSORFLEET_INSECURE=true)'))
  .addOption(opt('--tls-cert <file>', 'PEM certificate: serve TLS', 'TLS_CERT'))
  .addOption(opt('--tls-key <file>', 'PEM private key of --tls-cert', 'TLS_KEY'))
  .addOption(opt('--tls-ca <file>', 'PEM CA: require client certificates signed by it (mutual TLS)', 'TLS_CA'))
  .addOption(opt('--log-level <level>', 'log level (logs go to stderr)', 'LOG_LEVEL').choices(LOG_LEVELS).default('info'))
  .allowExcessArguments(false);

parseOrExit(program, process.argv);
const flags = program.opts();
const insecure = envFlag('parameter-server', flags.insecure, 'TENSORFLEET_INSECURE');
if (insecure && flags.token) usageError('parameter-server', '--insecure and --token (or TENSORFLEET_TOKEN) exclude each other: give one');
if (!insecure && !flags.token) usageError('parameter-server', 'a job token is required (--token or TENSORFLEET_TOKEN), or --insecure');
if (flags.port < 0 || flags.port > 65535) usageError('parameter-server', `--port must be from 0 to 65535; got ${flags.port}`);
if (flags.exchangePort < 0 || flags.exchangePort > 65535) usageError('parameter-server', `--exchange-port must be from 0 to 65535; got ${flags.exchangePort}`);
if (flags.exchangePort !== 0 && flags.exchangePort === flags.port) usageError('parameter-server', '--exchange-port must differ from --port');
const tls = { cert: flags.tlsCert, key: flags.tlsKey, ca: flags.tlsCa };
if (tlsEnabled(tls) && !(tls.cert && tls.key)) usageError('parameter-server', 'TLS needs both --tls-cert and --tls-key');
const log = createLogger(flags.logLevel, { name: 'parameter-server' });
const server = new ShardServer({ token: insecure ? undefined : flags.token, tls, exchangePort: flags.exchangePort }, log);
exitWithParent(Number(process.env.TENSORFLEET_PARENT_PID) || undefined, EXIT_FAILURE);
onShutdownSignal((signal) => {
  log.info({ signal }, 'signal received; closing');
  void server.close().then(() => process.exit(EXIT_OK));
});
if (insecure) log.warn('running without a job token (--insecure): anyone who can reach the port can drive this shard');

server.start(flags.host, flags.port).then(
  (port) => {
    log.info({ host: flags.host, port, exchangePort: server.exchangePort, tls: Boolean(tls.cert) }, 'parameter-server shard listening');
    process.stdout.write(`${JSON.stringify({ port })}\n`);
  },
  (err) => {
    process.stderr.write(`parameter-server: cannot listen on ${flags.host}:${flags.port}: ${(err as Error).message}\n`);
    process.exit(EXIT_FAILURE);
  },
);
