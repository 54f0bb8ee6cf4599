/** The run report's steadyImagesPerSecond: the window after the warm-up steps (steady-rate.ts). */
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { SteadyRate, WARMUP_STEPS } from '../../src/coordinator/steady-rate.js';

/** Feeds `count` steps of `samples` each, the first ending at firstMs and the others `ms` apart, after `before` samples and ms (a resume). */
function feed(rate: SteadyRate, count: number, o: { samples?: number; firstMs?: number; ms?: number; before?: { samples: number; ms: number } } = {}) {
  const { samples = 64, firstMs = 300, ms = 30, before = { samples: 0, ms: 0 } } = o;
  let trained = before.samples;
  let trainMs = before.ms;
  for (let i = 0; i < count; i++) {
    trained += samples;
    trainMs += i === 0 ? firstMs : ms;
    rate.stepDone(trained, trainMs);
  }
  return { trained, trainMs };
}

describe('SteadyRate', () => {
  it('leaves out the same number of steps as the PyTorch peer', () => {
    const peer = readFileSync(fileURLToPath(new URL('../../bench/peers/pytorch_ddp.py', import.meta.url)), 'utf8');
    expect(Number(/^WARMUP_STEPS = (\d+)$/m.exec(peer)?.[1])).toBe(WARMUP_STEPS);
    expect(WARMUP_STEPS).toBe(5);
  });

  it('counts the samples of the steps after the fifth over the time since the fifth ended', () => {
    const rate = new SteadyRate();
    // step 1 takes 300 ms, later ones 30: the fifth ends at 420 ms with 320 samples
    const { trained, trainMs } = feed(rate, 10);
    expect(trained).toBe(640);
    expect(trainMs).toBe(570);
    expect(rate.rate(trained, trainMs)).toBeCloseTo((320 * 1000) / 150, 9);
    // training time after the last step (e.g. a checkpoint) counts, as in imagesPerSecond
    expect(rate.rate(trained, trainMs + 10)).toBeCloseTo((320 * 1000) / 160, 9);
    // the all-steps figure of the same run is lower: the first step's compile time is in it
    expect((trained * 1000) / trainMs).toBeLessThan(rate.rate(trained, trainMs)!);
  });

  it('gives the CPU per step over the same window: the steps after the fifth, pauses between segments left out', () => {
    const rate = new SteadyRate();
    // the process used 200 ms of CPU by the end of step 5, then 12.5 ms per step
    for (let i = 1; i <= 5; i++) rate.stepDone(64 * i, 30 * i, 40 * i);
    expect(rate.cpuMsPerStep()).toBeNull();
    for (let i = 1; i <= 4; i++) rate.stepDone(320 + 64 * i, 150 + 30 * i, 200 + 12.5 * i);
    expect(rate.cpuMsPerStep()).toBeCloseTo(12.5, 9);
    // an evaluation between two segments takes 300 ms of CPU: not a step's
    rate.pause();
    rate.resume(550);
    for (let i = 1; i <= 4; i++) rate.stepDone(576 + 64 * i, 300 + 30 * i, 550 + 14.5 * i);
    expect(rate.cpuMsPerStep()).toBeCloseTo(13.5, 9);
  });

  it('is null with five steps or fewer, and from the sixth on a number', () => {
    const rate = new SteadyRate();
    expect(rate.rate(0, 0)).toBeNull();
    const five = feed(rate, 5);
    expect(rate.rate(five.trained, five.trainMs)).toBeNull();
    expect(rate.rate(five.trained, five.trainMs + 50)).toBeNull();
    rate.stepDone(five.trained + 64, five.trainMs + 32);
    expect(rate.rate(five.trained + 64, five.trainMs + 32)).toBeCloseTo((64 * 1000) / 32, 9);
  });

  it('of a resumed run, opens five steps after the resume and leaves out what came before it', () => {
    const rate = new SteadyRate();
    const before = { samples: 10_000, ms: 60_000 };
    const four = feed(rate, 4, { before });
    expect(rate.rate(four.trained, four.trainMs)).toBeNull();
    const resumed = new SteadyRate();
    // 5 steps after the resume, then a sixth of 64 samples in 40 ms and a seventh of 32 in 20
    const five = feed(resumed, 5, { before });
    expect(five).toEqual({ trained: 10_320, trainMs: 60_420 });
    expect(resumed.rate(five.trained, five.trainMs)).toBeNull();
    resumed.stepDone(10_384, 60_460);
    resumed.stepDone(10_416, 60_480);
    expect(resumed.rate(10_416, 60_480)).toBeCloseTo((96 * 1000) / 60, 9);
  });

  it('takes the run back with a rollback: redone steps count, undone ones do not, their time does', () => {
    // Back to a point after the window opened: steps 6-9 done (576 samples at 540 ms), back to
    // step 7 (448 samples), 8 and 9 redone: the kept steps after the fifth are 6-9 again.
    const after = new SteadyRate();
    feed(after, 9);
    after.rolledBack(448);
    after.stepDone(512, 600);
    after.stepDone(576, 630);
    expect(after.rate(576, 630)).toBeCloseTo((256 * 1000) / (630 - 420), 9);

    // Back to before the window opened: steps 6 and 7 done (448 samples), back to step 3 (192),
    // steps 4-8 redone inside the window: all five count, 320 samples.
    const before = new SteadyRate();
    feed(before, 7);
    before.rolledBack(192);
    let trained = 192;
    let ms = 480;
    for (let i = 0; i < 5; i++) before.stepDone((trained += 64), (ms += 30));
    expect(trained).toBe(512);
    expect(before.rate(trained, ms)).toBeCloseTo((320 * 1000) / (ms - 420), 9);

    // A rollback within the warm-up: the undone steps were done (compiled), so they count
    // towards the five; the window opens at the fifth completed step.
    const early = new SteadyRate();
    feed(early, 4);
    early.rolledBack(128);
    early.stepDone(192, 420); // the fifth completed step
    early.rolledBack(192); // the group formed again from the same point: nothing moves
    early.stepDone(256, 450);
    expect(early.rate(256, 450)).toBeCloseTo((64 * 1000) / 30, 9);
  });
});
