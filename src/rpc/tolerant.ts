/**
 * A service definition whose request deserializers never throw: bytes that do not parse reach
 * the handler as `{ kind: 'malformed', error }`, so it can answer INVALID_ARGUMENT (grpc-js
 * would answer INTERNAL, which reads as a server fault).
 */
import type * as grpc from '@grpc/grpc-js';

export const MALFORMED = 'malformed';

/** Why the message did not parse, or undefined for a message that did. */
export function malformed(msg: unknown): string | undefined {
  const m = msg as { kind?: unknown; error?: unknown } | null;
  return m?.kind === MALFORMED ? String(m.error) : undefined;
}

export function tolerantService(service: grpc.ServiceDefinition): grpc.ServiceDefinition {
  const out: Record<string, grpc.MethodDefinition<unknown, unknown>> = {};
  for (const [name, method] of Object.entries(service)) {
    out[name] = {
      ...method,
      requestDeserialize: (bytes: Buffer) => {
        try {
          return method.requestDeserialize(bytes);
        } catch (err) {
          return { kind: MALFORMED, error: (err as Error).message };
        }
      },
    };
  }
  return out;
}
