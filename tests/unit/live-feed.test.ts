/** The dashboard's feed: bounded series, cursors that deliver each point once, snapshots after a decimation. */
import { describe, expect, it } from 'vitest';
import { LiveFeed, Series } from '../../src/telemetry/live-feed.js';

const step = (s: number) => ({ epoch: 0, step: s, stepInEpoch: s, stepsInEpoch: 1000, worldSize: 2, samples: 64, loss: 1 / s, imagesPerSecond: 100, epochFraction: s / 1000 });

describe('Series', () => {
  it('grows, then drops every other point past its cap and keeps every 2nd, 4th, ... point', () => {
    const s = new Series(4, 8);
    for (let i = 0; i < 8; i++) s.push(i, i, 0, 0, 0, 0);
    expect([s.length, s.stride, s.generation]).toEqual([8, 1, 0]);
    s.push(8, 8, 0, 0, 0, 0);
    expect([s.length, s.stride, s.generation]).toEqual([5, 2, 1]);
    expect(s.slice(0).step).toEqual([0, 2, 4, 6, 8]);
    for (let i = 9; i < 12; i++) s.push(i, i, 0, 0, 0, 0);
    expect(s.slice(0).step).toEqual([0, 2, 4, 6, 8, 10]);
  });
});

describe('LiveFeed', () => {
  it('sends a client each step, epoch and event once', () => {
    const feed = new LiveFeed(1);
    feed.onMembership({ kind: 'joined', workerId: 'w0', size: 1 });
    const first = feed.snapshot();
    expect((first.payload.events as unknown[]).length).toBe(1);
    for (let s = 1; s <= 5; s++) feed.onStep(step(s));
    const a = feed.since(first.cursor);
    expect(a.snapshot).toBe(false);
    expect((a.payload.steps as { step: number[] }).step).toEqual([1, 2, 3, 4, 5]);
    expect((a.payload.events as Array<{ text: string }>).map((e) => e.text)).toEqual(['training']);
    const b = feed.since(a.cursor);
    expect((b.payload.steps as { step: number[] }).step).toEqual([]);
    expect(b.payload.events).toEqual([]);
    expect(b.payload.progress).toMatchObject({ step: 5, stepInEpoch: 5, worldSize: 2 });
  });

  it('answers a client behind a decimation with a fresh snapshot', () => {
    const feed = new LiveFeed(1);
    const { cursor } = feed.snapshot();
    for (let s = 1; s <= 100_001; s++) feed.onStep(step(s));
    const u = feed.since(cursor);
    expect(u.snapshot).toBe(true);
    expect((u.payload.steps as { step: number[] }).step.length).toBe(feed.series.length);
    expect(feed.series.stride).toBe(2);
  });
});
