/**
 * Test PKI made with the `openssl` command: a CA, a server certificate for localhost and
 * 127.0.0.1, and a client certificate, all signed by the CA (P-256 keys, valid two days).
 */
import { execFileSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

export interface TestPki {
  dir: string;
  caCert: string;
  caKey: string;
  serverCert: string;
  serverKey: string;
  clientCert: string;
  clientKey: string;
  /** A second, unrelated CA (a worker that trusts it must not trust the coordinator). */
  otherCaCert: string;
  /** The server certificate followed by the CA certificate (a "full chain" file). */
  serverFullChain: string;
  /** A certificate for localhost valid for both server and client authentication. */
  dualCert: string;
  dualKey: string;
}

function openssl(args: string[], cwd: string): void {
  try {
    execFileSync('openssl', args, { cwd, stdio: ['ignore', 'pipe', 'pipe'] });
  } catch (err) {
    const e = err as NodeJS.ErrnoException & { stderr?: Buffer };
    if (e.code === 'ENOENT') throw new Error('the `openssl` command is not installed: run `apt-get install openssl` (the TLS tests make their certificates with it)');
    throw new Error(`openssl ${args.join(' ')} failed: ${e.stderr?.toString() ?? e.message}`);
  }
}

/** Fails with a clear message when the openssl CLI is missing. */
export function opensslVersion(): string {
  try {
    return execFileSync('openssl', ['version'], { encoding: 'utf8' }).trim();
  } catch (err) {
    throw new Error(`the \`openssl\` command does not work (${(err as Error).message}): run \`apt-get install openssl\` (the TLS tests make their certificates with it)`);
  }
}

const EC = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];

function makeCa(dir: string, name: string): { cert: string; key: string } {
  const cert = join(dir, `${name}.pem`);
  const key = join(dir, `${name}.key`);
  openssl(
    ['req', '-x509', ...EC, '-keyout', key, '-out', cert, '-days', '2', '-subj', `/CN=${name}`,
      '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign'],
    dir,
  );
  return { cert, key };
}

function makeLeaf(dir: string, name: string, ca: { cert: string; key: string }, extensions: string): { cert: string; key: string } {
  const cert = join(dir, `${name}.pem`);
  const key = join(dir, `${name}.key`);
  const csr = join(dir, `${name}.csr`);
  const ext = join(dir, `${name}.ext`);
  writeFileSync(ext, extensions);
  openssl(['req', '-new', ...EC, '-keyout', key, '-out', csr, '-subj', `/CN=${name}`], dir);
  openssl(['x509', '-req', '-in', csr, '-CA', ca.cert, '-CAkey', ca.key, '-CAcreateserial', '-out', cert, '-days', '2', '-extfile', ext], dir);
  return { cert, key };
}

export function makeTestPki(dir: string): TestPki {
  opensslVersion();
  const ca = makeCa(dir, 'ca');
  const other = makeCa(dir, 'other-ca');
  const server = makeLeaf(
    dir,
    'server',
    ca,
    'basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\nsubjectAltName=DNS:localhost,IP:127.0.0.1\n',
  );
  const client = makeLeaf(dir, 'client', ca, 'basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=clientAuth\n');
  const dual = makeLeaf(
    dir,
    'dual',
    ca,
    'basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth,clientAuth\nsubjectAltName=DNS:localhost,IP:127.0.0.1\n',
  );
  const serverFullChain = join(dir, 'server-fullchain.pem');
  writeFileSync(serverFullChain, readFileSync(server.cert, 'utf8') + readFileSync(ca.cert, 'utf8'));
  return {
    dir, caCert: ca.cert, caKey: ca.key, serverCert: server.cert, serverKey: server.key, clientCert: client.cert, clientKey: client.key,
    otherCaCert: other.cert, serverFullChain, dualCert: dual.cert, dualKey: dual.key,
  };
}
