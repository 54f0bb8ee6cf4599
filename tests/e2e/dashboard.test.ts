/**
 * The live dashboard in a real browser: Debian's chromium driven by playwright-core (never a
 * downloaded browser) loads the page of a running coordinator, and the charts must receive
 * points and keep updating while workers train; a screenshot is saved under test-artifacts/.
 * Also: the HTTP port can be turned off, and a bad --http-port is a usage error.
 */
import { existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium, type BrowserContext, type Page } from 'playwright-core';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { coordinator, killAll, requireBuild, waitFor, worker, type Proc } from '../helpers/process.js';

const CHROMIUM = '/usr/bin/chromium';
const ARTIFACTS = fileURLToPath(new URL('../../test-artifacts/', import.meta.url));
const SMALL = ['--model', 'mlp', '--backend', 'wasm', '--test-limit', '200'];
const profile = mkdtempSync(join(tmpdir(), 'tf-chromium-'));
let context: BrowserContext | undefined;

afterEach(async () => {
  await context?.close();
  context = undefined;
  await killAll();
});
afterAll(() => rmSync(profile, { recursive: true, force: true }));

/** The "dashboard on http://HOST:PORT/" line of a coordinator's stdout. */
async function dashboardUrl(c: Proc): Promise<string> {
  return waitFor('the dashboard line', () => {
    const m = /^dashboard on (http:\/\/\S+\/) /m.exec(c.stdout());
    if (m) return m[1];
    if (c.exited) throw new Error(`coordinator exited:\n${c.stderr()}`);
    return undefined;
  });
}

type Dashboard = { snapshots: number; updates: number; renders: number; connected: boolean; charts: Record<'loss' | 'accuracy' | 'throughput', { data: number[][] }>; state: { status: string; lanes: unknown[]; workers: Array<{ id: string }>; events: Array<{ kind: string }> } };

/** Reads the page's `window.tensorfleet` (the dashboard exposes its charts and state there). */
function probe<T>(page: Page, read: (d: Dashboard) => T): Promise<T> {
  return page.evaluate(`(${read.toString()})(window.tensorfleet)`) as Promise<T>;
}

async function until<T>(page: Page, what: string, read: (d: Dashboard) => T | false | undefined, timeoutMs = 60_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await probe(page, read);
    if (v !== false && v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

describe('dashboard', () => {
  it('in chromium: charts get points and update live while 2 workers train; screenshot saved', async () => {
    requireBuild();
    if (!existsSync(CHROMIUM)) throw new Error(`${CHROMIUM} is missing: apt-get install -y chromium (.ci/run does)`);
    const c = coordinator(['--launch', 'none', '--port', '0', '--insecure', '--workers', '2', '--train-limit', '2048', '--batch-size', '16', '--epochs', '4', ...SMALL, '--http-port', '0', '--log-level', 'warn']);
    const url = await dashboardUrl(c);
    const port = /:(\d+)\/$/.exec(url)![1];
    const grpcPort = Number(/listening on [^\s:]+:(\d+)/.exec(c.stdout())![1]);

    context = await chromium.launchPersistentContext(profile, {
      executablePath: CHROMIUM,
      headless: true,
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
      viewport: { width: 1440, height: 1100 },
    });
    const page = context.pages()[0] ?? (await context.newPage());
    const errors: string[] = [];
    const hosts = new Set<string>();
    page.on('pageerror', (e) => errors.push(e.message));
    page.on('console', (m) => m.type() === 'error' && errors.push(m.text()));
    page.on('request', (r) => hosts.add(new URL(r.url()).host));
    await page.goto(url);
    await until(page, 'the first snapshot', (d) => d.snapshots >= 1 && d.connected);
    expect(await page.textContent('#status')).toBe('waiting');
    expect(await probe(page, (d) => d.charts.loss.data[0]!.length)).toBe(0);

    worker(['--coordinator', `127.0.0.1:${grpcPort}`, '--backend', 'wasm', '--id', 'w0', '--log-level', 'warn']);
    worker(['--coordinator', `127.0.0.1:${grpcPort}`, '--backend', 'wasm', '--id', 'w1', '--log-level', 'warn']);

    const first = await until(page, 'loss points', (d) => d.charts.loss.data[0]!.length > 0 && d.charts.loss.data[0]!.length);
    const updatesBefore = await probe(page, (d) => d.updates);
    const later = await until(page, 'more loss points', (d) => d.charts.loss.data[0]!.length >= 40 && d.charts.loss.data[0]!.length);
    expect(later).toBeGreaterThan(first);
    expect(await probe(page, (d) => d.updates)).toBeGreaterThan(updatesBefore);
    await until(page, 'a test accuracy point', (d) => d.charts.accuracy.data[0]!.length >= 1);
    expect(await probe(page, (d) => d.charts.throughput.data[0]!.length)).toBeGreaterThan(0);
    expect(await probe(page, (d) => d.state.lanes.length)).toBeGreaterThan(0);
    expect(await page.textContent('#status')).toBe('training');
    expect(await page.locator('#workers tbody tr').count()).toBe(2);
    expect(await page.locator('#events li.joined').count()).toBe(2);
    expect(await page.textContent('#stat-workers')).toBe('2');
    // the step timeline canvas has been drawn on
    const inked = await page.evaluate(() => {
      const canvas = document.getElementById('lanes') as HTMLCanvasElement;
      const px = canvas.getContext('2d')!.getImageData(0, 0, canvas.width, canvas.height).data;
      let n = 0;
      for (let i = 3; i < px.length; i += 4) if (px[i]! > 0) n++;
      return n / (px.length / 4);
    });
    expect(inked).toBeGreaterThan(0.05);

    mkdirSync(ARTIFACTS, { recursive: true });
    const shot = join(ARTIFACTS, 'dashboard.png');
    await page.screenshot({ path: shot, fullPage: true });
    console.log(`dashboard screenshot: ${shot}`);

    const result = await c.result();
    expect(result.exitCode, result.stderr).toBe(0);
    await until(page, 'the end of the run', (d) => d.state.status === 'completed' && !d.connected);
    expect(await probe(page, (d) => d.charts.accuracy.data[0]!.length)).toBe(4);
    expect(await probe(page, (d) => d.charts.loss.data[0]!.length)).toBe(4 * 64);
    const final = join(ARTIFACTS, 'dashboard-final.png');
    await page.screenshot({ path: final, fullPage: true });
    console.log(`dashboard screenshot at the end of the run: ${final}`);

    expect(errors).toEqual([]);
    expect([...hosts]).toEqual([`127.0.0.1:${port}`]);
  });

  it('--no-http and --http-port -1 serve nothing; a bad --http-port is a usage error', async () => {
    requireBuild();
    for (const off of [['--no-http'], ['--http-port', '-1']]) {
      const r = await coordinator(['--workers', '1', '--train-limit', '64', ...SMALL, ...off, '--log-level', 'warn']).result();
      expect(r.exitCode, r.stderr).toBe(0);
      expect(r.stdout).not.toContain('dashboard on');
    }
    const bad = await coordinator(['--http-port', '70000']).result();
    expect(bad.exitCode).toBe(2);
    expect(bad.stderr).toBe('coordinator: --http-port must be from -1 (off) to 65535; got 70000 (see coordinator --help)');
  });
});
