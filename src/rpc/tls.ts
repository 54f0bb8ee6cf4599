/**
 * Transport credentials. With --tls-cert/--tls-key the coordinator serves TLS; adding --tls-ca
 * makes it require client certificates signed by that CA (mutual TLS). Workers verify the
 * coordinator with --tls-ca and present --tls-cert/--tls-key when mutual TLS is on.
 */
import { readFileSync } from 'node:fs';
import * as grpc from '@grpc/grpc-js';

export interface TlsFiles {
  cert?: string;
  key?: string;
  ca?: string;
}

export class TlsConfigError extends TypeError {
  override readonly name = 'TlsConfigError';
}

function read(what: string, path: string): Buffer {
  try {
    return readFileSync(path);
  } catch (err) {
    throw new TlsConfigError(`cannot read ${what} file '${path}': ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
}

export function tlsEnabled(files: TlsFiles): boolean {
  return Boolean(files.cert || files.key || files.ca);
}

export function serverCredentials(files: TlsFiles): grpc.ServerCredentials {
  if (!tlsEnabled(files)) return grpc.ServerCredentials.createInsecure();
  if (!files.cert || !files.key) throw new TlsConfigError('TLS needs both --tls-cert and --tls-key on the coordinator');
  const ca = files.ca ? read('CA', files.ca) : null;
  return grpc.ServerCredentials.createSsl(ca, [{ cert_chain: read('certificate', files.cert), private_key: read('key', files.key) }], ca !== null);
}

export function channelCredentials(files: TlsFiles): grpc.ChannelCredentials {
  if (!tlsEnabled(files)) return grpc.credentials.createInsecure();
  if (Boolean(files.cert) !== Boolean(files.key)) throw new TlsConfigError('a client certificate needs both --tls-cert and --tls-key');
  return grpc.credentials.createSsl(
    files.ca ? read('CA', files.ca) : null,
    files.key ? read('key', files.key) : null,
    files.cert ? read('certificate', files.cert) : null,
  );
}
