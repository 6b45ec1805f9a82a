import { describe, expect, it } from 'vitest';
import { fromIterable } from '../../src/data/dataset.js';
import { IterableDatasetShard, type IterableDatasetShardOptions } from '../../src/data/shard.js';
import { collect, range } from './helpers.js';

function stream(n: number, withLength = true) {
  return fromIterable(() => range(n), withLength ? { length: n } : {});
}

async function shardLists(n: number, P: number, opts: Omit<IterableDatasetShardOptions, 'numProcesses' | 'processIndex'>) {
  return Promise.all(range(P).map((p) => collect(new IterableDatasetShard(stream(n), { ...opts, numProcesses: P, processIndex: p }))));
}

describe('IterableDatasetShard', () => {
  it('[B23] over 0..9, bs 4, P 2: plain, split, drop_last, and 3 items', async () => {
    expect(await shardLists(10, 2, { batchSize: 4 })).toEqual([
      [0, 1, 2, 3, 8, 9, 0, 1],
      [4, 5, 6, 7, 2, 3, 4, 5],
    ]);
    expect(await shardLists(10, 2, { batchSize: 4, splitBatches: true })).toEqual([
      [0, 1, 4, 5, 8, 9],
      [2, 3, 6, 7, 0, 1],
    ]);
    expect(await shardLists(10, 2, { batchSize: 4, dropLast: true })).toEqual([
      [0, 1, 2, 3],
      [4, 5, 6, 7],
    ]);
    expect(await shardLists(3, 2, { batchSize: 4 })).toEqual([
      [0, 1, 2, 0],
      [1, 2, 0, 1],
    ]);
  });

  it('[B23] property: equal-length shards, a multiple of the shard batch size, interleaving reproduces the cycled source', async () => {
    for (const P of [1, 2, 3]) {
      for (const bs of [1, 2, 3, 4]) {
        for (const split of [false, true]) {
          if (split && bs % P !== 0) continue;
          for (const n of [1, 2, 5, 7, 10, 13, 24]) {
            const per = split ? bs / P : bs;
            const shards = await shardLists(n, P, { batchSize: bs, splitBatches: split });
            const len = shards[0].length;
            for (const s of shards) {
              expect(s.length).toBe(len);
              expect(s.length % per).toBe(0);
            }
            const interleaved: number[] = [];
            for (let k = 0; k < len / per; k++) for (const s of shards) interleaved.push(...s.slice(k * per, (k + 1) * per));
            // The source followed by its own beginning (cycled) as many times as needed.
            const cycled = range(interleaved.length).map((i) => (i < n ? i : [...range(n), ...range(n)][(i - n) % n]));
            expect(interleaved.slice(0, n)).toEqual(range(n));
            if (n >= (split ? bs : bs * P)) expect(interleaved).toEqual(cycled);
            const shard0 = new IterableDatasetShard(stream(n), { batchSize: bs, splitBatches: split, numProcesses: P });
            expect(shard0.length).toBe(len);
          }
        }
      }
    }
  });

  it('length follows the real global batch size (drop_last floors) and is undefined for a stream without length', () => {
    expect(new IterableDatasetShard(stream(10), { batchSize: 4, numProcesses: 2 }).length).toBe(8);
    expect(new IterableDatasetShard(stream(10), { batchSize: 4, numProcesses: 2, dropLast: true }).length).toBe(4);
    expect(new IterableDatasetShard(stream(10), { batchSize: 4, numProcesses: 2, splitBatches: true }).length).toBe(6);
    expect(new IterableDatasetShard(stream(10, false), { batchSize: 4, numProcesses: 2 }).length).toBeUndefined();
  });

  it('setEpoch is forwarded to the source; split with a batch size not divisible by P is refused', () => {
    const seen: number[] = [];
    const ds = { ...stream(4), setEpoch: (e: number) => seen.push(e) };
    new IterableDatasetShard(ds, { batchSize: 2, numProcesses: 2 }).setEpoch(3);
    expect(seen).toEqual([3]);
    expect(() => new IterableDatasetShard(stream(4), { batchSize: 3, numProcesses: 2, splitBatches: true })).toThrow(/round multiple/);
  });

  it('iterateFrom(skip) starts the source after skip samples (resume), and pads the last global batch from the stream start like an uninterrupted pass', async () => {
    const s = new IterableDatasetShard(stream(10), { batchSize: 2, numProcesses: 2, processIndex: 1 });
    // Uninterrupted: [0..3] [4..7] [8, 9, 0, 1] -> rank 1 gets 2,3 6,7 0,1.
    expect(await collect(s)).toEqual([2, 3, 6, 7, 0, 1]);
    expect(await collect({ [Symbol.asyncIterator]: () => s.iterateFrom(4) })).toEqual([6, 7, 0, 1]);
    // A source that skips natively (iterateFrom) is read again from its start for the padding.
    let reads = 0;
    const native = {
      length: 10,
      *[Symbol.iterator]() {
        reads++;
        for (let i = 0; i < 10; i++) yield i;
      },
      *iterateFrom(skip: number) {
        for (let i = skip; i < 10; i++) yield i;
      },
    };
    const n = new IterableDatasetShard(native, { batchSize: 2, numProcesses: 2, processIndex: 1 });
    expect(await collect({ [Symbol.asyncIterator]: () => n.iterateFrom(8) })).toEqual([0, 1]);
    expect(reads).toBe(1);
  });
});
