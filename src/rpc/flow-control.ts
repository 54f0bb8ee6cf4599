/**
 * HTTP/2 flow-control windows and message limits for every channel and server of the project.
 *
 * HTTP/2 lets a sender put only one receive window of data in flight per stream and per
 * connection before the receiver grants more (WINDOW_UPDATE). Node's default window is 64 KiB,
 * so a 2.78 MB gradient crosses in ~43 window-sized bursts, each waiting for the receiver's event
 * loop to grant more: on loopback that alone held a worker's upload for ~20 ms per step, and on
 * a real link it caps a stream at window / round-trip time (64 KiB / 0.2 ms = 2.6 Gb/s).
 *
 * Clients raise their receive window with grpc-js' `grpc-node.flow_control_window`. Servers
 * cannot yet (grpc-js 1.14 reads that option on the client only; grpc/grpc-node#3058 adds it to
 * the server): `raiseServerWindows()` sets the per-stream window the server advertises and the
 * connection window of each new session through the server's own HTTP/2 options, and throws if
 * grpc-js' internals ever stop offering that hook (a test guards it), rather than silently
 * leaving uploads throttled.
 */
import type * as http2 from 'node:http2';
import type * as grpc from '@grpc/grpc-js';

/** Receive window of every stream and connection: 16 MiB, several models' worth of chunks in flight. */
export const FLOW_CONTROL_WINDOW = 16 * 1024 * 1024;
/** gRPC's own message limit; tensor chunks are ~1 MiB (DEFAULT_CHUNK_BYTES). */
export const MAX_MESSAGE_BYTES = 4 * 1024 * 1024;

/** Channel options of every client (workers to the coordinator and shards, the coordinator to shards). */
export function clientChannelOptions(): grpc.ChannelOptions {
  return {
    'grpc.max_receive_message_length': MAX_MESSAGE_BYTES,
    'grpc-node.flow_control_window': FLOW_CONTROL_WINDOW,
  };
}

/** Options of every server; pair with raiseServerWindows() before binding. */
export function serverOptions(): grpc.ServerOptions {
  return {
    'grpc.max_receive_message_length': MAX_MESSAGE_BYTES,
    'grpc.max_send_message_length': MAX_MESSAGE_BYTES,
    // Read by grpc-js versions that support it on servers; raiseServerWindows() covers the others.
    'grpc-node.flow_control_window': FLOW_CONTROL_WINDOW,
  };
}

interface ServerInternals {
  commonServerOptions?: http2.ServerOptions;
  http2Servers?: Map<http2.Http2Server, unknown>;
}

/** Sessions already widened (a server may be bound and re-scanned). */
const widened = new WeakSet<http2.Http2Session>();

/**
 * Makes `server` advertise FLOW_CONTROL_WINDOW as its per-stream receive window (call before
 * bindAsync) and widen each new connection's window (call again after bindAsync: `afterBind`).
 */
export function raiseServerWindows(server: grpc.Server, stage: 'beforeBind' | 'afterBind', windowBytes = FLOW_CONTROL_WINDOW): void {
  const internals = server as unknown as ServerInternals;
  if (stage === 'beforeBind') {
    const common = internals.commonServerOptions;
    if (!common || typeof common !== 'object') throw new Error('grpc-js changed: cannot set the server flow-control window (no commonServerOptions)');
    common.settings = { ...common.settings, initialWindowSize: windowBytes };
    return;
  }
  const servers = internals.http2Servers;
  if (!(servers instanceof Map)) throw new Error('grpc-js changed: cannot set the server flow-control window (no http2Servers)');
  for (const h2 of servers.keys()) {
    if ((h2 as { __tensorfleetWindow?: boolean }).__tensorfleetWindow) continue;
    (h2 as { __tensorfleetWindow?: boolean }).__tensorfleetWindow = true;
    h2.on('session', (session: http2.ServerHttp2Session) => {
      if (widened.has(session)) return;
      widened.add(session);
      // The connection window (all streams together) starts at 64 KiB whatever the settings say.
      session.setLocalWindowSize(windowBytes);
    });
  }
}
