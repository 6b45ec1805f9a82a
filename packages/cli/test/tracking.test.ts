import { describe, it, expect } from 'vitest';
import { mkdtempSync, readFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { TrackerHub } from '@accelerate/core/internal';
import { runReplay, runDashboard } from '../src/commands/tracking.js';
import { processContext } from '../src/context.js';

function ctxWithOutput() {
  const out: string[] = [];
  const ctx = processContext({ stdout: (t) => void out.push(t), stderr: (t) => void out.push(t) });
  return { ctx, out };
}

describe('accelerate replay / dashboard', () => {
  it('replays a JSONL run into the CSV tracker', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'acc-replay-'));
    const hub = new TrackerHub({ logWith: ['jsonl'], loggingDir: dir });
    await hub.initTrackers('proj', { lr: 1 });
    const log = hub.eventLogPath!;
    await hub.log({ loss: 2 }, 1);
    await hub.log({ loss: 1 }, 2);
    await hub.endTraining();
    const { ctx, out } = ctxWithOutput();
    const target = mkdtempSync(join(tmpdir(), 'acc-replay-out-'));
    await runReplay(ctx, log, { to: 'csv', loggingDir: target });
    expect(ctx.exitCode).toBe(0);
    expect(out.join('')).toMatch(/- csv: \d+ delivered/);
    const csv = join(target, 'proj', 'metrics.csv');
    expect(existsSync(csv)).toBe(true);
    expect(readFileSync(csv, 'utf8')).toMatch(/loss[\s\S]*\n1,[^\n]*2[\s\S]*\n2,[^\n]*1/);
  });

  it('serves the dashboard on loopback', async () => {
    const { ctx, out } = ctxWithOutput();
    const close = await runDashboard(ctx, mkdtempSync(join(tmpdir(), 'acc-dash-')), {});
    try {
      const url = /(http:\/\/127\.0\.0\.1:\d+\/)/.exec(out.join(''))![1];
      const res = await fetch(url);
      expect(res.status).toBe(200);
      expect(await res.text()).toContain('<html');
    } finally {
      await close();
    }
  });
});

describe('accelerate launch --dashboard', () => {
  it('serves the dashboard beside the run and stops it when the run ends', async () => {
    const { spawnSync } = await import('node:child_process');
    const { writeFileSync } = await import('node:fs');
    const dir = mkdtempSync(join(tmpdir(), 'acc-launch-dash-'));
    // The launcher must announce the dashboard, run the ranks, then close the server (or it would never exit).
    writeFileSync(join(dir, 's.mjs'), "console.log('rank', process.env.RANK, 'ok');\n");
    const bin = join(import.meta.dirname, '..', 'dist', 'bin.js');
    const r = spawnSync(process.execPath, [bin, 'launch', '--num_processes', '2', '--dashboard', dir, join(dir, 's.mjs')], { encoding: 'utf8', timeout: 60_000 });
    expect(r.status).toBe(0);
    expect(r.stdout).toMatch(/dashboard for .*: http:\/\/127\.0\.0\.1:\d+\//);
    expect(r.stdout).toContain('[rank 0] rank 0 ok');
    expect(r.stdout).toContain('[rank 1] rank 1 ok');
  });
});
