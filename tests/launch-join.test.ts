// Accelerator.joinUnevenInputs across 2 and 3 launched processes (real gloo, libtorch DDP):
// tests/fixtures/join-checks.ts prints what each rank saw.
import { beforeAll, describe, expect, it } from 'vitest';
import { fixture, rankResults, range, runAccelerate, type RunResult } from './helpers.js';

const runs: Record<number, { run: RunResult; ranks: any[] }> = {};

async function launch(P: number) {
  const run = await runAccelerate(['launch', '--num_processes', String(P), '--num_machines', '1', '--mixed_precision', 'no', fixture('join-checks.ts')], {
    timeoutMs: 55_000,
  });
  runs[P] = { run, ranks: rankResults(run.stdout) };
}

// One after the other: the machine has 2 cores.
beforeAll(() => launch(2), 60_000);
beforeAll(() => launch(3), 60_000);

const ranksOf = (P: number) => {
  const { run, ranks } = runs[P];
  expect(run.code, run.stderr).toBe(0);
  expect(ranks.map((r) => r.rank)).toEqual(range(P));
  return ranks;
};

describe('joinUnevenInputs with real gloo ranks', () => {
  it('[B13] uneven range(3), bs 1, inside the join: p0 runs batches [0,1], p1 [0]; the rank that ran out shadows one backward; nothing hangs', () => {
    expect(ranksOf(2).map((r) => r.B13)).toEqual([
      { batchIdxs: [0, 1], shadowed: 0 },
      { batchIdxs: [0], shadowed: 1 },
    ]);
    expect(ranksOf(3).map((r) => r.B13.batchIdxs)).toEqual([[0], [0], [0]]);
  });

  it('[B13] evenBatches: false flips every map-style loader inside the join and restores true after; an iterable loader warns "only supported for map-style datasets"', () => {
    for (const P of [2, 3]) {
      for (const r of ranksOf(P)) {
        expect(r.override).toMatchObject({
          before: [true, true],
          inside: [false, false],
          after: [true, true],
          warningsWithoutIterable: 0,
          insideWithIterable: false,
          afterWithIterable: true,
        });
        expect(r.override.iterableWarning).toMatch(/only supported for map-style datasets/);
      }
    }
  });

  it('[B13] without join support (a data-parallel engine without joinUnevenInputs) it warns and still runs the function', () => {
    for (const r of ranksOf(2)) {
      expect(r.ranWithoutJoin).toBe('ran');
      expect(r.nonDdpWarning).toMatch(/cannot join uneven inputs \(dataParallel\.joinUnevenInputs\): joinUnevenInputs will have no effect/);
    }
  });

  for (const P of [2, 3]) {
    it(`${P} processes, 13 samples in 7 batches of 2, evenBatches false, 2 epochs of SGD: every rank ends with the reference weights (divided by the initial world size, or by the active ranks)`, () => {
      const ranks = ranksOf(P);
      // batch b goes to rank b % P; the last batch holds one sample
      const perEpoch = range(P).map((r) => range(7).filter((b) => b % P === r).map((b) => (b === 6 ? 1 : 2)));
      const stepsOf = (r: number) => perEpoch[r]!.length;
      const maxSteps = Math.max(...range(P).map(stepsOf));
      for (const mode of ['initial', 'active'] as const) {
        for (const r of ranks) {
          expect(r[mode].seen).toEqual([...perEpoch[r.rank]!, ...perEpoch[r.rank]!]);
          // a rank with fewer batches matches the others' extra backward once per epoch
          expect(r[mode].shadowed).toBe(2 * (maxSteps - stepsOf(r.rank)));
          expect(r[mode].maxDiff).toBeLessThanOrEqual(1e-5);
          expect(r[mode].weights).toEqual(ranks[0][mode].weights);
        }
      }
      // the divisor matters: the two runs end apart
      const a = ranks[0].initial.weights as number[];
      const b = ranks[0].active.weights as number[];
      expect(Math.max(...a.map((v, i) => Math.abs(v - b[i]!)))).toBeGreaterThan(1e-3);
    });
  }
});
