/**
 * Job-token authentication: every call carries `authorization: Bearer <token>`; the server
 * compares SHA-256 digests with timingSafeEqual, so the comparison takes the same time whatever
 * the token's length or content.
 */
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import * as grpc from '@grpc/grpc-js';

const HEADER = 'authorization';
const PREFIX = 'Bearer ';

export function generateToken(): string {
  return randomBytes(32).toString('base64url');
}

export function tokenMetadata(token: string | undefined): grpc.Metadata {
  const md = new grpc.Metadata();
  if (token) md.set(HEADER, `${PREFIX}${token}`);
  return md;
}

function digest(value: string): Buffer {
  return createHash('sha256').update(value, 'utf8').digest();
}

/** Checks call metadata against the expected token; undefined expected means auth is off. */
export class TokenVerifier {
  private readonly expected: Buffer | undefined;

  constructor(token: string | undefined) {
    this.expected = token ? digest(token) : undefined;
  }

  get enabled(): boolean {
    return this.expected !== undefined;
  }

  /** Returns undefined when accepted, otherwise why not (for the UNAUTHENTICATED status). */
  check(metadata: grpc.Metadata): string | undefined {
    if (!this.expected) return undefined;
    const values = metadata.get(HEADER);
    if (values.length === 0) return 'missing job token';
    const header = String(values[0]);
    return this.checkToken(header.startsWith(PREFIX) ? header.slice(PREFIX.length) : '');
  }

  /** The same check of a token presented on its own (an exchange connection's hello; empty: none). */
  checkToken(presented: string): string | undefined {
    if (!this.expected) return undefined;
    if (presented === '') return 'missing job token';
    return timingSafeEqual(digest(presented), this.expected) ? undefined : 'wrong job token';
  }
}
