import { describe, expect, it } from 'vitest';
import { formatBytes, formatDuration, progressBar, progressBarsEnabled, type ProgressStream } from '../../src/utils/progress.js';

/** A stream that says it is a terminal and records what is written. */
function fakeTty(columns = 100): ProgressStream & { out: string[] } {
  const out: string[] = [];
  return { isTTY: true, columns, out, write: (t: string) => out.push(t) };
}

/** A clock the test moves by hand. */
function clock(startMs = 1000) {
  let t = startMs;
  return { now: () => t, advance: (ms: number) => void (t += ms) };
}

const TTY_ENV = {}; // no CI, no RANK

describe('progressBar', () => {
  it('draws into a TTY, throttles redraws to minIntervalMs, always draws the last unit, finishes with one clean line', () => {
    const stream = fakeTty();
    const c = clock();
    const bar = progressBar({ total: 4, label: 'epoch 1/2', stream, env: TTY_ENV, now: c.now, width: 10 });
    expect(bar.enabled).toBe(true);
    c.advance(500);
    bar.update(1, 'loss 2.0000');
    c.advance(50); // under 100 ms: no redraw
    bar.update(1, 'loss 1.5000');
    c.advance(450);
    bar.update(1);
    c.advance(10); // the last unit is drawn even inside the interval
    bar.update(1, 'loss 1.0000');
    c.advance(990);
    bar.close();
    bar.close(); // idempotent
    expect(stream.out).toEqual([
      '\repoch 1/2  25% [##........] 1/4 2.0 it/s eta 0:02 loss 2.0000\x1b[K',
      '\repoch 1/2  75% [#######...] 3/4 3.0 it/s eta 0:00 loss 1.5000\x1b[K',
      '\repoch 1/2 100% [##########] 4/4 4.0 it/s eta 0:00 loss 1.0000\x1b[K',
      '\repoch 1/2 100% [##########] 4/4 2.0 it/s in 0:02 loss 1.0000\x1b[K',
      '\n',
    ]);
    expect(bar.done).toBe(4);
    bar.update(1); // after close: ignored
    expect(stream.out).toHaveLength(5);
  });

  it('byte units show sizes and bytes/s', () => {
    const stream = fakeTty();
    const c = clock(0);
    const bar = progressBar({ total: 3_000_000_000, label: 'saving', unit: 'B', stream, env: TTY_ENV, now: c.now, width: 8 });
    c.advance(2000);
    bar.update(1_500_000_000);
    c.advance(2000);
    bar.update(1_500_000_000);
    bar.close();
    expect(stream.out).toEqual([
      '\rsaving  50% [####....] 1.5 GB/3.0 GB 750 MB/s eta 0:02\x1b[K',
      '\rsaving 100% [########] 3.0 GB/3.0 GB 750 MB/s eta 0:00\x1b[K',
      '\rsaving 100% [########] 3.0 GB/3.0 GB 750 MB/s in 0:04\x1b[K',
      '\n',
    ]);
  });

  it('without a total shows a count and a rate; lines are cut to the terminal width', () => {
    const stream = fakeTty(20);
    const c = clock(0);
    const bar = progressBar({ label: 'eval', unit: 'batch', stream, env: TTY_ENV, now: c.now });
    c.advance(1000);
    bar.update(5);
    expect(stream.out).toEqual(['\reval 5 batch 5.0 ba\x1b[K']);
    // A terminal that reports no size (columns 0) gets 80 columns, not a 1-character line.
    const unsized = fakeTty(0);
    const wide = progressBar({ label: 'x'.repeat(100), stream: unsized, env: TTY_ENV, now: c.now });
    wide.update();
    expect(unsized.out).toEqual([`\r${'x'.repeat(79)}\x1b[K`]);
  });

  it('is off (draws nothing) when the stream is not a TTY, under CI, on another rank, or when disabled', () => {
    const pipe = { isTTY: false, out: [] as string[], write(t: string) { this.out.push(t); } };
    for (const [opts, why] of [
      [{ stream: pipe, env: {} }, 'not a TTY'],
      [{ stream: fakeTty(), env: { CI: 'true' } }, 'CI'],
      [{ stream: fakeTty(), env: { RANK: '1' } }, 'rank 1'],
      [{ stream: fakeTty(), env: { LOCAL_RANK: '2' } }, 'local rank 2'],
      [{ stream: fakeTty(), env: { ACCELERATE_DISABLE_PROGRESS_BARS: '1' } }, 'disabled by env'],
      [{ stream: fakeTty(), env: {}, isMainProcess: false }, 'not main'],
      [{ stream: fakeTty(), env: {}, enabled: false }, 'enabled: false'],
    ] as const) {
      const bar = progressBar({ total: 2, ...opts });
      bar.update(2, 'x');
      bar.close();
      expect(bar.enabled, why).toBe(false);
      expect((opts.stream as { out: string[] }).out, why).toEqual([]);
    }
    // CI=false and rank 0 keep the bar.
    expect(progressBarsEnabled({ stream: fakeTty(), env: { CI: 'false', RANK: '0' } })).toBe(true);
    expect(progressBarsEnabled({ stream: pipe, enabled: true })).toBe(true);
  });

  it('rejects a negative total with the value', () => {
    expect(() => progressBar({ total: -1, stream: fakeTty(), env: {} })).toThrow('progressBar: total must be a number >= 0, got -1.');
  });
});

describe('formatBytes / formatDuration', () => {
  it('formats decimal sizes and m:ss / h:mm:ss', () => {
    expect([0, 999, 1000, 1536000, 268_435_456, 5e12].map(formatBytes)).toEqual(['0 B', '999 B', '1.0 kB', '1.5 MB', '268 MB', '5.0 TB']);
    expect([0, 59.4, 61, 3600, 3725].map(formatDuration)).toEqual(['0:00', '0:59', '1:01', '1:00:00', '1:02:05']);
  });
});

describe('checkpoint progress (saveModelFiles / loadModelFiles)', () => {
  it('draws one byte-counted step per shard when forced, and nothing for a small checkpoint by default', async () => {
    const { mkdtempSync } = await import('node:fs');
    const { tmpdir } = await import('node:os');
    const { join } = await import('node:path');
    const { HostTensor } = await import('../../src/tensor/host-tensor.js');
    const { saveModelFiles, loadModelFiles, checkpointNeedsProgress } = await import('../../src/checkpoint/save-model.js');
    const dir = mkdtempSync(join(tmpdir(), 'progress-ckpt-'));
    const state = {
      a: new HostTensor(new Float32Array(250), [250], 'float32'), // 1000 bytes
      b: new HostTensor(new Float32Array(250), [250], 'float32'),
    };
    const stream = fakeTty();
    const c = clock(0);
    const saved = await saveModelFiles(state, dir, { maxShardSize: 1000, progress: { enabled: true, stream, now: c.now, width: 4 } });
    expect(saved.files).toEqual(['model-00001-of-00002.safetensors', 'model-00002-of-00002.safetensors']);
    expect(stream.out).toEqual([
      '\rsaving 2 shards  50% [##..] 1.0 kB/2.0 kB 0 B/s model-00001-of-00002.safetensors\x1b[K',
      '\rsaving 2 shards 100% [####] 2.0 kB/2.0 kB 0 B/s model-00002-of-00002.safetensors\x1b[K',
      '\rsaving 2 shards 100% [####] 2.0 kB/2.0 kB 0 B/s in 0:00 model-00002-of-00002.safetensors\x1b[K',
      '\n',
    ]);

    // Loading counts file sizes (header included); a TTY alone does not draw a bar for 2 small files.
    const quiet = fakeTty();
    await loadModelFiles(dir, { progress: { stream: quiet, env: {} } });
    expect(quiet.out).toEqual([]);
    const loud = fakeTty();
    const loaded = await loadModelFiles(dir, { progress: { enabled: true, stream: loud, now: c.now, width: 4 } });
    expect(Object.keys(loaded)).toEqual(['a', 'b']);
    expect(loud.out.at(-2)).toMatch(/^\rloading 2 shards 100% \[####\] 2\.\d kB\/2\.\d kB 0 B\/s in 0:00 model-00002-of-00002\.safetensors\x1b\[K$/);
    expect(checkpointNeedsProgress(256 * 1024 ** 2, 1)).toBe(false);
    expect(checkpointNeedsProgress(256 * 1024 ** 2 + 1, 1)).toBe(true);
    expect(checkpointNeedsProgress(10, 8)).toBe(true);
  });
});
