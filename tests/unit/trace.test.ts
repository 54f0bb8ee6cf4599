/**
 * The trace (Chrome trace-event JSON): lanes, spans per step, ordering within lanes, and the
 * straggler attribution, on synthetic steps with a known straggler and on a real in-process run.
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { attributeSlowest, stragglerLine, summarizeStraggler } from '../../src/telemetry/straggler.js';
import { summaryTable } from '../../src/telemetry/summary-table.js';
import { TraceRecorder, type TraceEvent } from '../../src/telemetry/trace.js';
import type { StepDetail, WorkerStepPhases } from '../../src/telemetry/types.js';
import { trainWatched } from '../helpers/telemetry-run.js';

const dir = mkdtempSync(join(tmpdir(), 'tf-trace-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

interface TraceFile {
  displayTimeUnit: string;
  traceEvents: TraceEvent[];
  otherData: { steps: number; workers: string[]; straggler: { workerId: string; waitCausedSeconds: number; slowestInSteps: number } | null; stragglerLine: string };
}

/** Step `s` of a synthetic run: 3 workers, each taking compute ms; w2 is slow on even steps. */
function syntheticStep(s: number, t0: number): StepDetail {
  const computes = [10, 12, s % 2 === 0 ? 30 : 11];
  const delivered = computes.map((c) => t0 + c + 4); // 2 ms out, 2 ms back
  const last = Math.max(...delivered);
  const optimizerStart = last + 0.5;
  const committed = optimizerStart + 3;
  const workers: WorkerStepPhases[] = computes.map((c, i) => ({
    id: `w${i}`,
    rank: i,
    samples: 16,
    compute: c,
    encode: 0.5,
    transfer: committed - t0 - c - 0.5 - (last - delivered[i]!) - 3,
    wait: last - delivered[i]!,
    optimizer: 3,
    total: committed - t0,
    deliveredAtMs: delivered[i]!,
  }));
  return { step: s, epoch: 0, round: s + 1, dispatchedAtMs: t0, optimizerStartMs: optimizerStart, committedAtMs: committed, workers, ...attributeSlowest(workers) };
}

function readTrace(path: string): TraceFile {
  return JSON.parse(readFileSync(path, 'utf8')) as TraceFile;
}

/** Per lane (tid), complete events sorted by start: none may start before the previous one ended (nested PS spans aside). */
function expectLanesSequential(events: TraceEvent[]): void {
  const byTid = new Map<number, TraceEvent[]>();
  for (const e of events) if (e.ph === 'X' && e.tid !== 0) byTid.set(e.tid!, [...(byTid.get(e.tid!) ?? []), e]);
  for (const [tid, list] of byTid) {
    list.sort((a, b) => a.ts! - b.ts!);
    for (let i = 1; i < list.length; i++) {
      const prevEnd = list[i - 1]!.ts! + list[i - 1]!.dur!;
      expect(list[i]!.ts!, `lane ${tid}: ${list[i]!.name} of step ${list[i]!.args?.step} starts before ${list[i - 1]!.name} ends`).toBeGreaterThanOrEqual(prevEnd - 1);
    }
  }
}

describe('straggler attribution', () => {
  it('charges the last gradient with the others’ waiting and the delay it added', () => {
    const s = attributeSlowest([{ deliveredAtMs: 10 }, { deliveredAtMs: 25 }, { deliveredAtMs: 14 }]);
    expect(s).toEqual({ slowest: 1, waitCausedMs: 15 + 11, delayMs: 11 });
    expect(attributeSlowest([{ deliveredAtMs: 3 }]).slowest).toBe(-1);
  });

  it('summarizes the run: the worker that caused the most waiting, with shares', () => {
    const summary = summarizeStraggler([
      { id: 'a', steps: 10, stragglerSteps: 2, waitCausedMs: 100, delayCausedMs: 40, totalMs: 1000, computeMs: 500 },
      { id: 'b', steps: 10, stragglerSteps: 8, waitCausedMs: 900, delayCausedMs: 300, totalMs: 1000, computeMs: 800 },
    ])!;
    expect(summary).toMatchObject({ workerId: 'b', slowestInSteps: 8, slowestShare: 0.8, waitCausedSeconds: 0.9, waitCausedShare: 0.9, delaySeconds: 0.3, meanComputeMs: 80, othersMeanComputeMs: 50 });
    expect(stragglerLine(summary)).toMatch(/^straggler: b delivered last in 8 steps \(80\.0% of its steps\); the other workers waited 0\.90 s for it/);
    expect(summarizeStraggler([{ id: 'solo', steps: 5, stragglerSteps: 0, waitCausedMs: 0, delayCausedMs: 0, totalMs: 50, computeMs: 20 }])).toBeNull();
  });
});

describe('TraceRecorder', () => {
  it('writes trace-event JSON: a lane per worker and one for the parameter server, spans per step', () => {
    const trace = new TraceRecorder(0);
    const steps = 6;
    for (let s = 0; s < steps; s++) trace.onStepDetail(syntheticStep(s, 100 + 50 * s));
    trace.onMembership({ kind: 'left', workerId: 'w1', reason: 'test', size: 2 }, 420);
    trace.onEpoch({ epoch: 0, steps, samples: steps * 48, trainLoss: 1, testAccuracy: 0.5, testLoss: 1.2, trainSeconds: 1 }, 460);
    const path = join(dir, 'synthetic.json');
    const count = trace.write(path);
    const t = readTrace(path);
    expect(t.traceEvents).toHaveLength(count);
    expect(t.displayTimeUnit).toBe('ms');
    for (const e of t.traceEvents) {
      expect(typeof e.name).toBe('string');
      expect(['X', 'i', 'M']).toContain(e.ph);
      expect(Number.isInteger(e.pid)).toBe(true);
      if (e.ph === 'X') {
        expect(Number.isInteger(e.ts) && e.ts! >= 0, `${e.name} ts`).toBe(true);
        expect(Number.isInteger(e.dur) && e.dur! >= 0, `${e.name} dur`).toBe(true);
      }
    }
    const names = t.traceEvents.filter((e) => e.name === 'thread_name').map((e) => [e.tid, (e.args as { name: string }).name]);
    expect(names).toEqual([[0, 'parameter server'], [1, 'worker w0'], [2, 'worker w1'], [3, 'worker w2']]);

    const spans = t.traceEvents.filter((e) => e.ph === 'X');
    const count_ = (tid: number, name: string) => spans.filter((e) => e.tid === tid && e.name === name).length;
    expect(count_(0, 'optimizer')).toBe(steps);
    expect(count_(0, 'gather gradients')).toBe(steps);
    expect(spans.filter((e) => e.tid === 0 && e.cat === 'step')).toHaveLength(steps);
    for (const tid of [1, 2, 3]) {
      expect(count_(tid, 'compute')).toBe(steps);
      expect(count_(tid, 'encode')).toBe(steps);
      expect(count_(tid, 'transfer')).toBe(2 * steps);
      expect(count_(tid, 'optimizer')).toBe(steps);
    }
    // w2 is last on even steps (3 of 6) and never waits then; w0 waits every step.
    expect(count_(1, 'wait')).toBe(steps);
    expect(count_(3, 'wait')).toBe(steps / 2);
    // compute spans carry the reported duration (µs)
    const compute = spans.find((e) => e.tid === 3 && e.name === 'compute' && e.args?.step === 0)!;
    expect(compute.dur).toBe(30_000);
    // round trip 34 ms = 30 compute + 0.5 encode + 3.5 transfer, drawn half before and half after
    expect(compute.ts).toBe(101_750);
    const back = spans.find((e) => e.tid === 3 && e.name === 'transfer' && e.args?.step === 0 && String(e.args?.direction).startsWith('gradient'))!;
    expect(back.ts! + back.dur!).toBe(134_000);
    expectLanesSequential(t.traceEvents);

    // the PS lane's step span names the step's straggler
    const step0 = spans.find((e) => e.name === 'step 0')!;
    expect(step0.args).toMatchObject({ slowest: 'w2' });
    expect(spans.some((e) => e.name === 'evaluate (epoch 1)' && e.tid === 0)).toBe(true);
    expect(t.traceEvents.some((e) => e.ph === 'i' && e.name === 'w1 left')).toBe(true);

    // straggler: w2, late on 3 steps by 18 ms (w0) + 16 ms (w1)
    expect(t.otherData.straggler).toMatchObject({ workerId: 'w2', slowestInSteps: 3 });
    expect(t.otherData.straggler!.waitCausedSeconds).toBeCloseTo((3 * (20 + 18)) / 1000, 9);
    expect(t.otherData.stragglerLine).toMatch(/^straggler: w2 delivered last in 3 steps/);
  });
});

describe('a traced in-process run', () => {
  it('records every committed step of every worker; its straggler is the report’s', async () => {
    const run = await trainWatched({ workers: 3, batchSize: 16, trainLimit: 480, testLimit: 100, model: 'mlp' }, { trace: true, http: undefined });
    const path = join(dir, 'run.json');
    await run.telemetry.close(path);
    const t = readTrace(path);
    const r = run.report;
    expect(r.steps).toBe(10);
    expect(t.otherData.steps).toBe(r.steps);
    expect(t.otherData.workers.sort()).toEqual(['w0', 'w1', 'w2']);
    for (const tid of [1, 2, 3]) expect(t.traceEvents.filter((e) => e.tid === tid && e.name === 'compute')).toHaveLength(r.steps);
    expectLanesSequential(t.traceEvents);
    expect(r.straggler).not.toBeNull();
    expect(t.otherData.straggler!.workerId).toBe(r.straggler!.workerId);
    expect(t.otherData.straggler!.waitCausedSeconds).toBeCloseTo(r.straggler!.waitCausedSeconds, 6);
    expect(r.perWorker.reduce((a, w) => a + w.stragglerSteps, 0)).toBe(r.steps);

    const table = summaryTable(r.perWorker, r.straggler).split('\n');
    expect(table[0]).toMatch(/^worker\s+steps\s+samples\s+img\/s\s+compute\s+send\s+wait\s+optimizer\s+last in\s+wait caused$/);
    expect(table.slice(1, 4).map((l) => l.split(/\s+/)[0])).toEqual(['w0', 'w1', 'w2']);
    for (const line of table.slice(1, 4)) {
      const shares = [...line.matchAll(/(\d+\.\d)%/g)].slice(0, 4).map((m) => Number(m[1]));
      expect(shares.reduce((a, b) => a + b, 0)).toBeCloseTo(100, 0);
    }
    expect(table[4]).toBe(stragglerLine(r.straggler));
  });
});
