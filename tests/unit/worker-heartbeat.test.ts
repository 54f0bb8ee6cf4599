import { describe, expect, it } from 'vitest';
import { startingHeartbeatNeeded } from '../../src/worker/heartbeat.js';

describe('startingHeartbeatNeeded (the heartbeat a worker sends before computing a step)', () => {
  const interval = 2500;

  it('is sent for the first step of a stream, and when the interval is unknown', () => {
    expect(startingHeartbeatNeeded(1000, 990, undefined, interval)).toBe(true);
    expect(startingHeartbeatNeeded(1000, 990, 5, 0)).toBe(true);
  });

  it('is skipped for short steps right after the previous message', () => {
    expect(startingHeartbeatNeeded(1000, 990, 30, interval)).toBe(false);
    expect(startingHeartbeatNeeded(1000, 600, 400, interval)).toBe(false); // 400 + 1600 < 2500
  });

  it('is sent for steps that compute in a quarter of the interval or more, and after a quiet spell', () => {
    expect(startingHeartbeatNeeded(1000, 999, 625, interval)).toBe(true);
    expect(startingHeartbeatNeeded(1000, 990, 2000, interval)).toBe(true);
    expect(startingHeartbeatNeeded(5000, 2000, 5, interval)).toBe(true); // the last message went out 3 s ago
  });
});
