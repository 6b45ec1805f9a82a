// Prepared data loaders on 2 real processes: `accelerate launch` + gloo (libtorch backend).
import { beforeAll, describe, expect, it } from 'vitest';
import { fixture, rankResults, range, runAccelerate, type RunResult } from './helpers.js';

const P = 2;
let run: RunResult;
let ranks: any[];

beforeAll(async () => {
  run = await runAccelerate(['launch', '--num_processes', String(P), '--num_machines', '1', '--mixed_precision', 'no', fixture('data-checks.ts')], {
    timeoutMs: 55_000,
  });
  ranks = rankResults(run.stdout);
}, 60_000);

describe('prepared loaders across 2 launched processes', () => {
  it('the launch succeeds and every rank reports', () => {
    expect(run.stderr).not.toMatch(/failed|exited with code|was ended by/);
    expect(run.code).toBe(0);
    expect(ranks.map((r) => [r.rank, r.P])).toEqual([
      [0, P],
      [1, P],
    ]);
  });

  it('[B12] TensorDataset(range(3)) bs 1 and range(7) bs 2: per-rank batch sizes, even and uneven', () => {
    expect(ranks.map((r) => r.B12)).toEqual([
      { t3even: [1, 1], t3uneven: [1, 1], t7even: [2, 2], t7uneven: [2, 2] },
      { t3even: [1, 1], t3uneven: [1], t7even: [2, 2], t7uneven: [2, 1] },
    ]);
  });

  it('[B14] range(32P), bs 8, plain/split/dispatch/split+dispatch: the step-by-step gather is arange(32P); shuffled shards are disjoint', () => {
    for (const key of ['nosplit_nodispatch', 'split_nodispatch', 'nosplit_dispatch', 'split_dispatch']) {
      const [r0, r1] = ranks.map((r) => r.B14[key]);
      expect(r0.kind).toBe(key.endsWith('_dispatch') ? 'DataLoaderDispatcher' : 'DataLoaderShard');
      expect(r0.gathered).toEqual(range(32 * P));
      expect(r1.gathered).toEqual(range(32 * P));
      // Shuffled: both ranks gather the same permutation, made of their disjoint shards.
      expect(r0.shuffledGathered).toEqual(r1.shuffledGathered);
      expect([...r0.shuffledGathered].sort((a: number, b: number) => a - b)).toEqual(range(32 * P));
      expect(r0.shuffledGathered).not.toEqual(range(32 * P));
      expect([...r0.mine, ...r1.mine].sort((a: number, b: number) => a - b)).toEqual(range(32 * P));
    }
  });

  it('[B15] 22 items, bs 4 (shuffle off/on, batch sampler, sampler with batchSize null): gatherForMetrics yields exactly the 22 ids, also for a tuple or dict of tensors', () => {
    for (const r of ranks) {
      for (const name of ['plain', 'shuffle', 'batchSampler', 'samplerNoBatchSize']) {
        const ids = r.B15[name] as number[];
        expect(ids).toHaveLength(22);
        expect(new Set(ids).size).toBe(22);
      }
      expect(r.B15.plain).toEqual(range(22));
      // A tuple or dict of tensors: every tensor trimmed, not the tuple.
      expect([...(r.B15.tupleFirst as number[])].sort((a, b) => a - b)).toEqual(range(22));
      expect([...(r.B15.tupleSecond as number[])].sort((a, b) => a - b)).toEqual(range(22).map((i) => 100 + i));
      expect(r.B15.dictP).toEqual(r.B15.tupleFirst);
      expect(r.B15.dictR).toEqual(r.B15.tupleSecond);
    }
  });

  it('[B16] dispatch n = 10, bs 4 -> p0 [[0..3],[8]], p1 [[4..7],[9]], len 2, remainder 2; n = 11 -> last [8,9] / [10,0], remainder 3, trimmed gather [8,9,10]', () => {
    expect(ranks.map((r) => r.B16.ten.batches)).toEqual([
      [[0, 1, 2, 3], [8]],
      [[4, 5, 6, 7], [9]],
    ]);
    for (const r of ranks) {
      expect(r.B16.ten).toMatchObject({ length: 2, remainder: 2, ends: [false, true], metrics: [range(8), [8, 9]] });
      expect(r.B16.eleven).toMatchObject({ remainder: 3, lastMetrics: [8, 9, 10], metrics: range(11) });
    }
    expect(ranks.map((r) => r.B16.eleven.last)).toEqual([
      [8, 9],
      [10, 0],
    ]);
  });

  it('[B17] regression sets 82/99/512 (every split/dispatch combination), an iterable of 30, and drop_last: exact sample counts', () => {
    for (const r of ranks) {
      for (const n of [82, 99, 512]) {
        for (const split of [false, true]) {
          for (const dispatch of [false, true]) expect(r.B17.totals[`${n}_${split}_${dispatch}`]).toEqual(range(n));
        }
      }
      expect(r.B17.iterable.kind).toBe('DataLoaderDispatcher');
      expect(r.B17.iterable.metrics).toEqual(range(30));
      expect(r.B17.dropLast).toEqual({ false: 5 * P, true: 5 * P });
    }
  });

  it('[B23] IterableDatasetShard over 0..9, bs 4: plain, split, drop_last and 3 items', () => {
    expect(ranks.map((r) => r.B23)).toEqual([
      { plain: [0, 1, 2, 3, 8, 9, 0, 1], split: [0, 1, 4, 5, 8, 9], dropLast: [0, 1, 2, 3], three: [0, 1, 2, 0] },
      { plain: [4, 5, 6, 7, 2, 3, 4, 5], split: [2, 3, 6, 7, 0, 1], dropLast: [4, 5, 6, 7], three: [1, 2, 0, 1] },
    ]);
  });

  it('[B24] setSeed(21) twice -> the same order on 2 processes, 42 -> another; seedable sampler epochs replay, data seed 43 changes them', () => {
    const [r0, r1] = ranks.map((r) => r.B24);
    expect(r1).toEqual(r0);
    expect(r0.b).toEqual(r0.a);
    expect([...r0.a].sort()).toEqual(range(6));
    expect(r0.c).not.toEqual(r0.a);
    expect(r0.e42again).toEqual(r0.e42);
    for (const e of r0.e42) expect([...e].sort()).toEqual(range(6));
    expect(new Set(r0.e42.map((e: number[]) => e.join())).size).toBeGreaterThan(1);
    r0.e43.forEach((e: number[], i: number) => expect(e).not.toEqual(r0.e42[i]));
  });
});
