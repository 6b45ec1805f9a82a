import { describe, expect, it } from 'vitest';
import { BatchSampler, type BatchSamplerLike } from '../../src/data/sampler.js';
import { BatchSamplerShard, type BatchSamplerShardOptions } from '../../src/data/shard.js';
import { gatherForMetrics, range } from './helpers.js';

function shards(bs: BatchSamplerLike, P: number, opts: Omit<BatchSamplerShardOptions, 'numProcesses' | 'processIndex'> = {}) {
  return range(P).map((p) => new BatchSamplerShard(bs, { ...opts, numProcesses: P, processIndex: p }));
}
const lists = (ss: BatchSamplerShard[]) => ss.map((s) => [...s]);
const lengths = (ss: BatchSamplerShard[]) => ss.map((s) => s.length);

describe('BatchSamplerShard (P = 2 unless stated)', () => {
  it('[B1] round multiple: range(24), bs 3, drop_last false and true', () => {
    for (const dropLast of [false, true]) {
      const ss = shards(new BatchSampler(24, 3, dropLast), 2);
      expect(lists(ss)).toEqual([
        [[0, 1, 2], [6, 7, 8], [12, 13, 14], [18, 19, 20]],
        [[3, 4, 5], [9, 10, 11], [15, 16, 17], [21, 22, 23]],
      ]);
      expect(lengths(ss)).toEqual([4, 4]);
    }
  });

  it('[B1] drop_last with range(20|21|22), bs 3 drops the incomplete round', () => {
    for (const n of [20, 21, 22]) {
      const ss = shards(new BatchSampler(n, 3, true), 2);
      expect(lists(ss)).toEqual([
        [[0, 1, 2], [6, 7, 8], [12, 13, 14]],
        [[3, 4, 5], [9, 10, 11], [15, 16, 17]],
      ]);
      expect(lengths(ss)).toEqual([3, 3]);
    }
  });

  it('[B2] wrap-around to even out, bs 3', () => {
    expect(lists(shards(new BatchSampler(21, 3), 2))).toEqual([
      [[0, 1, 2], [6, 7, 8], [12, 13, 14], [18, 19, 20]],
      [[3, 4, 5], [9, 10, 11], [15, 16, 17], [0, 1, 2]],
    ]);
    expect(lists(shards(new BatchSampler(22, 3), 2))).toEqual([
      [[0, 1, 2], [6, 7, 8], [12, 13, 14], [18, 19, 20]],
      [[3, 4, 5], [9, 10, 11], [15, 16, 17], [21, 0, 1]],
    ]);
    expect(lists(shards(new BatchSampler(20, 3), 2))).toEqual([
      [[0, 1, 2], [6, 7, 8], [12, 13, 14], [18, 19, 0]],
      [[3, 4, 5], [9, 10, 11], [15, 16, 17], [1, 2, 3]],
    ]);
    const tiny = shards(new BatchSampler(2, 3), 2);
    expect(lists(tiny)).toEqual([[[0, 1, 0]], [[1, 0, 1]]]);
    expect(lengths(tiny)).toEqual([1, 1]);
    const tinyDrop = shards(new BatchSampler(2, 3, true), 2);
    expect(lists(tinyDrop)).toEqual([[], []]);
    expect(lengths(tinyDrop)).toEqual([0, 0]);
  });

  it('[B2] even lengths are floor + 1 on every rank when rounds do not divide', () => {
    expect(lengths(shards(new BatchSampler(21, 3), 2))).toEqual([4, 4]);
    expect(lengths(shards(new BatchSampler(22, 3), 2))).toEqual([4, 4]);
  });

  it('[B3] uneven allowed (evenBatches false), bs 3', () => {
    let ss = shards(new BatchSampler(21, 3), 2, { evenBatches: false });
    expect(lists(ss)).toEqual([
      [[0, 1, 2], [6, 7, 8], [12, 13, 14], [18, 19, 20]],
      [[3, 4, 5], [9, 10, 11], [15, 16, 17]],
    ]);
    expect(lengths(ss)).toEqual([4, 3]);
    ss = shards(new BatchSampler(22, 3), 2, { evenBatches: false });
    expect(lists(ss)[1]).toEqual([[3, 4, 5], [9, 10, 11], [15, 16, 17], [21]]);
    expect(lengths(ss)).toEqual([4, 4]);
    ss = shards(new BatchSampler(20, 3), 2, { evenBatches: false });
    expect(lists(ss)).toEqual([
      [[0, 1, 2], [6, 7, 8], [12, 13, 14], [18, 19]],
      [[3, 4, 5], [9, 10, 11], [15, 16, 17]],
    ]);
    expect(lengths(ss)).toEqual([4, 3]);
    ss = shards(new BatchSampler(2, 3), 2, { evenBatches: false });
    expect(lists(ss)).toEqual([[[0, 1]], []]);
    expect(lengths(ss)).toEqual([1, 0]);
  });

  it('[B4] split_batches, bs 4', () => {
    let ss = shards(new BatchSampler(24, 4), 2, { splitBatches: true });
    expect(lists(ss)).toEqual([
      [[0, 1], [4, 5], [8, 9], [12, 13], [16, 17], [20, 21]],
      [[2, 3], [6, 7], [10, 11], [14, 15], [18, 19], [22, 23]],
    ]);
    expect(lengths(ss)).toEqual([6, 6]);
    ss = shards(new BatchSampler(22, 4), 2, { splitBatches: true });
    expect(lists(ss)).toEqual([
      [[0, 1], [4, 5], [8, 9], [12, 13], [16, 17], [20, 21]],
      [[2, 3], [6, 7], [10, 11], [14, 15], [18, 19], [0, 1]],
    ]);
    ss = shards(new BatchSampler(21, 4), 2, { splitBatches: true });
    expect(lists(ss)).toEqual([
      [[0, 1], [4, 5], [8, 9], [12, 13], [16, 17], [20, 0]],
      [[2, 3], [6, 7], [10, 11], [14, 15], [18, 19], [1, 2]],
    ]);
    expect(lists(shards(new BatchSampler(2, 4), 2, { splitBatches: true }))).toEqual([[[0, 1]], [[0, 1]]]);
    for (const n of [21, 22]) {
      ss = shards(new BatchSampler(n, 4, true), 2, { splitBatches: true });
      expect(lists(ss)).toEqual([
        [[0, 1], [4, 5], [8, 9], [12, 13], [16, 17]],
        [[2, 3], [6, 7], [10, 11], [14, 15], [18, 19]],
      ]);
      expect(lengths(ss)).toEqual([5, 5]);
    }
  });

  it('[B5] split + uneven', () => {
    let ss = shards(new BatchSampler(21, 4), 2, { splitBatches: true, evenBatches: false });
    expect(lists(ss)).toEqual([
      [[0, 1], [4, 5], [8, 9], [12, 13], [16, 17], [20]],
      [[2, 3], [6, 7], [10, 11], [14, 15], [18, 19]],
    ]);
    ss = shards(new BatchSampler(2, 4), 2, { splitBatches: true, evenBatches: false });
    expect(lists(ss)).toEqual([[[0, 1]], []]);
  });

  it('[B6] variable-size batches: uneven, even, drop_last, single batch', () => {
    const batches = [[0, 1, 2], [3, 4], [5, 6, 7, 8], [9, 10, 11], [12, 13]];
    let ss = shards(batches, 2, { evenBatches: false });
    expect(lists(ss)).toEqual([
      [[0, 1, 2], [5, 6, 7, 8], [12, 13]],
      [[3, 4], [9, 10, 11]],
    ]);
    expect(lengths(ss)).toEqual([3, 2]);
    ss = shards(batches, 2);
    expect(lists(ss)).toEqual([
      [[0, 1, 2], [5, 6, 7, 8], [12, 13]],
      [[3, 4], [9, 10, 11], [0, 1, 2]],
    ]);
    expect(lengths(ss)).toEqual([3, 3]);
    const dropping = { dropLast: true, length: batches.length, [Symbol.iterator]: () => batches[Symbol.iterator]() };
    expect(lists(shards(dropping, 2))).toEqual([
      [[0, 1, 2], [5, 6, 7, 8]],
      [[3, 4], [9, 10, 11]],
    ]);
    for (const P of [2, 3]) expect(lists(shards([[0, 1, 2]], P))).toEqual(range(P).map(() => [[0, 1, 2]]));
  });

  it('[B7] variable sizes, P = 3, padded with whole early batches', () => {
    const ss = shards([[0], [1, 2], [3, 4, 5], [6], [7, 8], [9, 10, 11], [12, 13]], 3);
    expect(lists(ss)).toEqual([
      [[0], [6], [12, 13]],
      [[1, 2], [7, 8], [0]],
      [[3, 4, 5], [9, 10, 11], [1, 2]],
    ]);
  });

  it('[B8] validation: split with bs 3 on P = 2 mentions "round multiple"; split over a plain list mentions split_batches', () => {
    expect(() => new BatchSamplerShard(new BatchSampler(20, 3), { numProcesses: 2, splitBatches: true })).toThrow(/round multiple/);
    expect(() => new BatchSamplerShard([[0, 1, 2, 3], [4, 5, 6, 7]], { numProcesses: 2, splitBatches: true })).toThrow(/split_batches/);
    expect(() => new BatchSamplerShard(new BatchSampler(20, 4), { numProcesses: 2, processIndex: 2 })).toThrow(/processIndex/);
  });

  it('[B9] n = 10, bs 8, P = 2: even, uneven, and the trimmed gather (concatenated shards cut at remainder)', () => {
    const even = lists(shards(new BatchSampler(10, 8), 2));
    expect(even).toEqual([[range(8)], [[8, 9, 0, 1, 2, 3, 4, 5]]]);
    expect(lists(shards(new BatchSampler(10, 8), 2, { evenBatches: false }))[1]).toEqual([[8, 9]]);
    const remainder = 10 % (8 * 2);
    expect(remainder).toBe(10);
    expect(gatherForMetrics(even, remainder)).toEqual(range(10));
  });

  it('[B10] n = 10, bs 4, P = 2: even, uneven, split; remainder 2 and last-step gather [8, 9]', () => {
    const even = lists(shards(new BatchSampler(10, 4), 2));
    expect(even).toEqual([
      [[0, 1, 2, 3], [8, 9, 0, 1]],
      [[4, 5, 6, 7], [2, 3, 4, 5]],
    ]);
    expect(gatherForMetrics(even, 10 % 8)).toEqual(range(10));
    expect(gatherForMetrics(even.map((r) => r.slice(1)), 10 % 8)).toEqual([8, 9]);
    expect(lists(shards(new BatchSampler(10, 4), 2, { evenBatches: false }))).toEqual([[[0, 1, 2, 3], [8, 9]], [[4, 5, 6, 7]]]);
    expect(lists(shards(new BatchSampler(10, 4), 2, { splitBatches: true }))).toEqual([
      [[0, 1], [4, 5], [8, 9]],
      [[2, 3], [6, 7], [0, 1]],
    ]);
  });

  it('[B11] n = 5, bs 2, P = 3: wrap-around and gathered-and-trimmed [0..4]', () => {
    const ss = lists(shards(new BatchSampler(5, 2), 3));
    expect(ss).toEqual([[[0, 1]], [[2, 3]], [[4, 0]]]);
    const remainder = 5 % 6;
    expect(remainder).toBe(5);
    expect(gatherForMetrics(ss, remainder)).toEqual([0, 1, 2, 3, 4]);
  });

  it('every even shard has the same number of full batches and covers every index (property over n, bs, P)', () => {
    for (let P = 1; P <= 4; P++) {
      for (let bs = 1; bs <= 5; bs++) {
        for (let n = 1; n <= 23; n++) {
          const ss = shards(new BatchSampler(n, bs), P);
          const ls = lists(ss);
          const steps = ls[0].length;
          ls.forEach((r, p) => {
            expect(r.length).toBe(steps);
            expect(ss[p].length).toBe(steps);
            r.forEach((b) => expect(b.length).toBe(bs));
          });
          expect(gatherForMetrics(ls, n % (bs * P))).toEqual(range(n));
        }
      }
    }
  });
});
