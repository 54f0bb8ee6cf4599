/**
 * Prometheus metrics after a short in-process run (2 workers, mlp, wasm), read over HTTP from
 * /metrics and parsed strictly as the text format; /healthz, /api/state, the dashboard's assets
 * and the server-sent events stream of the same server.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { familyOf, parseExposition, sampleValue, trainWatched, type Exposition, type WatchedRun } from '../helpers/telemetry-run.js';

/** Every metric family tensorfleet itself defines (process metrics come on top). */
const TENSORFLEET_METRICS = [
  'tensorfleet_info',
  'tensorfleet_steps_total',
  'tensorfleet_samples_total',
  'tensorfleet_epoch',
  'tensorfleet_train_loss',
  'tensorfleet_test_accuracy',
  'tensorfleet_test_loss',
  'tensorfleet_images_per_second',
  'tensorfleet_step_seconds',
  'tensorfleet_optimizer_seconds',
  'tensorfleet_step_phase_seconds',
  'tensorfleet_worker_steps_total',
  'tensorfleet_worker_samples_total',
  'tensorfleet_bytes_sent_total',
  'tensorfleet_bytes_received_total',
  'tensorfleet_straggler_steps_total',
  'tensorfleet_straggler_wait_seconds_total',
  'tensorfleet_workers',
  'tensorfleet_membership_changes_total',
  'tensorfleet_aborted_steps_total',
  'tensorfleet_rejected_contributions_total',
  'tensorfleet_heartbeat_timeouts_total',
  'tensorfleet_rejected_calls_total',
  'tensorfleet_stale_gradients_total',
];

let run: WatchedRun;
let base: string;
let text: string;
let exposition: Exposition;

beforeAll(async () => {
  run = await trainWatched({ workers: 2, batchSize: 32, trainLimit: 512, testLimit: 200, epochs: 1, model: 'mlp' });
  base = `http://127.0.0.1:${run.telemetry.server!.port}`;
  const res = await fetch(`${base}/metrics`);
  expect(res.status).toBe(200);
  expect(res.headers.get('content-type')).toMatch(/^text\/plain; version=0\.0\.4/);
  text = await res.text();
  exposition = parseExposition(text);
}, 120_000);

afterAll(async () => {
  await run?.telemetry.close();
});

describe('/metrics', () => {
  it('is valid text format: every sample belongs to a family with a TYPE and a HELP', () => {
    expect(exposition.samples.length).toBeGreaterThan(50);
    for (const s of exposition.samples) {
      const family = familyOf(s.name, exposition.types);
      expect(family, `TYPE of ${s.name}`).toBeDefined();
      expect(exposition.help.has(family!), `HELP of ${family}`).toBe(true);
    }
  });

  it('has every tensorfleet metric, with the right types', () => {
    const names = [...exposition.types.keys()].filter((n) => n.startsWith('tensorfleet_')).sort();
    expect(names).toEqual([...TENSORFLEET_METRICS].sort());
    for (const n of TENSORFLEET_METRICS) {
      const type = exposition.types.get(n);
      if (n.endsWith('_total')) expect(type, n).toBe('counter');
      else if (n.endsWith('_seconds')) expect(type, n).toBe('histogram');
      else expect(type, n).toBe('gauge');
    }
  });

  it('has process metrics', () => {
    for (const n of ['process_cpu_user_seconds_total', 'process_resident_memory_bytes', 'nodejs_eventloop_lag_seconds', 'nodejs_heap_size_used_bytes']) {
      expect(exposition.types.has(n), n).toBe(true);
    }
  });

  it('counts what the report counts', () => {
    const r = run.report;
    expect(r.status).toBe('completed');
    expect(sampleValue(exposition, 'tensorfleet_steps_total')).toBe(r.steps);
    expect(sampleValue(exposition, 'tensorfleet_samples_total')).toBe(512);
    expect(sampleValue(exposition, 'tensorfleet_epoch')).toBe(1);
    expect(sampleValue(exposition, 'tensorfleet_test_accuracy')).toBeCloseTo(r.testAccuracy!, 10);
    expect(sampleValue(exposition, 'tensorfleet_test_loss')).toBeCloseTo(r.testLoss!, 10);
    expect(sampleValue(exposition, 'tensorfleet_images_per_second')).toBeGreaterThan(0);
    expect(sampleValue(exposition, 'tensorfleet_train_loss')).toBeGreaterThan(0);
    expect(sampleValue(exposition, 'tensorfleet_aborted_steps_total')).toBe(0);
    expect(sampleValue(exposition, 'tensorfleet_rejected_contributions_total')).toBe(0);
    expect(sampleValue(exposition, 'tensorfleet_membership_changes_total')).toBe(r.membershipChanges);
    expect(sampleValue(exposition, 'tensorfleet_info', { model: 'mlp', backend: 'wasm', batch_size: '32', epochs: '1' })).toBe(1);
    expect(sampleValue(exposition, 'tensorfleet_step_seconds_count')).toBe(r.steps);
    expect(sampleValue(exposition, 'tensorfleet_optimizer_seconds_count')).toBe(r.steps);
  });

  it('labels the step phases and bytes by worker', () => {
    const r = run.report;
    for (const w of ['w0', 'w1']) {
      for (const phase of ['compute', 'encode', 'transfer', 'wait']) {
        expect(sampleValue(exposition, 'tensorfleet_step_phase_seconds_count', { worker: w, phase }), `${w} ${phase}`).toBe(r.steps);
        expect(sampleValue(exposition, 'tensorfleet_step_phase_seconds_bucket', { worker: w, phase, le: '+Inf' })).toBe(r.steps);
      }
      expect(sampleValue(exposition, 'tensorfleet_step_phase_seconds_sum', { worker: w, phase: 'compute' })).toBeGreaterThan(0);
      const sent = sampleValue(exposition, 'tensorfleet_bytes_sent_total', { worker: w })!;
      const received = sampleValue(exposition, 'tensorfleet_bytes_received_total', { worker: w })!;
      // 101,770 float32 parameters: every step sends the new weights and receives a gradient.
      expect(received).toBe(r.steps * 101_770 * 4);
      expect(sent).toBe(r.steps * 101_770 * 4);
      expect(sampleValue(exposition, 'tensorfleet_worker_samples_total', { worker: w })).toBe(256);
    }
    const stragglerSteps = (sampleValue(exposition, 'tensorfleet_straggler_steps_total', { worker: 'w0' }) ?? 0) + (sampleValue(exposition, 'tensorfleet_straggler_steps_total', { worker: 'w1' }) ?? 0);
    expect(stragglerSteps).toBe(r.steps);
  });

  it('reads the membership size when scraped', async () => {
    // the workers left when training ended
    expect(sampleValue(exposition, 'tensorfleet_workers')).toBe(0);
  });
});

describe('the rest of the HTTP port', () => {
  it('/healthz answers JSON for people and load balancers', async () => {
    const res = await fetch(`${base}/healthz`);
    expect(res.status).toBe(200);
    const body = (await res.json()) as Record<string, unknown>;
    expect(body).toMatchObject({ ok: true, status: 'completed', step: run.report.steps, workers: 0 });
  });

  it('/healthz answers 503 once the run failed', async () => {
    run.telemetry.setStatus('failed', 'test');
    try {
      const res = await fetch(`${base}/healthz`);
      expect(res.status).toBe(503);
      expect(((await res.json()) as { ok: boolean }).ok).toBe(false);
    } finally {
      run.telemetry.setStatus('completed');
    }
  });

  it('serves the dashboard and its bundled assets, nothing from elsewhere', async () => {
    const page = await (await fetch(`${base}/`)).text();
    expect(page).toContain('<title>tensorfleet</title>');
    const refs = [...page.matchAll(/(?:src|href)="([^"]+)"/g)].map((m) => m[1]!).filter((u) => !u.startsWith('data:'));
    for (const ref of refs) {
      expect(ref.startsWith('/'), `${ref} is local`).toBe(true);
      const res = await fetch(base + ref);
      expect(res.status, ref).toBe(200);
    }
    const uplot = await fetch(`${base}/assets/uPlot.iife.min.js`);
    expect(uplot.headers.get('content-type')).toMatch(/javascript/);
    expect((await uplot.text()).length).toBeGreaterThan(20_000);
  });

  it('answers 404 and 405', async () => {
    expect((await fetch(`${base}/nope`)).status).toBe(404);
    expect((await fetch(`${base}/metrics`, { method: 'POST' })).status).toBe(405);
  });

  it('/api/state and /events carry the steps, epochs, lanes and membership', async () => {
    const state = (await (await fetch(`${base}/api/state`)).json()) as { steps: { step: number[]; loss: number[] }; epochs: unknown[]; lanes: unknown[]; workers: Array<{ id: string; steps: number }>; events: Array<{ kind: string }> };
    expect(state.steps.step).toHaveLength(run.report.steps);
    expect(state.steps.loss.every((x) => x > 0)).toBe(true);
    expect(state.epochs).toHaveLength(1);
    expect(state.lanes.length).toBe(Math.min(40, run.report.steps));
    expect(state.workers.map((w) => w.id).sort()).toEqual(['w0', 'w1']);
    expect(state.workers.every((w) => w.steps === run.report.steps)).toBe(true);
    expect(state.events.filter((e) => e.kind === 'joined')).toHaveLength(2);

    const controller = new AbortController();
    const res = await fetch(`${base}/events`, { signal: controller.signal });
    expect(res.headers.get('content-type')).toBe('text/event-stream');
    const reader = res.body!.getReader();
    let received = '';
    while (!received.includes('\n\n')) received += new TextDecoder().decode((await reader.read()).value);
    controller.abort();
    expect(received).toMatch(/^retry: \d+\nevent: snapshot\ndata: \{/);
    const data = JSON.parse(received.split('\n').find((l) => l.startsWith('data: '))!.slice(6)) as typeof state;
    expect(data.steps.step).toHaveLength(run.report.steps);
  });
});
