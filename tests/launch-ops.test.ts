// Collectives, splitBetweenProcesses, process ordering and triggers on real processes:
// `accelerate launch` + gloo (libtorch backend), with 2 processes (in debug mode) and 4.
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { cleanEnv, fixture, rankResults, range, runAccelerate, type RunResult } from './helpers.js';

const runs: Record<number, { run: RunResult; ranks: any[] }> = {};

async function launchOps(P: number, debug: boolean) {
  const env = cleanEnv({ TEST_TMP: mkdtempSync(join(tmpdir(), 'accelerate-ops-')) });
  const args = ['launch', '--num_processes', String(P), '--num_machines', '1', '--mixed_precision', 'no', ...(debug ? ['--debug'] : []), fixture('ops-checks.ts')];
  const run = await runAccelerate(args, { env, timeoutMs: 55_000 });
  runs[P] = { run, ranks: rankResults(run.stdout) };
}

// One after the other (hooks run in order): the machine has 2 cores.
beforeAll(() => launchOps(2, true), 60_000);
beforeAll(() => launchOps(4, false), 60_000);

const ranksOf = (P: number) => {
  const { run, ranks } = runs[P];
  expect(run.code, run.stderr).toBe(0);
  expect(ranks.map((r) => r.rank)).toEqual(range(P));
  return ranks;
};

describe('collectives across launched processes (P = 2 in debug mode, P = 4)', () => {
  it('[B25] ["A","B","C"]: P = 2 -> ["A","B"], ["C"] (padded ["C","C"]); P = 4 -> ["A"],["B"],["C"],[] (padded last ["C"])', () => {
    expect(ranksOf(2).map((r) => [r.split.abc, r.split.abcPadded])).toEqual([
      [['A', 'B'], ['A', 'B']],
      [['C'], ['C', 'C']],
    ]);
    expect(ranksOf(4).map((r) => [r.split.abc, r.split.abcPadded])).toEqual([
      [['A'], ['A']],
      [['B'], ['B']],
      [['C'], ['C']],
      [[], ['C']],
    ]);
  });

  it('[B26] range(17) over 4 processes -> sizes 5,4,4,4, in order', () => {
    const ranks = ranksOf(4);
    expect(ranks.map((r) => r.split.seventeen)).toEqual([5, 4, 4, 4]);
    expect(ranks.flatMap((r) => r.split.seventeenItems)).toEqual(range(17));
  });

  it('[B27] dict of list, strings and tensor split over 2 and 4; a 2x4 tensor by rows; unequal lengths refused; padded parts regather to the input', () => {
    expect(ranksOf(2).map((r) => r.split.dict)).toEqual([
      { a: [1, 2, 3, 4], b: ['a', 'b', 'c', 'd'], c: [1, 2, 3, 4] },
      { a: [5, 6, 7, 8], b: ['e', 'f', 'g', 'h'], c: [5, 6, 7, 8] },
    ]);
    expect(ranksOf(4)[3].split.dict).toEqual({ a: [7, 8], b: ['g', 'h'], c: [7, 8] });
    expect(ranksOf(2).map((r) => r.split.tensor2x4)).toEqual([
      { shape: [1, 4], values: [0, 1, 2, 3] },
      { shape: [1, 4], values: [4, 5, 6, 7] },
    ]);
    for (const P of [2, 4]) {
      for (const r of ranksOf(P)) {
        expect(r.split.unequal).toMatch(/same length, got 'a': 3, 'b': 2/);
        expect(r.split.regathered).toEqual(range(2 * P - 1));
      }
    }
  });

  it('[B28] gather -> [1..P²], gatherObject([p]) -> [0..P-1], broadcast -> [1..P]; P = 2 reduce of [1,2],[3,4]: sum [4,6], mean [2,3], max [3,4]', () => {
    for (const r of ranksOf(2)) {
      expect(r.collectives).toEqual({
        gather: [1, 2, 3, 4],
        gatherObject: [0, 1],
        broadcast: [1, 2],
        broadcastInPlace: [1, 2],
        sum: [4, 6],
        mean: [2, 3],
        max: [3, 4],
        nested: { x: [1, 2, 3, 4], y: [1, 2, 3, 4] },
      });
    }
    for (const r of ranksOf(4)) {
      expect(r.collectives.gather).toEqual(range(16).map((i) => i + 1));
      expect(r.collectives.gatherObject).toEqual([0, 1, 2, 3]);
      expect(r.collectives.broadcast).toEqual([1, 2, 3, 4]);
      // sum over q of (i + 1 + 4q) = 4(i + 1) + 24
      expect(r.collectives.sum).toEqual([28, 32, 36, 40]);
      expect(r.collectives.mean).toEqual([7, 8, 9, 10]);
      expect(r.collectives.max).toEqual([13, 14, 15, 16]);
    }
  });

  it('[B29] padAcrossProcesses: main arange(P+1), others arange(P) -> all length P+1, others end with 0; out-of-range dim -> same object', () => {
    for (const P of [2, 4]) {
      for (const r of ranksOf(P)) {
        expect(r.pad.padded).toEqual(r.rank === 0 ? range(P + 1) : [...range(P), 0]);
        expect(r.pad.padFirst).toEqual(r.rank === 0 ? range(P + 1) : [0, ...range(P)]);
        expect(r.pad.outOfRangeSame).toBe(true);
      }
    }
  });

  it('[B30] with --debug, different shapes per rank make padAcrossProcesses, reduce and broadcast raise DistributedOperationException on every rank', () => {
    for (const r of ranksOf(2)) {
      expect(r.debug).toBe('true');
      for (const op of ['pad', 'reduce', 'broadcast']) {
        expect(r.debugMode[op].name).toBe('DistributedOperationException');
        expect(r.debugMode[op].message).toMatch(/Process 0: \[1(,5)?\]\n {2}- Process 1: \[(1,1,6|2)\]/);
      }
      expect(r.debugMode.sameShapesStillWork).toEqual([2, 2]);
    }
    expect(ranksOf(4)[0].debug).toBeNull();
  });

  it('[B56] mainProcessFirst: the file starts with the main line and has P-1 other lines after it; on*Process run on their rank only', () => {
    for (const P of [2, 4]) {
      const ranks = ranksOf(P);
      const lines = ranks[0].mainProcessFirst as string[];
      for (const r of ranks) expect(r.mainProcessFirst).toEqual(lines);
      expect(lines[0]).toBe('main');
      expect(lines).toHaveLength(P);
      expect(lines.at(-1)).not.toBe('main');
      expect([...lines.slice(1)].sort()).toEqual(range(P - 1).map((i) => `rank ${i + 1}`));
      expect(ranks.map((r) => r.wrappers)).toEqual(
        range(P).map((p) => ({
          onMain: p === 0 ? 'main' : null,
          onLast: p === P - 1 ? 'last' : null,
          onProcess1: p === 1 ? 'one' : null,
          onLocalMain: p === 0 ? 'local main' : null,
        })),
      );
    }
  });

  it('[B57] checkTrigger: false, true on every rank after the main process sets it, then false; after a reset the old Accelerator explains itself', () => {
    for (const P of [2, 4]) {
      for (const r of ranksOf(P)) {
        expect(r.triggers).toMatchObject({ before: false, seen: true, after: false });
        expect(r.triggers.stale.isStale).toBe(true);
        expect(r.triggers.stale.message).toContain('`AcceleratorState` object has no attribute');
        expect(r.triggers.stale.message).toContain('This happens if `AcceleratorState._reset_state()`');
      }
    }
  });
});
