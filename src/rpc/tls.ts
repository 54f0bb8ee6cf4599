/**
 * Transport credentials. With --tls-cert/--tls-key the coordinator serves TLS; adding --tls-ca
 * makes it require client certificates signed by that CA (mutual TLS). Workers verify the
 * coordinator with --tls-ca and present --tls-cert/--tls-key when mutual TLS is on.
 */
import { X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import * as grpc from '@grpc/grpc-js';
import type * as tls from 'node:tls';

export interface TlsFiles {
  cert?: string;
  key?: string;
  ca?: string;
}

const CLIENT_AUTH = '1.3.6.1.5.5.7.3.2';

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

function certificates(what: string, path: string): X509Certificate[] {
  const pem = read(what, path).toString('utf8');
  const blocks = pem.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? [];
  try {
    return blocks.map((b) => new X509Certificate(b));
  } catch (err) {
    throw new TlsConfigError(`'${path}' holds a certificate that cannot be parsed (${(err as Error).message})`);
  }
}

/**
 * Local workers (--launch local) verify the coordinator with --tls-ca when given, else with the
 * --tls-cert file itself, and present --tls-cert/--tls-key under mutual TLS. Checks that this
 * can work and says what to change when it cannot; returns the CA file local workers trust.
 */
export function checkLocalWorkerTls(files: TlsFiles): string {
  const trustFile = files.ca ?? files.cert!;
  const [leaf] = certificates('certificate', files.cert!);
  if (!leaf) throw new TlsConfigError(`'${files.cert}' holds no PEM certificate`);
  const trusted = certificates('CA', trustFile);
  const verifiable = trusted.some((t) => leaf.checkIssued(t) && leaf.verify(t.publicKey));
  if (!verifiable) {
    throw new TlsConfigError(
      `with --launch local, local workers must verify --tls-cert: use a self-signed certificate, put its CA certificate after it in the --tls-cert file, or give --tls-ca (the CA that signed it)`,
    );
  }
  if (files.ca) {
    const usages = leaf.keyUsage;
    if (usages !== undefined && !usages.includes(CLIENT_AUTH)) {
      throw new TlsConfigError(`with --launch local and mutual TLS, local workers present --tls-cert as their client certificate, so it must allow client authentication (extendedKeyUsage clientAuth)`);
    }
  }
  return trustFile;
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
  return grpc.credentials.createSsl(files.ca ? read('CA', files.ca) : null, files.key ? read('key', files.key) : null, files.cert ? read('certificate', files.cert) : null);
}

/** The same credentials for a node:tls server (the shards' exchange connections, frames.ts). */
export function tlsServerOptions(files: TlsFiles): tls.TlsOptions {
  if (!files.cert || !files.key) throw new TlsConfigError('TLS needs both --tls-cert and --tls-key');
  const ca = files.ca ? read('CA', files.ca) : undefined;
  return { cert: read('certificate', files.cert), key: read('key', files.key), ca, requestCert: ca !== undefined, rejectUnauthorized: ca !== undefined };
}

/** The same credentials for a node:tls client. */
export function tlsClientOptions(files: TlsFiles): tls.ConnectionOptions {
  if (Boolean(files.cert) !== Boolean(files.key)) throw new TlsConfigError('a client certificate needs both --tls-cert and --tls-key');
  return { ca: files.ca ? read('CA', files.ca) : undefined, cert: files.cert ? read('certificate', files.cert) : undefined, key: files.key ? read('key', files.key) : undefined };
}
