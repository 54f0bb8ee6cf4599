/**
 * The real programs on `--backend webgpu` (needs `npm run build` and a Vulkan driver; without a
 * GPU, Mesa's lavapipe, which .ci/run installs): a coordinator with two local worker processes
 * trains to completion, and a missing driver is one clear line and exit 1.
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { RunReport } from '../../src/coordinator/report.js';
import type { AdapterSummary } from '../../src/model/webgpu.js';
import { COORDINATOR, requireBuild, startNode, WORKER } from '../helpers/process.js';
import { requireWebgpuAdapter } from '../helpers/webgpu.js';

let dir: string;
let adapter: AdapterSummary;

beforeAll(async () => {
  requireBuild();
  adapter = await requireWebgpuAdapter();
  dir = mkdtempSync(join(tmpdir(), 'tf-webgpu-'));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('coordinator and workers on --backend webgpu', { timeout: 600_000 }, () => {
  it('coordinator --workers 2 --backend webgpu trains an MNIST subset to completion, loss falling; each worker logs its adapter', async () => {
    const report = join(dir, 'report.json');
    const started = performance.now();
    const proc = startNode(COORDINATOR, ['--workers', '2', '--backend', 'webgpu', '--batch-size', '16', '--train-limit', '256', '--test-limit', '100', '--epochs', '2', '--report', report, '--log-level', 'info'], {}, 540_000);
    const run = await proc.result();
    expect(run.exitCode, run.stderr.slice(-3000)).toBe(0);
    const r = JSON.parse(readFileSync(report, 'utf8')) as RunReport;
    console.log(`coordinator --workers 2 --backend webgpu: ${r.imagesPerSecond.toFixed(1)} img/s, loss ${r.epochHistory.map((e) => e.trainLoss.toFixed(4)).join(' -> ')}, wall ${((performance.now() - started) / 1000).toFixed(1)} s`);
    expect(r.status).toBe('completed');
    expect(r.backend).toBe('webgpu');
    expect(r.samplesPerEpoch).toEqual([256, 256]);
    expect(r.perWorker).toHaveLength(2);
    expect(r.epochHistory[1]!.trainLoss).toBeLessThan(r.epochHistory[0]!.trainLoss);
    expect(run.stdout).toMatch(/backend webgpu: (gpu|software adapter) \(WebGPU on Dawn: /);

    // Every worker process logs the adapter it computes on: name, vendor, software or not.
    const selected = run.stderr
      .split('\n')
      .filter((l) => l.startsWith('{'))
      .map((l) => JSON.parse(l) as { name?: string; msg?: string; adapter?: AdapterSummary })
      .filter((l) => l.name === 'worker' && l.msg === 'backend selected');
    expect(selected).toHaveLength(2);
    for (const line of selected) expect(line.adapter).toMatchObject({ name: adapter.name, vendor: adapter.vendor, software: adapter.software });
  });

  it('without a Vulkan driver, --backend webgpu is one line naming the fix and exit 1 (worker and coordinator)', async () => {
    const noDriver = { VK_DRIVER_FILES: join(dir, 'none.json'), VK_ICD_FILENAMES: join(dir, 'none.json') };
    for (const [program, args] of [
      [WORKER, ['--coordinator', '127.0.0.1:9', '--backend', 'webgpu']],
      [COORDINATOR, ['--workers', '1', '--backend', 'webgpu', '--log-level', 'silent']],
    ] as const) {
      const run = await startNode(program, [...args], noDriver, 60_000).result();
      expect(run.exitCode, run.stderr).toBe(1);
      // Dawn itself prints native "Warning: ..." lines about the Vulkan loader; ours is one line.
      const ours = run.stderr.split('\n').filter((l) => /^(worker|coordinator): /.test(l));
      expect(ours, run.stderr).toHaveLength(1);
      expect(ours[0]).toMatch(/backend 'webgpu' is not available: Dawn found no WebGPU adapter \(no working Vulkan driver: .*mesa-vulkan-drivers/);
    }
  });
});
