import * as http2 from 'node:http2';
import * as grpc from '@grpc/grpc-js';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { FLOW_CONTROL_WINDOW, raiseServerWindows, serverOptions } from '../../src/rpc/flow-control.js';

describe('server flow-control windows', () => {
  let server: grpc.Server | undefined;
  let session: http2.ClientHttp2Session | undefined;
  afterEach(async () => {
    session?.destroy();
    await new Promise<void>((resolve) => (server ? server.tryShutdown(() => resolve()) : resolve()));
    server = session = undefined;
  });

  async function start(raise: boolean): Promise<http2.ClientHttp2Session> {
    server = new grpc.Server(serverOptions());
    if (raise) raiseServerWindows(server, 'beforeBind');
    const port = await new Promise<number>((resolve, reject) =>
      server!.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p))),
    );
    if (raise) raiseServerWindows(server, 'afterBind');
    const s = http2.connect(`http://127.0.0.1:${port}`);
    session = s;
    await new Promise<void>((resolve, reject) => s.once('remoteSettings', () => resolve()).once('error', reject));
    return s;
  }

  it('advertises the raised per-stream window and widens the connection window of each session', async () => {
    const s = await start(true);
    expect(s.remoteSettings.initialWindowSize).toBe(FLOW_CONTROL_WINDOW);
    // The connection-level WINDOW_UPDATE follows the SETTINGS frame.
    await vi.waitFor(() => expect(s.state.remoteWindowSize).toBe(FLOW_CONTROL_WINDOW), { timeout: 5000, interval: 5 });
  });

  it("without it, grpc-js servers keep HTTP/2's 64 KiB windows (what the hook is for)", async () => {
    const s = await start(false);
    expect(s.remoteSettings.initialWindowSize).toBe(65535);
    expect(s.state.remoteWindowSize).toBe(65535);
  });
});
