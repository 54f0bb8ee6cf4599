/**
 * The coordinator's HTTP port (`--http-port`): Prometheus metrics at /metrics, /healthz for
 * people and load balancers, the live dashboard at / with its assets (uPlot from node_modules,
 * nothing from the internet), and /events, a server-sent-events stream of the dashboard's data:
 * a snapshot on connect, then what is new, at most every `flushMs` and only while a client is
 * connected. /api/state is the snapshot as plain JSON.
 */
import { readFileSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createRequire } from 'node:module';
import { hostname } from 'node:os';
import { fileURLToPath } from 'node:url';
import type { Logger } from './logger.js';
import type { FeedCursor, LiveFeed } from './live-feed.js';
import type { RunMetrics } from './metrics.js';

export interface HealthInfo {
  status: string;
  step: number;
  workers: number;
}

export interface TelemetryServerOptions {
  host: string;
  port: number;
  /** When the port is taken, take any free one (for a default port) instead of failing. */
  fallbackToFreePort?: boolean;
  feed: LiveFeed;
  metrics?: RunMetrics;
  health: () => HealthInfo;
  log: Logger;
  /** How often connected dashboards get what is new (ms). Default 250. */
  flushMs?: number;
}

interface Asset {
  body: Buffer;
  type: string;
}

interface Client {
  res: ServerResponse;
  cursor: FeedCursor;
}

const DASHBOARD_DIR = fileURLToPath(new URL('../../dashboard/', import.meta.url));
const SECURITY_HEADERS = {
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'no-referrer',
  'content-security-policy': "default-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'",
};

function loadAssets(): Map<string, Asset> {
  const require = createRequire(import.meta.url);
  const file = (path: string, type: string): Asset => ({ body: readFileSync(path), type });
  return new Map([
    ['/', file(`${DASHBOARD_DIR}index.html`, 'text/html; charset=utf-8')],
    ['/assets/dashboard.js', file(`${DASHBOARD_DIR}dashboard.js`, 'text/javascript; charset=utf-8')],
    ['/assets/dashboard.css', file(`${DASHBOARD_DIR}dashboard.css`, 'text/css; charset=utf-8')],
    ['/assets/uPlot.iife.min.js', file(require.resolve('uplot/dist/uPlot.iife.min.js'), 'text/javascript; charset=utf-8')],
    ['/assets/uPlot.min.css', file(require.resolve('uplot/dist/uPlot.min.css'), 'text/css; charset=utf-8')],
  ]);
}

export class TelemetryServer {
  private readonly server: Server;
  private readonly assets = loadAssets();
  private readonly clients = new Set<Client>();
  private timer: NodeJS.Timeout | undefined;
  private ticks = 0;
  port = 0;

  constructor(private readonly options: TelemetryServerOptions) {
    this.server = createServer((req, res) => {
      this.handle(req, res).catch((err: Error) => {
        options.log.warn({ err: err.message, url: req.url }, 'http request failed');
        if (!res.headersSent) res.writeHead(500, { 'content-type': 'text/plain' });
        res.end('internal error\n');
      });
    });
    this.server.keepAliveTimeout = 5000;
  }

  get clientCount(): number {
    return this.clients.size;
  }

  /** Listens; returns the port. */
  async start(): Promise<number> {
    const { host, port } = this.options;
    try {
      this.port = await this.listen(host, port);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (!(code === 'EADDRINUSE' && this.options.fallbackToFreePort)) throw err;
      this.options.log.warn({ port }, 'http port in use; serving metrics and the dashboard on a free port instead');
      this.port = await this.listen(host, 0);
    }
    return this.port;
  }

  private listen(host: string, port: number): Promise<number> {
    return new Promise((resolve, reject) => {
      const onError = (err: Error) => reject(err);
      this.server.once('error', onError);
      this.server.listen(port, host, () => {
        this.server.off('error', onError);
        const addr = this.server.address();
        resolve(typeof addr === 'object' && addr ? addr.port : port);
      });
    });
  }

  /** The dashboard's address for people (a wildcard host is shown as this machine's name). */
  get url(): string {
    const h = this.options.host;
    const shown = h === '0.0.0.0' || h === '::' ? hostname() : h.includes(':') ? `[${h}]` : h;
    return `http://${shown}:${this.port}/`;
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const path = (req.url ?? '/').split('?')[0]!;
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { allow: 'GET, HEAD', 'content-type': 'text/plain' });
      res.end('method not allowed\n');
      return;
    }
    const head = req.method === 'HEAD';
    const send = (code: number, type: string, body: string | Buffer, extra: Record<string, string> = {}) => {
      res.writeHead(code, { 'content-type': type, 'content-length': Buffer.byteLength(body), ...SECURITY_HEADERS, ...extra });
      res.end(head ? undefined : body);
    };
    switch (path) {
      case '/metrics': {
        const m = this.options.metrics;
        if (!m) return send(404, 'text/plain', 'metrics are off\n');
        return send(200, m.contentType, await m.metrics(), { 'cache-control': 'no-store' });
      }
      case '/healthz': {
        const h = this.options.health();
        const ok = h.status !== 'failed';
        return send(ok ? 200 : 503, 'application/json', `${JSON.stringify({ ok, ...h, uptimeSeconds: Math.round(process.uptime()) })}\n`, { 'cache-control': 'no-store' });
      }
      case '/api/state':
        return send(200, 'application/json', JSON.stringify(this.options.feed.snapshot().payload), { 'cache-control': 'no-store' });
      case '/events':
        if (head) return send(200, 'text/event-stream', '');
        return this.subscribe(req, res);
      default: {
        const asset = this.assets.get(path === '/index.html' ? '/' : path);
        if (!asset) return send(404, 'text/plain', 'not found\n');
        return send(200, asset.type, asset.body, { 'cache-control': path === '/' ? 'no-cache' : 'max-age=300' });
      }
    }
  }

  private subscribe(req: IncomingMessage, res: ServerResponse): void {
    res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-store', connection: 'keep-alive', 'x-accel-buffering': 'no', ...SECURITY_HEADERS });
    res.socket?.setNoDelay(true);
    const { payload, cursor } = this.options.feed.snapshot();
    res.write(`retry: 2000\nevent: snapshot\ndata: ${JSON.stringify(payload)}\n\n`);
    const client: Client = { res, cursor };
    this.clients.add(client);
    req.on('close', () => {
      this.clients.delete(client);
      if (this.clients.size === 0) this.stopTimer();
    });
    if (!this.timer) {
      this.timer = setInterval(() => this.flush(), this.options.flushMs ?? 250);
      this.timer.unref();
    }
  }

  private stopTimer(): void {
    clearInterval(this.timer);
    this.timer = undefined;
  }

  /** Sends every client what is new since its cursor; clients at the same cursor share one JSON. */
  flush(): void {
    this.ticks++;
    const feed = this.options.feed;
    const built = new Map<string, { text: string; cursor: FeedCursor }>();
    for (const c of this.clients) {
      const now = feed.cursor();
      const moved = JSON.stringify(now) !== JSON.stringify(c.cursor);
      if (!moved && this.ticks % 8 !== 0) continue; // status and progress (ETA) still refresh every 2 s
      const key = JSON.stringify(c.cursor);
      let out = built.get(key);
      if (!out) {
        const u = feed.since(c.cursor);
        out = { text: `event: ${u.snapshot ? 'snapshot' : 'update'}\ndata: ${JSON.stringify(u.payload)}\n\n`, cursor: u.cursor };
        built.set(key, out);
      }
      c.cursor = out.cursor;
      c.res.write(out.text);
    }
  }

  /** Sends the last data and an `end` event, then closes. */
  async close(): Promise<void> {
    this.stopTimer();
    this.ticks = 7; // the final flush sends status even when nothing else moved
    this.flush();
    for (const c of this.clients) c.res.end(`event: end\ndata: ${JSON.stringify({ status: this.options.feed.status })}\n\n`);
    this.clients.clear();
    const closed = new Promise<void>((resolve) => this.server.close(() => resolve()));
    this.server.closeIdleConnections();
    const force = setTimeout(() => this.server.closeAllConnections(), 1000);
    await closed;
    clearTimeout(force);
  }
}
