/** Logs: JSON lines with the structured fields, or pino-pretty's lines for a terminal; the progress line shows the accuracy once known. */
import { fileURLToPath } from 'node:url';
import { execa } from 'execa';
import { describe, expect, it } from 'vitest';
import { Progress } from '../../src/telemetry/progress.js';

const root = fileURLToPath(new URL('../..', import.meta.url));

async function logOnce(pretty: boolean): Promise<string> {
  const script = `import { createLogger } from './src/telemetry/logger.ts';
    createLogger('info', { name: 'coordinator' }, ${pretty}).child({ component: 'coordinator' }).warn({ workerId: 'w1', step: 7 }, 'step aborted; redoing it');`;
  const r = await execa('node', ['--import', 'tsx', '--input-type=module', '-e', script], { cwd: root, reject: false });
  expect(r.exitCode, r.stderr).toBe(0);
  return r.stderr;
}

describe('logger', () => {
  it('writes JSON lines with component, workerId and step when stderr is not a terminal', async () => {
    const line = JSON.parse(await logOnce(false)) as Record<string, unknown>;
    expect(line).toMatchObject({ level: 40, name: 'coordinator', component: 'coordinator', workerId: 'w1', step: 7, msg: 'step aborted; redoing it' });
  });

  it('writes pretty lines for a terminal', async () => {
    const text = (await logOnce(true)).replace(/\x1b\[[0-9;]*m/g, ''); // without the colors
    expect(text.startsWith('{')).toBe(false);
    expect(text).toMatch(/WARN/);
    expect(text).toContain('step aborted; redoing it');
    expect(text).toMatch(/workerId: "w1"/);
    expect(text).toMatch(/step: 7/);
  });
});

describe('progress', () => {
  it('adds the test accuracy to the progress line once an epoch was evaluated', () => {
    const chunks: string[] = [];
    const out = { isTTY: false, write: (s: string) => chunks.push(s) } as unknown as NodeJS.WriteStream;
    const p = new Progress(out, 2, 0);
    const step = { epoch: 0, step: 1, stepInEpoch: 1, stepsInEpoch: 2, worldSize: 3, loss: 1.5, imagesPerSecond: 100, epochFraction: 0.5 };
    p.step(step);
    expect(chunks.at(-1)).toMatch(/^epoch 1\/2 step 1\/2 loss 1\.5000 100 img\/s ETA \S+ workers 3\n$/);
    p.epoch({ epoch: 0, trainLoss: 1, testAccuracy: 0.9123, testLoss: 0.3, trainSeconds: 1 });
    p.step({ ...step, epoch: 1, step: 3 });
    expect(chunks.at(-1)).toMatch(/ acc 91\.23% 100 img\/s /);
  });
});
