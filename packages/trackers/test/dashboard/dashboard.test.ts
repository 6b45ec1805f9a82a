import { describe, it, expect, afterEach } from 'vitest';
import { existsSync, mkdirSync } from 'node:fs';
import { request } from 'node:http';
import { join } from 'node:path';
import { TrackerHub, TrackerRegistry } from '@accelerate/core/internal';
import { builtinTrackers } from '../../src/index.js';
import { listRuns, startDashboard, type Dashboard } from '../../src/dashboard/server.js';
import { repoRoot, tempDir } from '../helpers.js';

// Page-side callbacks run in Chromium; the repo's tsconfig has no DOM types.
declare const document: {
  querySelector(s: string): { getAttribute(n: string): string | null } | null;
  querySelectorAll(s: string): { length: number };
  getElementById(id: string): { textContent: string | null } | null;
};
interface PageElement {
  getAttribute(n: string): string | null;
}

let dash: Dashboard | undefined;
afterEach(async () => {
  await dash?.close();
  dash = undefined;
});

/** A two-rank run with a fake clock: each step takes 0.5 s on rank 0 and 0.25 s on rank 1. */
async function twoRankRun(logdir: string) {
  const hubs = [0, 1].map((rank) => {
    let t = 1_700_000_000;
    const hub = new TrackerHub({
      logWith: ['jsonl'],
      loggingDir: logdir,
      isMainProcess: () => rank === 0,
      processIndex: () => rank,
      numProcesses: () => 2,
      registry: new TrackerRegistry(),
      loadBuiltins: async () => builtinTrackers,
      now: () => t,
      warn: () => {},
    });
    return { hub, rank, advance: (dt: number) => (t += dt) };
  });
  for (const h of hubs) await h.hub.initTrackers('demo', { lr: 0.1 }, { jsonl: { allRanks: true } });
  const loss = (rank: number, step: number) => (rank + 1) * 2 / (step + 1);
  const logSteps = async (from: number, to: number) => {
    for (let step = from; step < to; step++) {
      for (const h of hubs) {
        h.advance(h.rank === 0 ? 0.5 : 0.25);
        await h.hub.log({ loss: loss(h.rank, step), lr: { group0: 0.1 } }, step);
      }
    }
  };
  return { hubs, loss, logSteps };
}

function rawGet(port: number, path: string, host: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, path, headers: { Host: host } }, (res) => {
      let body = '';
      res.on('data', (d) => (body += d));
      res.on('end', () => resolve({ status: res.statusCode!, body }));
    });
    req.on('error', reject);
    req.end();
  });
}

describe('dashboard server', () => {
  it('lists runs with their rank files, refuses foreign Host headers and non-loopback binds', async () => {
    const logdir = tempDir('dash-http');
    const { logSteps } = await twoRankRun(logdir);
    await logSteps(0, 2);
    expect(listRuns(logdir).map((r) => [r.id, r.name, r.files.map((f) => f.rank)])).toEqual([['demo/events', 'demo', [0, 1]]]);
    dash = await startDashboard({ logdir });
    expect(dash.url).toBe(`http://127.0.0.1:${dash.port}/`);
    const runs = JSON.parse((await rawGet(dash.port, '/api/runs', `127.0.0.1:${dash.port}`)).body);
    expect(runs.map((r: { id: string; ranks: number[] }) => [r.id, r.ranks])).toEqual([['demo/events', [0, 1]]]);
    expect((await rawGet(dash.port, '/api/runs', `evil.example:${dash.port}`)).status).toBe(403);
    expect((await rawGet(dash.port, '/api/stream?run=../../etc/passwd', `localhost:${dash.port}`)).status).toBe(404);
    const page = await rawGet(dash.port, '/', `localhost:${dash.port}`);
    expect(page.status).toBe(200);
    expect(page.body).not.toMatch(/<script[^>]+src=|<link[^>]+href=|https?:\/\/(?!www\.w3\.org)/); // nothing external
    await expect(startDashboard({ logdir, host: '0.0.0.0' })).rejects.toThrow(/"0\.0\.0\.0" is not a loopback address/);
  });
});

const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
let chromiumReason: string | undefined;
if (!existsSync(CHROMIUM)) chromiumReason = `no Chromium at ${CHROMIUM} (apt-get install chromium, or set CHROMIUM_PATH)`;
if (chromiumReason) console.log(`[skip] dashboard browser test: ${chromiumReason}`);

describe('dashboard in a real headless Chromium', () => {
  it.skipIf(!!chromiumReason)(`loads, plots every rank's logged values, and updates as events arrive${chromiumReason ? ` (skipped: ${chromiumReason})` : ''}`, async () => {
    const { chromium } = await import('playwright-core');
    const logdir = tempDir('dash-ui');
    const { hubs, loss, logSteps } = await twoRankRun(logdir);
    await logSteps(0, 5);
    dash = await startDashboard({ logdir, pollMs: 100 });
    const browser = await chromium.launch({
      executablePath: CHROMIUM,
      headless: true,
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run'],
    });
    try {
      const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
      const errors: string[] = [];
      page.on('pageerror', (e) => errors.push(e.message));
      page.on('console', (m) => m.type() === 'error' && errors.push(m.text()));
      await page.goto(dash.url, { timeout: 20_000 });
      await page.waitForSelector('body[data-ready="demo/events"]', { timeout: 20_000 });
      const read = (metric: string) =>
        page.$$eval(`svg[data-metric="${metric}"] polyline`, (ps: PageElement[]) =>
          ps.map((p) => ({ rank: Number(p.getAttribute('data-rank')), values: JSON.parse(p.getAttribute('data-values')!), ys: p.getAttribute('points')!.split(' ').map((xy: string) => Number(xy.split(',')[1])) })),
        );
      await page.waitForFunction(() => document.querySelectorAll('svg[data-metric="loss"] polyline').length === 2, null, { timeout: 10_000 });
      const lossLines = await read('loss');
      expect(lossLines.map((l) => l.rank)).toEqual([0, 1]);
      for (const l of lossLines) {
        expect(l.values).toEqual([0, 1, 2, 3, 4].map((s) => [s, loss(l.rank, s)]));
        // Decreasing loss is drawn going down the chart: SVG y grows.
        expect(l.ys.every((y: number, i: number) => i === 0 || y > l.ys[i - 1])).toBe(true);
      }
      expect((await read('lr/group0'))[0].values).toEqual([0, 1, 2, 3, 4].map((s) => [s, 0.1]));
      const stepTime = await read('step time (s)');
      expect(stepTime.map((l) => [l.rank, l.values.map((v: number[]) => v[1])])).toEqual([[0, [0.5, 0.5, 0.5, 0.5]], [1, [0.25, 0.25, 0.25, 0.25]]]);
      const throughput = await read('throughput (steps/s)');
      expect(throughput.map((l) => l.values.map((v: number[]) => v[1]))).toEqual([[2, 2, 2, 2], [4, 4, 4, 4]]);
      expect(await page.$$eval('#runs button', (bs: Array<{ textContent: string | null }>) => bs.map((b) => b.textContent))).toEqual(['demo']);

      // New events appended to the files show up without a reload.
      await logSteps(5, 8);
      await page.waitForFunction(() => {
        const p = document.querySelector('svg[data-metric="loss"] polyline[data-rank="1"]');
        return !!p && JSON.parse(p.getAttribute('data-values')!).length === 8;
      }, null, { timeout: 10_000 });
      const after = await read('loss');
      expect(after.map((l) => l.values.length)).toEqual([8, 8]);
      expect(after[1].values.at(-1)).toEqual([7, loss(1, 7)]);
      await hubs[0].hub.endTraining();
      await hubs[1].hub.endTraining();
      await page.waitForFunction(() => /finished/.test(document.getElementById('status')!.textContent!), null, { timeout: 10_000 });

      const outDir = join(repoRoot, 'test-results');
      mkdirSync(outDir, { recursive: true });
      await page.screenshot({ path: join(outDir, 'trackers-dashboard.png'), fullPage: true });
      expect(errors).toEqual([]);
    } finally {
      await browser.close();
    }
  }, 90_000);
});
