/**
 * What a person watching a run sees: a live line (epoch, step, loss, images/s, ETA, workers)
 * redrawn in place on a terminal, plain periodic lines otherwise, and one line per epoch.
 */

export interface ProgressStep {
  epoch: number;
  step: number;
  stepInEpoch: number;
  stepsInEpoch: number;
  worldSize: number;
  loss: number;
  imagesPerSecond: number;
  epochFraction: number;
}

export interface ProgressEpoch {
  epoch: number;
  trainLoss: number;
  testAccuracy: number;
  testLoss: number;
  trainSeconds: number;
}

export class Progress {
  private readonly live: boolean;
  private lastDraw = 0;
  private readonly started = performance.now();
  private smoothedLoss = NaN;
  /** Test accuracy of the last evaluated epoch (NaN until one is). */
  private accuracy = NaN;
  private lineOpen = false;

  constructor(
    private readonly out: NodeJS.WriteStream,
    private readonly epochs: number,
    private readonly plainEveryMs = 10_000,
  ) {
    this.live = Boolean(out.isTTY);
  }

  step(e: ProgressStep): void {
    this.smoothedLoss = Number.isNaN(this.smoothedLoss) ? e.loss : 0.9 * this.smoothedLoss + 0.1 * e.loss;
    const now = performance.now();
    const last = e.stepInEpoch === e.stepsInEpoch;
    if (now - this.lastDraw < (this.live ? 100 : this.plainEveryMs) && !last) return;
    this.lastDraw = now;
    const done = (e.epoch + e.epochFraction) / this.epochs;
    const elapsed = (now - this.started) / 1000;
    const eta = done > 0 ? (elapsed * (1 - done)) / done : NaN;
    const text =
      `epoch ${e.epoch + 1}/${this.epochs} step ${e.stepInEpoch}/${e.stepsInEpoch} ` +
      `loss ${this.smoothedLoss.toFixed(4)} ${Number.isNaN(this.accuracy) ? '' : `acc ${(this.accuracy * 100).toFixed(2)}% `}${e.imagesPerSecond.toFixed(0)} img/s ` +
      `ETA ${formatSeconds(eta)} workers ${e.worldSize}`;
    if (this.live) {
      const width = 24;
      const filled = Math.round(width * e.epochFraction);
      this.out.write(`\r\x1b[2K[${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ${text}`);
      this.lineOpen = true;
    } else {
      this.out.write(`${text}\n`);
    }
  }

  epoch(e: ProgressEpoch): void {
    this.accuracy = e.testAccuracy;
    this.closeLine();
    this.out.write(
      `epoch ${e.epoch + 1}/${this.epochs} done: train loss ${e.trainLoss.toFixed(4)}, ` +
        `test accuracy ${(e.testAccuracy * 100).toFixed(2)}%, test loss ${e.testLoss.toFixed(4)}, ${e.trainSeconds.toFixed(1)} s\n`,
    );
  }

  line(text: string): void {
    this.closeLine();
    this.out.write(`${text}\n`);
  }

  private closeLine(): void {
    if (this.lineOpen) this.out.write('\n');
    this.lineOpen = false;
  }
}

export function formatSeconds(s: number): string {
  if (!Number.isFinite(s)) return '--';
  const m = Math.floor(s / 60);
  return m > 0 ? `${m}m${String(Math.round(s % 60)).padStart(2, '0')}s` : `${Math.round(s)}s`;
}
