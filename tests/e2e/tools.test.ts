/**
 * `evaluate` and `predict` on a model saved by a short `coordinator --save-model` run: the
 * accuracy agrees with the coordinator's, predictions agree between a test image and the same
 * image as a PNG (also inverted), and bad input gets one line and exit 1 (usage: exit 2).
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { RunReport } from '../../src/coordinator/report.js';
import { loadMnist, PIXELS } from '../../src/data/mnist.js';
import { writeDigitPng } from '../../src/tools/saved-model.js';
import { cleanEnv, COORDINATOR, requireBuild } from '../helpers/process.js';

const root = fileURLToPath(new URL('../..', import.meta.url));
const EVALUATE = join(root, 'dist/tools/evaluate-cli.js');
const PREDICT = join(root, 'dist/tools/predict-cli.js');
const dir = mkdtempSync(join(tmpdir(), 'tf-tools-'));
const modelDir = join(dir, 'model');
let report: RunReport;

const tool = (program: string, args: string[]) => execa('node', [program, ...args], { reject: false, timeout: 120_000, extendEnv: false, env: cleanEnv() });

interface Prediction {
  predicted: number;
  probabilities: number[];
  label?: number;
  inverted: boolean;
}

beforeAll(async () => {
  requireBuild();
  const reportPath = join(dir, 'report.json');
  const run = await execa('node', [COORDINATOR, '--workers', '2', '--model', 'mlp', '--backend', 'wasm', '--train-limit', '512', '--test-limit', '200', '--epochs', '2', '--save-model', modelDir, '--report', reportPath, '--no-http', '--log-level', 'warn'], {
    reject: false,
    timeout: 120_000,
    extendEnv: false,
    env: cleanEnv(),
  });
  expect(run.exitCode, run.stderr).toBe(0);
  report = JSON.parse(readFileSync(reportPath, 'utf8')) as RunReport;
}, 150_000);

afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('evaluate', () => {
  it('prints accuracy, loss and a confusion matrix; the accuracy is the coordinator’s on the same test set', async () => {
    const r = await tool(EVALUATE, ['--model', modelDir, '--test-limit', '200', '--backend', 'wasm']);
    expect(r.exitCode, r.stderr).toBe(0);
    const lines = r.stdout.split('\n');
    const m = /^accuracy (\d+\.\d\d)% \((\d+)\/200\), loss (\d+\.\d{4})$/.exec(lines[1]!);
    expect(m, r.stdout).not.toBeNull();
    expect(Number(m![1])).toBeCloseTo(report.testAccuracy! * 100, 2);
    expect(Number(m![3])).toBeCloseTo(report.testLoss!, 3);
    expect(r.stdout).toContain('confusion matrix (rows: true label, columns: predicted)');
    const rows = lines.filter((l) => /^\d\s/.test(l));
    expect(rows).toHaveLength(10);
    const total = rows.reduce((a, l) => a + l.trim().split(/\s+/).slice(1, 11).reduce((x, v) => x + Number(v), 0), 0);
    expect(total).toBe(200);
  });

  it('--json: the confusion matrix sums to the test set and its diagonal to the correct answers', async () => {
    const r = await tool(EVALUATE, ['--model', join(modelDir, 'model.json'), '--test-limit', '300', '--backend', 'wasm', '--json']);
    expect(r.exitCode, r.stderr).toBe(0);
    const e = JSON.parse(r.stdout) as { count: number; correct: number; accuracy: number; confusion: number[][] };
    expect(e.count).toBe(300);
    expect(e.confusion.flat().reduce((a, b) => a + b, 0)).toBe(300);
    expect(e.confusion.reduce((a, row, i) => a + row[i]!, 0)).toBe(e.correct);
    expect(e.accuracy).toBeCloseTo(e.correct / 300, 12);
    expect(e.accuracy).toBeGreaterThan(0.5);
  });

  it('a folder without a model, or an unusable --data-dir, is one line and exit 1', async () => {
    const none = await tool(EVALUATE, ['--model', dir, '--backend', 'wasm']);
    expect(none.exitCode).toBe(1);
    expect(none.stderr.trim().split('\n')).toEqual([`evaluate: ${dir}: no model.json there (save a model with: coordinator --save-model DIR)`]);
    const data = await tool(EVALUATE, ['--model', modelDir, '--data-dir', join(dir, 'missing'), '--backend', 'wasm']);
    expect(data.exitCode).toBe(1);
    expect(data.stderr).toMatch(/^evaluate: .*missing: data folder not found$/);
    const usage = await tool(EVALUATE, []);
    expect(usage.exitCode).toBe(2);
    expect(usage.stderr).toMatch(/--model/);
  });
});

describe('predict', () => {
  const test = loadMnist({ testLimit: 10, skipTrain: true }).test;
  const image = (k: number) => test.images.slice(k * PIXELS, (k + 1) * PIXELS);

  it('--index K: the class, every probability, and the true label', async () => {
    const r = await tool(PREDICT, ['--model', modelDir, '--index', '0', '--backend', 'wasm']);
    expect(r.exitCode, r.stderr).toBe(0);
    const lines = r.stdout.split('\n');
    expect(lines[0]).toMatch(/^class \d \(probability (0\.\d{4}|1\.0000)\)/);
    expect(lines[0]).toContain(`true label ${test.labels[0]}`);
    const probs = lines.filter((l) => /^\s+\d\s+\d\.\d{4}/.test(l)).map((l) => Number(l.trim().split(/\s+/)[1]));
    expect(probs).toHaveLength(10);
    expect(probs.reduce((a, b) => a + b, 0)).toBeCloseTo(1, 2);
  });

  it('a PNG of a test image gives the same answer, also when drawn dark on light', async () => {
    for (const k of [0, 1, 2]) {
      const png = join(dir, `digit-${k}.png`);
      writeFileSync(png, writeDigitPng(image(k)));
      const inverted = join(dir, `digit-${k}-inverted.png`);
      writeFileSync(inverted, writeDigitPng(image(k).map((p) => 255 - p)));
      const [byIndex, byPng, byInverted] = await Promise.all([
        tool(PREDICT, ['--model', modelDir, '--index', String(k), '--backend', 'wasm', '--json']),
        tool(PREDICT, ['--model', modelDir, '--image', png, '--backend', 'wasm', '--json']),
        tool(PREDICT, ['--model', modelDir, '--image', inverted, '--backend', 'wasm', '--json']),
      ]);
      for (const r of [byIndex, byPng, byInverted]) expect(r.exitCode, r.stderr).toBe(0);
      const a = JSON.parse(byIndex.stdout) as Prediction;
      const b = JSON.parse(byPng.stdout) as Prediction;
      const c = JSON.parse(byInverted.stdout) as Prediction;
      expect(a.label).toBe(test.labels[k]);
      expect(b.inverted).toBe(false);
      expect(c.inverted).toBe(true);
      expect(b.predicted).toBe(a.predicted);
      expect(c.predicted).toBe(a.predicted);
      for (let i = 0; i < 10; i++) {
        expect(b.probabilities[i]).toBeCloseTo(a.probabilities[i]!, 6);
        expect(c.probabilities[i]).toBeCloseTo(a.probabilities[i]!, 6);
      }
    }
  });

  it('refuses other sizes, non-PNG files and missing input with one line', async () => {
    const { PNG } = await import('pngjs');
    const big = new PNG({ width: 32, height: 30 });
    const bigPath = join(dir, 'big.png');
    writeFileSync(bigPath, PNG.sync.write(big));
    const r = await tool(PREDICT, ['--model', modelDir, '--image', bigPath, '--backend', 'wasm']);
    expect(r.exitCode).toBe(1);
    expect(r.stderr).toBe(`predict: ${bigPath}: the image is 32x30; predict takes 28x28 images (MNIST's size), resize it first`);
    const text = join(dir, 'not.png');
    writeFileSync(text, 'hello');
    const bad = await tool(PREDICT, ['--model', modelDir, '--image', text, '--backend', 'wasm']);
    expect(bad.exitCode).toBe(1);
    expect(bad.stderr).toMatch(/^predict: .*not\.png: not a readable PNG file/);
    const far = await tool(PREDICT, ['--model', modelDir, '--index', '10000', '--backend', 'wasm']);
    expect(far.exitCode).toBe(1);
    expect(far.stderr).toMatch(/^predict: --index 10000: the test set of .* has 10000 images$/);
    const neither = await tool(PREDICT, ['--model', modelDir]);
    expect(neither.exitCode).toBe(2);
    expect(neither.stderr).toBe('predict: give either --image FILE.png or --index K (see predict --help)');
  });
});
