// [B35] LR scheduling through the Accelerator on 2 launched processes (real gloo, libtorch DDP):
// tests/fixtures/sched-checks.ts runs Accelerate's test_sync optimizer+scheduler check.
import { beforeAll, describe, expect, it } from 'vitest';
import { fixture, rankResults, runAccelerate, type RunResult } from './helpers.js';

const P = 2;
let run: RunResult;
let ranks: any[];

beforeAll(async () => {
  run = await runAccelerate(['launch', '--num_processes', String(P), '--num_machines', '1', '--mixed_precision', 'no', fixture('sched-checks.ts')], { timeoutMs: 55_000 });
  ranks = rankResults(run.stdout);
}, 60_000);

type Step = { iteration: number; didStep: boolean; lr: number; refLr: number; gradsClose: boolean };

describe('[B35] AdamW + LambdaLR(epoch^0.65), 80 samples, bs 16, GA = 2, on 2 processes', () => {
  it('the launch succeeds and both ranks report', () => {
    expect(run.code, run.stderr).toBe(0);
    expect(ranks.map((r) => r.rank)).toEqual([0, 1]);
  });

  // lr after `updates` optimizer updates, each stepping the scheduler `perUpdate` times
  const lrAfter = (updates: number, perUpdate: number) => 1e-3 * (updates * perUpdate) ** 0.65;
  const cases = [
    { name: 'plain', length: 3, steps: [false, true, true], perUpdate: P },
    { name: 'split', length: 5, steps: [false, true, false, true, true], perUpdate: 1 },
    { name: 'syncEachBatch', length: 3, steps: [false, true, true], perUpdate: P },
  ] as const;

  for (const c of cases) {
    it(`[B35] ${c.name}: the prepared scheduler's learning rate equals the reference's (stepped ${c.perUpdate === 1 ? 'once' : 'P times'} per update) at every iteration`, () => {
      for (const r of ranks) {
        const log = r[c.name].log as Step[];
        expect(r[c.name].length).toBe(c.length);
        expect(log.map((e) => e.didStep)).toEqual(c.steps);
        let updates = 0;
        for (const e of log) {
          if (e.didStep) updates++;
          expect(e.lr).toBe(e.refLr);
          expect(e.lr).toBeCloseTo(lrAfter(updates, c.perUpdate), 12);
          // gradients match the gathered-batch reference exactly when they were synchronised
          expect(e.gradsClose).toBe(e.didStep || c.name === 'syncEachBatch');
        }
      }
      expect(ranks[0][c.name].log.map((e: Step) => e.lr)).toEqual(ranks[1][c.name].log.map((e: Step) => e.lr));
    });
  }
});
