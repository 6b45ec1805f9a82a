/**
 * A one-line terminal progress bar (what `tqdm` is to Python examples). Only
 * meant for an interactive stdout: callers skip it when stdout is not a TTY.
 */
export class ProgressBar {
  private done_ = 0;
  private readonly start = performance.now();
  private lastDraw = 0;

  constructor(
    private readonly label: string,
    private readonly total: number | undefined,
    private readonly width = 30,
  ) {}

  /** One more item done; `info` is shown after the bar (e.g. the running loss). */
  tick(info = ''): void {
    this.done_ += 1;
    const now = performance.now();
    // Redrawing every step would cost more than a small model's step.
    if (now - this.lastDraw < 100 && this.done_ !== this.total) return;
    this.lastDraw = now;
    const rate = this.done_ / ((now - this.start) / 1000);
    const frac = this.total ? Math.min(1, this.done_ / this.total) : 0;
    const filled = Math.round(frac * this.width);
    const bar = this.total ? `[${'#'.repeat(filled)}${'.'.repeat(this.width - filled)}] ${this.done_}/${this.total}` : `${this.done_}`;
    const eta = this.total && rate > 0 ? ` eta ${((this.total - this.done_) / rate).toFixed(0)}s` : '';
    const line = `${this.label} ${bar} ${rate.toFixed(1)} it/s${eta} ${info}`;
    const cols = process.stdout.columns ?? 120;
    process.stdout.write(`\r${line.slice(0, cols - 1).padEnd(Math.min(cols - 1, line.length))}\x1b[K`);
  }

  /** Finish the line so the next output starts on a fresh one. */
  done(): void {
    process.stdout.write('\r\x1b[K');
  }
}
