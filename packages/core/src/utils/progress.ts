/**
 * Terminal progress bars for long work (training loops, saving and loading
 * big checkpoints) — what `tqdm` is to Accelerate's examples.
 *
 * A bar draws only where a person is watching: on the main process, when its
 * stream is an interactive terminal and not under CI. Everywhere else it is a
 * no-op object with the same methods, so callers never branch. Redraws are
 * throttled (a small model's step is cheaper than a terminal write), byte
 * units show sizes and bytes/s, and `close()` leaves one finished line.
 * @module
 */

/** Where a bar draws: `process.stderr` by default; anything with `write` (tests pass a fake TTY). */
export interface ProgressStream {
  write(text: string): unknown;
  /** Only a stream whose `isTTY` is true gets a bar. */
  isTTY?: boolean;
  /** Terminal width; lines are cut to fit (default, and when 0: 80). */
  columns?: number;
}

/** Options of {@link progressBar}. */
export interface ProgressBarOptions {
  /** Units of work expected; without it the bar shows a count and a rate only. */
  total?: number;
  /** Shown first, e.g. `epoch 1/3` or `saving`. */
  label?: string;
  /** Name of one unit (default `it`). `B` (bytes) formats counts as sizes and the rate as bytes/s. */
  unit?: string;
  /** Stream to draw on (default `process.stderr`). */
  stream?: ProgressStream;
  /**
   * Force the bar on or off. Default: on when the stream is a TTY, `CI` is not
   * set, `ACCELERATE_DISABLE_PROGRESS_BARS` is not true, and this is the main
   * process.
   */
  enabled?: boolean;
  /** Whether this is the main process (default: env `RANK`, else `LOCAL_RANK`, is unset or 0). */
  isMainProcess?: boolean;
  /** Environment read for the defaults (default `process.env`). */
  env?: Readonly<Record<string, string | undefined>>;
  /** Least time between two redraws (default 100 ms); reaching `total` always redraws. */
  minIntervalMs?: number;
  /** Characters of the bar itself (default 24). */
  width?: number;
  /** Clock in milliseconds (default `performance.now`; tests pass a fake one). */
  now?: () => number;
}

/** A progress bar from {@link progressBar}; every method is a no-op when it is disabled. */
export interface ProgressBar {
  /** Whether the bar draws anything. */
  readonly enabled: boolean;
  /** Units done so far. */
  readonly done: number;
  /** Add `n` units (default 1); `info` replaces the text after the bar (e.g. the running loss). */
  update(n?: number, info?: string): void;
  /** Draw the final line (elapsed time instead of the estimate) and end it with a newline. Idempotent. */
  close(info?: string): void;
}

/** Environment variable that turns every bar off (`1`, `true`, `yes`). */
export const DISABLE_PROGRESS_BARS_ENV = 'ACCELERATE_DISABLE_PROGRESS_BARS';

const TRUE = /^(1|true|yes|on|y)$/i;

function envMainProcess(env: Readonly<Record<string, string | undefined>>): boolean {
  const rank = env.RANK ?? env.LOCAL_RANK;
  return rank === undefined || rank === '' || Number(rank) === 0;
}

/** Whether a bar with these options would draw (see {@link ProgressBarOptions.enabled}). */
export function progressBarsEnabled(options: Pick<ProgressBarOptions, 'stream' | 'enabled' | 'isMainProcess' | 'env'> = {}): boolean {
  if (options.enabled !== undefined) return options.enabled;
  const env = options.env ?? process.env;
  const stream = options.stream ?? process.stderr;
  if (stream.isTTY !== true) return false;
  // CI logs are files: carriage-return redraws would fill them with partial lines.
  if (env.CI !== undefined && env.CI !== '' && !/^(0|false|no)$/i.test(env.CI)) return false;
  if (TRUE.test(env[DISABLE_PROGRESS_BARS_ENV] ?? '')) return false;
  return options.isMainProcess ?? envMainProcess(env);
}

const SIZE_UNITS = ['B', 'kB', 'MB', 'GB', 'TB'];

/** `1536000` -> `1.5 MB` (decimal units, as `du -h --si` and tqdm's `unit_scale`). */
export function formatBytes(bytes: number): string {
  let v = bytes;
  let i = 0;
  while (Math.abs(v) >= 1000 && i < SIZE_UNITS.length - 1) {
    v /= 1000;
    i++;
  }
  return i === 0 ? `${Math.round(v)} B` : `${v.toFixed(v >= 100 ? 0 : 1)} ${SIZE_UNITS[i]}`;
}

/** Seconds as `m:ss` or `h:mm:ss`. */
export function formatDuration(seconds: number): string {
  const s = Math.max(0, Math.round(seconds));
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const ss = String(s % 60).padStart(2, '0');
  return h > 0 ? `${h}:${String(m).padStart(2, '0')}:${ss}` : `${m}:${ss}`;
}

const DISABLED: ProgressBar = Object.freeze({ enabled: false, done: 0, update() {}, close() {} });

class TerminalProgressBar implements ProgressBar {
  readonly enabled = true;
  done = 0;
  private readonly start: number;
  private lastDraw = -Infinity;
  private info = '';
  private closed = false;
  private readonly bytes: boolean;

  constructor(
    private readonly o: ProgressBarOptions & { stream: ProgressStream; now: () => number },
  ) {
    this.start = o.now();
    this.bytes = o.unit === 'B';
    if (o.total !== undefined && !(o.total >= 0)) {
      throw new RangeError(`progressBar: total must be a number >= 0, got ${String(o.total)}.`);
    }
  }

  update(n = 1, info?: string): void {
    if (this.closed) return;
    this.done += n;
    if (info !== undefined) this.info = info;
    const now = this.o.now();
    const finished = this.o.total !== undefined && this.done >= this.o.total;
    if (now - this.lastDraw < (this.o.minIntervalMs ?? 100) && !finished) return;
    this.lastDraw = now;
    this.draw(now, false);
  }

  close(info?: string): void {
    if (this.closed) return;
    if (info !== undefined) this.info = info;
    this.draw(this.o.now(), true);
    this.o.stream.write('\n');
    this.closed = true;
  }

  private count(n: number): string {
    return this.bytes ? formatBytes(n) : String(n);
  }

  private draw(now: number, final: boolean): void {
    const { total, label, width = 24 } = this.o;
    const unit = this.o.unit ?? 'it';
    const seconds = (now - this.start) / 1000;
    const rate = seconds > 0 ? this.done / seconds : 0;
    const parts: string[] = [];
    if (label) parts.push(label);
    if (total !== undefined && total > 0) {
      const frac = Math.min(1, this.done / total);
      const filled = Math.floor(frac * width);
      parts.push(`${String(Math.floor(frac * 100)).padStart(3)}%`, `[${'#'.repeat(filled)}${'.'.repeat(width - filled)}]`, `${this.count(this.done)}/${this.count(total)}`);
    } else {
      parts.push(this.bytes ? this.count(this.done) : `${this.done} ${unit}`);
    }
    const rateText = this.bytes ? `${formatBytes(rate)}/s` : `${rate.toFixed(1)} ${unit}/s`;
    if (final) parts.push(`${rateText} in ${formatDuration(seconds)}`);
    else {
      const eta = total !== undefined && rate > 0 ? ` eta ${formatDuration((total - this.done) / rate)}` : '';
      parts.push(`${rateText}${eta}`);
    }
    if (this.info) parts.push(this.info);
    const cols = this.o.stream.columns || 80; // 0 when the terminal did not report a size
    // Cut to the terminal width: a wrapped line cannot be redrawn in place by '\r'.
    this.o.stream.write(`\r${parts.join(' ').slice(0, Math.max(1, cols - 1))}\x1b[K`);
  }
}

/**
 * A progress bar on the main process's terminal, or a no-op bar where nobody
 * watches (not a TTY, CI, another rank, or `enabled: false`).
 *
 * ```ts
 * const bar = progressBar({ total: loader.length, label: `epoch ${epoch}` });
 * for await (const batch of loader) { ...; bar.update(1, `loss ${loss.toFixed(4)}`); }
 * bar.close();
 *
 * const io = progressBar({ total: totalBytes, label: 'saving', unit: 'B' }); // "12.0 MB/1.2 GB 85.3 MB/s"
 * ```
 */
export function progressBar(options: ProgressBarOptions = {}): ProgressBar {
  if (!progressBarsEnabled(options)) return DISABLED;
  return new TerminalProgressBar({ ...options, stream: options.stream ?? process.stderr, now: options.now ?? (() => performance.now()) });
}
