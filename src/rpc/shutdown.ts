/** Stops a grpc-js server: lets calls finish for up to `graceMs`, then cuts the rest. */
import type * as grpc from '@grpc/grpc-js';

export function shutdownServer(server: grpc.Server, graceMs: number): Promise<void> {
  return new Promise<void>((resolve) => {
    const timer = setTimeout(() => {
      server.forceShutdown();
      resolve();
    }, graceMs);
    timer.unref();
    server.tryShutdown(() => {
      clearTimeout(timer);
      resolve();
    });
  });
}
