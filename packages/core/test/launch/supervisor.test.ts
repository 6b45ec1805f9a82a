import { describe, it, expect } from 'vitest';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { superviseRanks, type RankProcessSpec } from '../../src/launch/supervisor.js';
import { isAlive, sink, waitGone } from './helpers.js';

const fixture = (name: string) => join(import.meta.dirname, 'fixtures', name);
function ranks(n: number, script: string, env: Record<string, string> = {}): RankProcessSpec[] {
  return Array.from({ length: n }, (_, rank) => ({
    rank,
    localRank: rank,
    command: process.execPath,
    args: [fixture(script)],
    env: { ...process.env, ...env, RANK: String(rank) },
  }));
}

describe('superviseRanks', () => {
  it('prefixes every whole line with [rank N], also lines written in pieces and a last line without newline', async () => {
    const out = sink();
    const err = sink();
    const r = await superviseRanks(ranks(2, 'lines.mjs'), { stdout: out.write, stderr: err.write });
    expect(r.ok).toBe(true);
    expect(r.exitCode).toBe(0);
    const outLines = out.text().split('\n').filter(Boolean).sort();
    expect(outLines).toEqual([
      '[rank 0] first line of rank 0, finished',
      '[rank 0] second line',
      '[rank 1] first line of rank 1, finished',
      '[rank 1] second line',
    ]);
    expect(err.text().split('\n').filter(Boolean).sort()).toEqual([
      '[rank 0] warning one',
      '[rank 0] warning two (no newline at the end)',
      '[rank 1] warning one',
      '[rank 1] warning two (no newline at the end)',
    ]);
    const plain = sink();
    await superviseRanks(ranks(1, 'lines.mjs'), { stdout: plain.write, stderr: () => {}, prefix: false });
    expect(plain.text()).toBe('first line of rank 0, finished\nsecond line\n');
  });

  it('a failing rank stops the others; the summary names the rank, its exit code and its last stderr lines', async () => {
    const err = sink();
    const t0 = Date.now();
    const r = await superviseRanks(ranks(3, 'fail.mjs', { FAIL_RANK: '1', FAIL_CODE: '7' }), { stdout: () => {}, stderr: err.write, tailLines: 5 });
    expect(Date.now() - t0).toBeLessThan(4000); // stopped at once, not after the grace period
    expect(r.ok).toBe(false);
    expect(r.exitCode).toBe(7);
    expect(r.failed).toMatchObject({ rank: 1, exitCode: 7, signal: null, stoppedByLauncher: false });
    expect(r.failed!.stderrTail).toEqual(['error line 26', 'error line 27', 'error line 28', 'error line 29', 'error line 30']);
    for (const o of r.ranks.filter((x) => x.rank !== 1)) expect(o).toMatchObject({ stoppedByLauncher: true, signal: 'SIGTERM' });
    expect(r.summary).toMatch(/^accelerate launch: rank 1 exited with code 7 after \d+\.\d s\.\n/);
    expect(r.summary).toContain('  rank 0: stopped by the launcher (was ended by SIGTERM)\n  rank 2: stopped by the launcher (was ended by SIGTERM)\n');
    expect(r.summary).toContain('Last lines rank 1 wrote to stderr:\n  | error line 26\n');
    expect(r.summary.trimEnd().endsWith('  | error line 30')).toBe(true);
    expect(err.text()).toContain('accelerate launch: rank 1 exited with code 7; stopping the other 2 rank(s)');
  });

  it('a rank killed by a signal is reported with the signal; exit code 128 + signal number', async () => {
    const r = await superviseRanks(ranks(2, 'fail.mjs', { FAIL_RANK: '0', FAIL_SIGNAL: 'SIGKILL' }), { stdout: () => {}, stderr: () => {} });
    expect(r.failed).toMatchObject({ rank: 0, exitCode: null, signal: 'SIGKILL' });
    expect(r.exitCode).toBe(137);
    expect(r.summary).toMatch(/rank 0 was ended by SIGKILL/);
  });

  it('a rank that ignores SIGTERM is killed after the grace period', async () => {
    const out = sink();
    const t0 = Date.now();
    const r = await superviseRanks(ranks(2, 'fail.mjs', { FAIL_RANK: '1', IGNORE_SIGTERM: '1', FAIL_AFTER_MS: '300' }), {
      stdout: out.write,
      stderr: () => {},
      gracePeriodMs: 700,
    });
    const took = Date.now() - t0;
    expect(r.ranks[0]).toMatchObject({ stoppedByLauncher: true, signal: 'SIGKILL' });
    expect(out.text()).toContain('[rank 0] rank 0 ignores SIGTERM');
    expect(took).toBeGreaterThanOrEqual(900);
    expect(took).toBeLessThan(5000);
  });

  it('a command that cannot start counts as failed with code 127', async () => {
    const r = await superviseRanks([{ rank: 0, localRank: 0, command: '/nonexistent/program', args: [], env: process.env }], { stdout: () => {}, stderr: () => {} });
    expect(r.ok).toBe(false);
    expect(r.failed).toMatchObject({ rank: 0, exitCode: 127 });
    expect(r.summary).toMatch(/rank 0 could not start: spawn \/nonexistent\/program ENOENT/);
  });

  it('--tee / --log_dir: selected streams are also written, unprefixed, to rank_<N>/stdout.log and stderr.log', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'launch-logs-'));
    await superviseRanks(ranks(2, 'lines.mjs'), { stdout: () => {}, stderr: () => {}, logDir: dir, tee: '0:3,1:1' });
    expect(readFileSync(join(dir, 'rank_0', 'stdout.log'), 'utf8')).toBe('first line of rank 0, finished\nsecond line\n');
    expect(readFileSync(join(dir, 'rank_0', 'stderr.log'), 'utf8')).toBe('warning one\nwarning two (no newline at the end)\n');
    expect(readFileSync(join(dir, 'rank_1', 'stdout.log'), 'utf8')).toBe('first line of rank 1, finished\nsecond line\n');
    expect(() => readFileSync(join(dir, 'rank_1', 'stderr.log'))).toThrow(/ENOENT/);
  });

  it('processes a rank started are ended with it: nothing survives a failed launch', async () => {
    const pids: number[] = [];
    const r = await superviseRanks(
      [
        ...ranks(2, 'spawner.mjs'),
        { rank: 2, localRank: 2, command: process.execPath, args: ['-e', 'setTimeout(() => process.exit(3), 800)'], env: process.env },
      ],
      {
        stdout: (t) => {
          for (const m of t.matchAll(/"pid":(\d+),"grandchild":(\d+)/g)) pids.push(Number(m[1]), Number(m[2]));
        },
        stderr: () => {},
      },
    );
    expect(r.failed?.rank).toBe(2);
    expect(pids).toHaveLength(4);
    expect(await waitGone(pids)).toEqual([]);
    expect(pids.some(isAlive)).toBe(false);
  });
});
