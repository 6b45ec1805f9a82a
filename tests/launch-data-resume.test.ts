// Exact resume of prepared loaders across 2 launched processes (`accelerate launch` + gloo).
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { fixture, rankResults, runAccelerate, type RunResult } from './helpers.js';

const P = 2;
let run: RunResult;
let ranks: any[];
const dir = mkdtempSync(join(tmpdir(), 'accelerate-ts-resume-'));

beforeAll(async () => {
  run = await runAccelerate(['launch', '--num_processes', String(P), '--num_machines', '1', '--mixed_precision', 'no', fixture('data-resume.ts')], {
    timeoutMs: 55_000,
    env: { ACCELERATE_TS_RESUME_DIR: dir },
  });
  ranks = rankResults(run.stdout);
}, 60_000);
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('exact resume of prepared loaders on 2 launched processes', () => {
  it('the launch succeeds and every rank reports', () => {
    expect(run.stderr).not.toMatch(/failed|exited with code|was ended by/);
    expect(run.code).toBe(0);
    expect(ranks.map((r) => [r.rank, r.P])).toEqual([
      [0, P],
      [1, P],
    ]);
  });

  for (const name of ['shard20', 'unevenShard19', 'split19', 'dispatch19', 'stream19']) {
    it(`${name}: restored after step 1, every rank continues exactly as the uninterrupted pass, padded last batch included`, () => {
      for (const r of ranks) {
        const { full, resumed } = r[name];
        expect(full.length).toBeGreaterThan(2);
        expect(resumed).toEqual(full.slice(2));
      }
      expect(ranks[1][name].state).toEqual(ranks[0][name].state);
    });
  }

  it('shard20 (the reported case): the padded last batch wraps to the start of the epoch order', () => {
    const [r0, r1] = ranks.map((r) => r.shard20.full as number[][]);
    const order = [0, 1, 2, 3].flatMap((s) => [...r0[s], ...r1[s]]);
    // 20 real samples, then 4 from the start of the epoch.
    expect(order.slice(20)).toEqual(order.slice(0, 4));
    expect(ranks[0].shard20.resumed[1]).toEqual(r0[3]);
    expect(ranks[1].shard20.resumed[1]).toEqual(r1[3]);
  });

  it('loadState then skipFirstBatches(dl, k): the resumed epoch is not skipped twice and the next pass of dl is the whole next epoch', () => {
    for (const r of ranks) {
      const { head, e0, e1, view, next } = r.skipHabit;
      expect(head).toEqual(e0.slice(0, 3));
      expect(view).toEqual(e0.slice(3));
      expect(next).toEqual(e1);
    }
    // One warning (main process), naming what would have been skipped twice.
    const out = `${run.stdout}\n${run.stderr}`;
    const warnings = out.split('\n').filter((l) => l.includes('skipFirstBatches(loader, 1): this loader has a position restored by loadState'));
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toContain('24 samples of epoch 0 already consumed = 3 batches of 8 across 2 process(es)');
    expect(warnings[0]).toContain('double-skip samples 24..31');
  });
});
