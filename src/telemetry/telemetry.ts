/**
 * Everything that watches a run, behind the coordinator's hooks: the progress line, Prometheus
 * metrics, the live dashboard's feed and its HTTP server, and the trace recorder. Each part is
 * optional; the hooks call only the parts that exist.
 */
import { LiveFeed, type FeedInfo, type RunStatus } from './live-feed.js';
import { TelemetryServer } from './http-server.js';
import type { Logger } from './logger.js';
import { RunMetrics } from './metrics.js';
import type { Progress } from './progress.js';
import { TraceRecorder } from './trace.js';
import type { MembershipChange, StepAborted, StepDetail, TelemetryEpoch, TelemetrySource, TelemetryStep } from './types.js';

export interface TelemetryOptions {
  epochs: number;
  log: Logger;
  progress?: Progress;
  /** Serve /metrics, /healthz and the dashboard; undefined: no HTTP server, no metrics, no feed. */
  http?: { host: string; port: number; fallbackToFreePort?: boolean; flushMs?: number };
  /** Record a trace (written by close()). */
  trace?: boolean;
  /** Also register prom-client's process metrics. Default true. */
  processMetrics?: boolean;
}

export interface TelemetryHooks {
  onStep: (e: TelemetryStep) => void;
  onEpoch: (e: TelemetryEpoch) => void;
  onStepDetail: (d: StepDetail) => void;
  onStepAborted: (e: StepAborted) => void;
}

export class Telemetry {
  readonly feed: LiveFeed | undefined;
  readonly metrics: RunMetrics | undefined;
  readonly trace: TraceRecorder | undefined;
  server: TelemetryServer | undefined;
  private source: TelemetrySource | undefined;
  private readonly log: Logger;

  constructor(private readonly options: TelemetryOptions) {
    this.log = options.log.child({ component: 'telemetry' });
    if (options.http) {
      this.feed = new LiveFeed(options.epochs);
      this.metrics = new RunMetrics({ processMetrics: options.processMetrics });
    }
    if (options.trace) this.trace = new TraceRecorder();
  }

  /** The coordinator's hooks, calling only the parts that exist. */
  hooks(): TelemetryHooks {
    const { progress } = this.options;
    const { feed, metrics, trace, log } = this;
    const debug = log.isLevelEnabled('debug');
    return {
      onStep: (e) => {
        progress?.step(e);
        metrics?.onStep(e);
        feed?.onStep(e);
      },
      onEpoch: (e) => {
        progress?.epoch(e);
        metrics?.onEpoch(e);
        feed?.onEpoch(e);
        trace?.onEpoch(e);
      },
      onStepDetail: (d) => {
        metrics?.onStepDetail(d);
        feed?.onStepDetail(d);
        trace?.onStepDetail(d);
        if (debug) {
          const slowest = d.slowest >= 0 ? d.workers[d.slowest]!.id : undefined;
          log.debug({ step: d.step, epoch: d.epoch, stepMs: d.committedAtMs - d.dispatchedAtMs, workers: d.workers.length, slowest, waitCausedMs: d.waitCausedMs }, 'step committed');
        }
      },
      onStepAborted: (e) => {
        feed?.onStepAborted(e);
        trace?.onStepAborted(e);
      },
    };
  }

  onMembership(e: MembershipChange): void {
    this.feed?.onMembership(e);
    this.trace?.onMembership(e);
  }

  setStatus(status: RunStatus, detail?: string): void {
    this.feed?.setStatus(status, detail);
  }

  /** Connects the counters and starts the HTTP server (when asked for). Returns the dashboard's URL. */
  async start(source: TelemetrySource, info: FeedInfo): Promise<string | undefined> {
    this.source = source;
    this.metrics?.setSource(source, info);
    this.feed?.setInfo(info);
    this.feed?.setStatus('waiting');
    const http = this.options.http;
    if (!http || !this.feed) return undefined;
    this.server = new TelemetryServer({
      host: http.host,
      port: http.port,
      fallbackToFreePort: http.fallbackToFreePort,
      flushMs: http.flushMs,
      feed: this.feed,
      metrics: this.metrics,
      log: this.log,
      health: () => {
        const c = this.source?.counters();
        return { status: this.feed!.status, step: c?.steps ?? 0, workers: c?.members ?? 0 };
      },
    });
    await this.server.start();
    this.log.info({ port: this.server.port, url: this.server.url }, 'serving metrics and the dashboard');
    return this.server.url;
  }

  /** Writes the trace (when recording one) and closes the HTTP server. Returns the trace's straggler line inputs. */
  async close(tracePath?: string, extra: Record<string, unknown> = {}): Promise<void> {
    try {
      if (this.trace && tracePath) {
        const events = this.trace.write(tracePath, extra);
        this.log.info({ path: tracePath, events, steps: this.trace.stepCount }, 'trace written');
      }
    } finally {
      await this.server?.close();
    }
  }
}
