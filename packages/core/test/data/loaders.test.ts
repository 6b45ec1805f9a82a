import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { GradientState } from '../../src/state/gradient-state.js';
import type { HostTensor } from '../../src/tensor/host-tensor.js';
import { defaultCollate } from '../../src/data/collate.js';
import { DataLoader } from '../../src/data/dataloader.js';
import { fromIterable } from '../../src/data/dataset.js';
import { DataLoaderDispatcher, DataLoaderShard, SkipDataLoader, skipFirstBatches } from '../../src/data/loaders.js';
import { prepareDataLoader } from '../../src/data/prepare.js';
import { seedDataGenerator, resetDefaultGenerator } from '../../src/data/random.js';
import { BatchSampler, SeedableRandomSampler, SkipBatchSampler, type Sampler } from '../../src/data/sampler.js';
import { collect, gatherForMetrics, indexBatches, range, rows } from './helpers.js';

/** A custom batch sampler with set_epoch, like Accelerate's test `SimpleBatchSampler`. */
class EpochBatchSampler {
  epoch = 0;
  readonly batchSize = 4;
  readonly dropLast = false;
  constructor(readonly sampler: Sampler) {}
  get length() {
    return Math.ceil(this.sampler.length / this.batchSize);
  }
  setEpoch(e: number) {
    this.epoch = e;
  }
  *[Symbol.iterator]() {
    let b: number[] = [];
    for (const i of this.sampler) {
      b.push(i);
      if (b.length === this.batchSize) {
        yield b;
        b = [];
      }
    }
    if (b.length) yield b;
  }
}

beforeEach(() => {
  GradientState.reset();
  resetDefaultGenerator();
});
afterEach(() => GradientState.reset());

describe('prepared loader state', () => {
  it('[B18] DataLoaderShard(range(16), bs 4): endOfDataloader true only at index 3, on every epoch', async () => {
    const dl = new DataLoaderShard(range(16), { batchSize: 4 });
    for (let epoch = 0; epoch < 2; epoch++) {
      const flags: boolean[] = [];
      for await (const _ of dl) flags.push(dl.endOfDataloader);
      expect(flags).toEqual([false, false, false, true]);
    }
    expect(dl.iteration).toBe(2);
  });

  it('[B18] DataLoaderDispatcher(range(16), bs 4): endOfDataloader true only at index 3, on every epoch', async () => {
    const dl = new DataLoaderDispatcher(range(16), { batchSize: 4 });
    for (let epoch = 0; epoch < 2; epoch++) {
      const flags: boolean[] = [];
      const seen: number[][] = [];
      for await (const b of dl) {
        flags.push(dl.endOfDataloader);
        seen.push(rows(b));
      }
      expect(flags).toEqual([false, false, false, true]);
      expect(seen).toEqual([range(4), [4, 5, 6, 7], [8, 9, 10, 11], [12, 13, 14, 15]]);
    }
  });

  it('[B19] skipFirstBatches, SkipBatchSampler and SkipDataLoader all yield [[8..11],[12..15]]', async () => {
    expect(await indexBatches(skipFirstBatches(new DataLoader(range(16), { batchSize: 4 }), 2))).toEqual([
      [8, 9, 10, 11],
      [12, 13, 14, 15],
    ]);
    expect([...new SkipBatchSampler(new BatchSampler(16, 4), 2)]).toEqual([
      [8, 9, 10, 11],
      [12, 13, 14, 15],
    ]);
    expect(new SkipBatchSampler(new BatchSampler(16, 4), 2).length).toBe(2);
    const sdl = new SkipDataLoader(range(16), { batchSize: 4, skipBatches: 2 });
    expect(await indexBatches(sdl)).toEqual([
      [8, 9, 10, 11],
      [12, 13, 14, 15],
    ]);
    expect(sdl.length).toBe(2);
    // A stream skips by reading and discarding.
    const stream = fromIterable(() => range(16), { length: 16 });
    expect(await indexBatches(skipFirstBatches(new DataLoader(stream, { batchSize: 4 }), 2))).toEqual([
      [8, 9, 10, 11],
      [12, 13, 14, 15],
    ]);
    // Prepared loaders keep their kind and skip per-process batches.
    const shard = prepareDataLoader(new DataLoader(range(16), { batchSize: 2 }), { numProcesses: 2, processIndex: 1 });
    const skipped = skipFirstBatches(shard, 2);
    expect(skipped).toBeInstanceOf(DataLoaderShard);
    expect(await indexBatches(skipped)).toEqual([
      [10, 11],
      [14, 15],
    ]);
  });

  it('[B20] skipFirstBatches keeps iteration (shard and dispatcher); iterating leaves the seedable sampler at epoch 1', async () => {
    for (const Cls of [DataLoaderShard, DataLoaderDispatcher]) {
      const sampler = new SeedableRandomSampler(16, { seed: 42 });
      const bs = new EpochBatchSampler(sampler);
      const dl = new Cls(range(16), { batchSampler: bs });
      dl.setEpoch(1);
      expect(dl.iteration).toBe(1);
      expect(bs.epoch).toBe(1);
      const skipped = skipFirstBatches(dl, 2) as DataLoaderShard<number, HostTensor> | DataLoaderDispatcher<number, HostTensor>;
      expect(skipped).toBeInstanceOf(Cls);
      expect(skipped.iteration).toBe(1);
      const it = skipped[Symbol.asyncIterator]();
      const first = await it.next();
      expect(first.done).toBe(false);
      // The third batch of epoch 1's permutation.
      expect(rows(first.value)).toEqual(sampler.orderFor(1).slice(8, 12));
      expect(sampler.epoch).toBe(1);
      await it.return!();
    }
  });

  it('[B20] setEpoch on a prepared loader reaches a custom batch sampler (P = 1, and through the shard on P = 2)', () => {
    for (const P of [1, 2]) {
      const bs = new EpochBatchSampler(range(16));
      const dl = prepareDataLoader(new DataLoader(range(16), { batchSampler: bs }), { numProcesses: P });
      expect(bs.epoch).toBe(0);
      dl.setEpoch(1);
      expect(bs.epoch).toBe(1);
    }
  });

  it('[B21] nested loaders: activeDataloader and endOfDataloader follow the innermost loader', async () => {
    const gs = new GradientState();
    const outer = prepareDataLoader(new DataLoader(range(80), { batchSize: 16 }));
    const inner = prepareDataLoader(new DataLoader(range(96), { batchSize: 16 }));
    expect(gs.activeDataloader).toBeUndefined();
    expect(gs.endOfDataloader).toBe(false);
    expect(gs.remainder).toBe(-1);
    const outerEnds: boolean[] = [];
    const innerEnds: boolean[] = [];
    let i = 0;
    for await (const _ of outer) {
      expect(gs.activeDataloader).toBe(outer);
      outerEnds.push(gs.endOfDataloader);
      if (i === 1) {
        for await (const __ of inner) {
          expect(gs.activeDataloader).toBe(inner);
          innerEnds.push(gs.endOfDataloader);
        }
        expect(gs.activeDataloader).toBe(outer);
        expect(gs.endOfDataloader).toBe(false);
      }
      i++;
    }
    expect(outerEnds).toEqual([false, false, false, false, true]);
    expect(innerEnds).toEqual([false, false, false, false, false, true]);
    expect(gs.activeDataloader).toBeUndefined();
    expect(gs.inDataloader).toBe(false);
  });

  it('breaking out of for-await unregisters the loader (unlike Accelerate, which waits for GC)', async () => {
    const gs = new GradientState();
    const dl = prepareDataLoader(new DataLoader(range(16), { batchSize: 4 }));
    for await (const _ of dl) {
      expect(gs.activeDataloader).toBe(dl);
      break;
    }
    expect(gs.activeDataloader).toBeUndefined();
    expect(dl.iteration).toBe(0);
    // The next pass starts the epoch over.
    expect(await indexBatches(dl)).toEqual([range(4), [4, 5, 6, 7], [8, 9, 10, 11], [12, 13, 14, 15]]);
  });

  it('[B22] remainder = len % totalBatchSize (bs*P, or bs when split); -1 with drop_last or a length-less dataset', async () => {
    const gs = new GradientState();
    const seen = async (dl: AsyncIterable<unknown>) => {
      const r: number[] = [];
      for await (const _ of dl) r.push(gs.remainder);
      return r;
    };
    const plain = prepareDataLoader(new DataLoader(range(10), { batchSize: 4 }), { numProcesses: 2, processIndex: 0 });
    expect(plain.totalBatchSize).toBe(8);
    expect(await seen(plain)).toEqual([2, 2]);
    const split = prepareDataLoader(new DataLoader(range(10), { batchSize: 4 }), { numProcesses: 2, splitBatches: true });
    expect(split.totalBatchSize).toBe(4);
    expect(await seen(split)).toEqual([2, 2, 2]);
    const dropping = prepareDataLoader(new DataLoader(range(10), { batchSize: 4, dropLast: true }), { numProcesses: 2 });
    expect(await seen(dropping)).toEqual([-1]);
    const stream = prepareDataLoader(new DataLoader(fromIterable(() => range(10)), { batchSize: 4 }), { numProcesses: 2 });
    expect(await seen(stream)).toEqual([-1, -1]);
    const sized = prepareDataLoader(new DataLoader(fromIterable(() => range(10), { length: 10 }), { batchSize: 4 }), { numProcesses: 2 });
    expect(sized.totalBatchSize).toBe(8);
    expect(await seen(sized)).toEqual([2, 2]);
    const single = new DataLoaderShard(range(10), { batchSize: 4 });
    expect(await seen(single)).toEqual([2, 2, 2]);
  });

  it('[B24] shuffle reproducibility: same seedDataGenerator twice -> same order, another seed -> different (P = 1 and 2)', async () => {
    for (const P of [1, 2]) {
      // Each simulated process seeds its own default generator, then prepares its loader.
      const run = async (seed: number) => {
        const perRank: number[][][] = [];
        for (let p = 0; p < P; p++) {
          seedDataGenerator(seed);
          const dl = prepareDataLoader(new DataLoader(range(6), { batchSize: 1, shuffle: true }), { numProcesses: P, processIndex: p });
          perRank.push(await indexBatches(dl));
        }
        return gatherForMetrics(perRank, 0);
      };
      const a = await run(21);
      const b = await run(21);
      const c = await run(42);
      expect(b).toEqual(a);
      expect([...a].sort()).toEqual(range(6));
      expect(c).not.toEqual(a);
    }
  });

  it('[B24] seedable sampler: three epochs replay identically for one seed; data seed 43 gives other epochs', async () => {
    const epochs = async (dataSeed: number | undefined) => {
      seedDataGenerator(42);
      const dl = prepareDataLoader(new DataLoader(range(6), { batchSize: 1, shuffle: true }), { useSeedableSampler: true, dataSeed });
      dl.setEpoch(0);
      const out: number[][] = [];
      for (let e = 0; e < 3; e++) out.push((await indexBatches(dl)).flat());
      return out;
    };
    const a = await epochs(undefined);
    expect(await epochs(undefined)).toEqual(a);
    expect(await epochs(42)).toEqual(a); // default data seed = the default generator's initial seed (42)
    for (const e of a) expect([...e].sort()).toEqual(range(6));
    expect(new Set(a.map((e) => e.join())).size).toBeGreaterThan(1);
    const b = await epochs(43);
    expect(b).not.toEqual(a);
    b.forEach((e, i) => expect(e).not.toEqual(a[i]));
  });

  it('DataLoader basics: length, dropLast, collate of objects, batchSize null with a batch sampler as sampler', async () => {
    const dl = new DataLoader(
      range(5).map((i) => ({ x: i, name: `s${i}` })),
      { batchSize: 2 },
    );
    expect(dl.length).toBe(3);
    const batches = await collect(dl);
    expect(batches.map((b) => b.x.toArray())).toEqual([[0, 1], [2, 3], [4]]);
    expect(batches.map((b) => b.name)).toEqual([['s0', 's1'], ['s2', 's3'], ['s4']]);
    expect(batches[0].x.dtype).toBe('int64');
    expect(new DataLoader(range(5), { batchSize: 2, dropLast: true }).length).toBe(2);
    const viaSampler = new DataLoader(range(6), { batchSize: null, sampler: new BatchSampler(6, 4) });
    expect(await indexBatches(viaSampler)).toEqual([range(4), [4, 5]]);
    expect(() => new DataLoader(range(4), { batchSampler: [[0, 1]], batchSize: 2 })).toThrow(/batchSampler/);
    expect(() => new DataLoader(fromIterable(() => range(3)), { shuffle: true })).toThrow(/iterable dataset/);
    expect(() => new DataLoader(fromIterable(() => range(3))).length).toThrow(/no length/);
  });
});

describe('DataLoader per-batch cost', () => {
  it('a dataset that answers synchronously is batched without a Promise per sample; an async one still works', async () => {
    const data = Array.from({ length: 8 }, (_, i) => ({ x: Float32Array.from([i]), y: i }));
    const all = Promise.all.bind(Promise);
    let calls = 0;
    Promise.all = ((xs: Iterable<unknown>) => (calls++, all(xs))) as typeof Promise.all;
    try {
      const batches = await collect(new DataLoader(data, { batchSize: 4 }));
      expect(batches.map((b) => (b.y as HostTensor).toArray())).toEqual([
        [0, 1, 2, 3],
        [4, 5, 6, 7],
      ]);
      expect(calls).toBe(0);
      const asyncDs = { length: 4, get: async (i: number) => data[i] };
      const ab = await collect(new DataLoader(asyncDs, { batchSize: 4 }));
      expect((ab[0].x as HostTensor).toArray()).toEqual([0, 1, 2, 3]);
      expect(calls).toBe(1);
    } finally {
      Promise.all = all;
    }
  });
});

describe('prepared loader per-batch path', () => {
  /** The batches (as index lists), endOfDataloader flags and the error (if any) of one pass. */
  async function pass(dl: DataLoaderShard<{ i: number }, { i: HostTensor }>, stopAt = Infinity) {
    const seen: Array<[number[], boolean]> = [];
    let error: string | undefined;
    try {
      for await (const b of dl) {
        seen.push([b.i.toArray(), dl.endOfDataloader]);
        if (seen.length >= stopAt) break;
      }
    } catch (e) {
      error = (e as Error).message;
    }
    return { seen, error, active: new GradientState().activeDataloader, iteration: dl.iteration };
  }
  const data = Array.from({ length: 10 }, (_, i) => ({ i }));

  it('sync and async samples, collate and device transform give the same batches, flags and errors, at the same step', async () => {
    const failAt = (n: number) => (s: Array<{ i: number }>) => {
      if (s[0].i === n) throw new Error(`collate failed at ${n}`);
      return defaultCollate(s);
    };
    const variants = (collateFn: (s: Array<{ i: number }>) => { i: HostTensor }) => [
      new DataLoaderShard(data, { batchSize: 4, collateFn }),
      new DataLoaderShard({ length: 10, get: async (i: number) => data[i] }, { batchSize: 4, collateFn }),
      new DataLoaderShard(data, { batchSize: 4, collateFn: async (s) => collateFn(s) }),
      new DataLoaderShard(data, { batchSize: 4, collateFn, deviceTransform: async (b) => b }),
    ];
    for (const dl of variants((s) => defaultCollate(s))) {
      expect(await pass(dl)).toEqual({
        seen: [
          [[0, 1, 2, 3], false],
          [[4, 5, 6, 7], false],
          [[8, 9], true],
        ],
        error: undefined,
        active: undefined,
        iteration: 1,
      });
    }
    // The batch after the current one is read before the current one is handed out: its error comes first.
    for (const dl of variants(failAt(8))) {
      expect(await pass(dl)).toEqual({ seen: [[[0, 1, 2, 3], false]], error: 'collate failed at 8', active: undefined, iteration: 0 });
    }
  });

  it('break closes the batch sampler and unregisters; the next pass starts over', async () => {
    let closed = 0;
    const batchSampler = {
      batchSize: 2,
      length: 5,
      *[Symbol.iterator]() {
        try {
          for (let i = 0; i < 10; i += 2) yield [i, i + 1];
        } finally {
          closed++;
        }
      },
    };
    const dl = new DataLoaderShard<{ i: number }, { i: HostTensor }>(data, { batchSampler });
    expect(await pass(dl, 2)).toEqual({
      seen: [
        [[0, 1], false],
        [[2, 3], false],
      ],
      error: undefined,
      active: undefined,
      iteration: 0,
    });
    expect(closed).toBe(1);
    expect((await pass(dl)).seen.map(([b]) => b[0])).toEqual([0, 2, 4, 6, 8]);
    expect(closed).toBe(2);
  });
});
