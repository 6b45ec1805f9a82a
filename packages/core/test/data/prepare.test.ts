import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { GradientState } from '../../src/state/gradient-state.js';
import { HostTensor } from '../../src/tensor/host-tensor.js';
import { DataLoader } from '../../src/data/dataloader.js';
import { TensorDataset, fromIterable, type AnyDataset } from '../../src/data/dataset.js';
import { batchSizeOf } from '../../src/data/collate.js';
import { DataLoaderDispatcher, DataLoaderShard, type PreparedDataLoader } from '../../src/data/loaders.js';
import { prepareDataLoader, type PrepareDataLoaderOptions } from '../../src/data/prepare.js';
import { seedDataGenerator, resetDefaultGenerator } from '../../src/data/random.js';
import { BatchSampler } from '../../src/data/sampler.js';
import { createInMemoryGroups } from '../../src/testing/in-memory-group.js';
import { gatherForMetrics, range } from './helpers.js';

beforeEach(() => {
  GradientState.reset();
  resetDefaultGenerator();
});
afterEach(() => GradientState.reset());

/** Sample ids of a batch: a 1-D tensor, `{ x }`, or `[tensor, ...]`. */
function ids(batch: unknown): number[] {
  if (batch instanceof HostTensor) return batch.toArray();
  if (Array.isArray(batch)) return ids(batch[0]);
  return ids((batch as { x: unknown }).x);
}

interface RankRun {
  batches: number[][];
  sizes: number[];
  ends: boolean[];
  /** `remainder` while the last batch was processed. */
  remainder: number;
  loader: PreparedDataLoader<unknown, unknown>;
}

/**
 * Build and iterate one prepared loader per simulated process, concurrently
 * (the dispatcher needs its peers; shards ignore each other). `make` builds
 * each process's fresh user loader.
 */
async function runRanks(
  P: number,
  make: () => DataLoader<any, any>,
  options: Omit<PrepareDataLoaderOptions<unknown>, 'numProcesses' | 'processIndex' | 'group'> = {},
): Promise<RankRun[]> {
  const groups = createInMemoryGroups(P);
  return Promise.all(
    groups.map(async (group, p) => {
      // Every simulated process starts from the same default-generator state, as seeded processes do.
      seedDataGenerator(1234);
      const loader = prepareDataLoader(make(), { ...options, numProcesses: P, processIndex: p, group }) as PreparedDataLoader<unknown, unknown>;
      const run: RankRun = { batches: [], sizes: [], ends: [], remainder: -2, loader };
      for await (const b of loader) {
        run.batches.push(ids(b));
        run.sizes.push(batchSizeOf(b)!);
        run.ends.push(loader.endOfDataloader);
        if (loader.endOfDataloader) run.remainder = loader.remainder;
      }
      return run;
    }),
  );
}

const gathered = (runs: RankRun[]) => gatherForMetrics(runs.map((r) => r.batches), runs[0].remainder);
const regression = (n: number) => range(n).map((i) => ({ x: i, y: 2 * i + 3 }));

describe('prepareDataLoader across simulated processes', () => {
  it('[B12] TensorDataset(range(3)) bs 1 and range(7) bs 2 on 2 processes: per-rank batch sizes, even and uneven', async () => {
    const t3 = () => new TensorDataset(HostTensor.fromNumbers(range(3)));
    const t7 = () => new TensorDataset(HostTensor.fromNumbers(range(7)));
    const sizes = async (ds: () => AnyDataset<unknown>, bs: number, evenBatches: boolean) =>
      (await runRanks(2, () => new DataLoader(ds(), { batchSize: bs }), { evenBatches })).map((r) => r.sizes);
    expect(await sizes(t3, 1, true)).toEqual([[1, 1], [1, 1]]);
    expect(await sizes(t3, 1, false)).toEqual([[1, 1], [1]]);
    expect(await sizes(t7, 2, true)).toEqual([[2, 2], [2, 2]]);
    expect(await sizes(t7, 2, false)).toEqual([[2, 2], [2, 1]]);
  });

  it('[B14] range(32P), bs 8: plain, split, dispatch and split+dispatch reassemble arange(32P) step by step (P = 2, 4)', async () => {
    for (const P of [2, 4]) {
      for (const [splitBatches, dispatchBatches] of [
        [false, false],
        [true, false],
        [false, true],
        [true, true],
      ]) {
        const runs = await runRanks(P, () => new DataLoader(range(32 * P), { batchSize: 8 }), { splitBatches, dispatchBatches });
        expect(runs[0].loader).toBeInstanceOf(dispatchBatches ? DataLoaderDispatcher : DataLoaderShard);
        const perStep = runs[0].batches.map((_, s) => runs.flatMap((r) => r.batches[s]));
        expect(perStep.flat()).toEqual(range(32 * P));
        // With shuffling the shards are disjoint and cover everything.
        const shuffled = await runRanks(P, () => new DataLoader(range(32 * P), { batchSize: 8, shuffle: true }), { splitBatches, dispatchBatches });
        const all = shuffled.flatMap((r) => r.batches.flat());
        expect([...all].sort((a, b) => a - b)).toEqual(range(32 * P));
        expect(all).not.toEqual(range(32 * P));
      }
    }
  });

  it('[B15] 22 items, bs 4, 2 processes: shuffle off/on, a batch sampler, or one passed as sampler with batchSize null -> exactly the 22 ids after the trimmed gather', async () => {
    const makers: Array<() => DataLoader<any, any>> = [
      () => new DataLoader(range(22), { batchSize: 4 }),
      () => new DataLoader(range(22), { batchSize: 4, shuffle: true }),
      () => new DataLoader(range(22), { batchSampler: new BatchSampler(22, 4) }),
      () => new DataLoader(range(22), { batchSize: null, sampler: new BatchSampler(22, 4) }),
    ];
    for (const make of makers) {
      const runs = await runRanks(2, make);
      expect(runs[0].remainder).toBe(22 % 8);
      const g = gathered(runs);
      expect(g.length).toBe(22);
      expect(new Set(g).size).toBe(22);
    }
  });

  it('[B16] dispatch, n = 10, bs 4 -> p0 [[0..3],[8]], p1 [[4..7],[9]], length 2, remainder 2; n = 11 -> last [8,9] / [10,0], remainder 3, trimmed gather [8,9,10]', async () => {
    let runs = await runRanks(2, () => new DataLoader(range(10), { batchSize: 4 }), { dispatchBatches: true });
    expect(runs.map((r) => r.batches)).toEqual([
      [[0, 1, 2, 3], [8]],
      [[4, 5, 6, 7], [9]],
    ]);
    expect(runs.map((r) => r.loader.length)).toEqual([2, 2]);
    expect(runs.map((r) => r.remainder)).toEqual([2, 2]);
    expect(runs.map((r) => r.ends)).toEqual([
      [false, true],
      [false, true],
    ]);
    runs = await runRanks(2, () => new DataLoader(range(11), { batchSize: 4 }), { dispatchBatches: true });
    expect(runs.map((r) => r.batches.at(-1))).toEqual([
      [8, 9],
      [10, 0],
    ]);
    expect(runs.map((r) => r.remainder)).toEqual([3, 3]);
    expect(gatherForMetrics(runs.map((r) => r.batches.slice(-1)), 3)).toEqual([8, 9, 10]);
    expect(gathered(runs)).toEqual(range(11));
  });

  it('[B17] regression sets of 82, 99, 512, bs 16, every split/dispatch combination: the trimmed gather has exactly n samples (concatenated shards cut at remainder)', async () => {
    for (const n of [82, 99, 512]) {
      for (const splitBatches of [false, true]) {
        for (const dispatchBatches of [false, true]) {
          const runs = await runRanks(2, () => new DataLoader(regression(n), { batchSize: 16 }), { splitBatches, dispatchBatches });
          const g = gathered(runs);
          expect(g).toEqual(range(n));
        }
      }
    }
  });

  it('[B17] an iterable dataset of 30 ints, bs 4, with putOnDevice is dispatched, and the trimmed gather has 30 samples', async () => {
    const runs = await runRanks(2, () => new DataLoader(fromIterable(() => range(30)), { batchSize: 4 }), { putOnDevice: true });
    expect(runs[0].loader).toBeInstanceOf(DataLoaderDispatcher);
    expect(gathered(runs)).toEqual(range(30));
  });

  it('[B17] range(10P + 1), bs 5, drop_last: the 2nd gathered batch has 5P items (P = 2, 3)', async () => {
    for (const P of [2, 3]) {
      for (const dispatchBatches of [false, true]) {
        const runs = await runRanks(P, () => new DataLoader(range(10 * P + 1), { batchSize: 5, dropLast: true }), { dispatchBatches });
        expect(runs.map((r) => r.batches.length)).toEqual(range(P).map(() => 2));
        expect(runs.flatMap((r) => r.batches[1]).length).toBe(5 * P);
        expect(runs[0].remainder).toBe(dispatchBatches ? 5 * P : -1);
      }
    }
  });

  it('iterable datasets are sharded (IterableDatasetShard) without dispatch, with split and plain batches', async () => {
    const plain = await runRanks(2, () => new DataLoader(fromIterable(() => range(10), { length: 10 }), { batchSize: 4 }));
    expect(plain.map((r) => r.batches)).toEqual([
      [[0, 1, 2, 3], [8, 9, 0, 1]],
      [[4, 5, 6, 7], [2, 3, 4, 5]],
    ]);
    expect(plain[0].remainder).toBe(2);
    expect(gathered(plain)).toEqual(range(10));
    const split = await runRanks(2, () => new DataLoader(fromIterable(() => range(10), { length: 10 }), { batchSize: 4 }), { splitBatches: true });
    expect(split.map((r) => r.batches)).toEqual([
      [[0, 1], [4, 5], [8, 9]],
      [[2, 3], [6, 7], [0, 1]],
    ]);
  });

  it('dispatch over an iterable, split, with drop_last=false, P = 3: last short batch completed from the first rows', async () => {
    const runs = await runRanks(3, () => new DataLoader(fromIterable(() => range(14)), { batchSize: 6 }), { splitBatches: true, dispatchBatches: true });
    expect(runs.map((r) => r.batches)).toEqual([
      [[0, 1], [6, 7], [12]],
      [[2, 3], [8, 9], [13]],
      [[4, 5], [10, 11], [0]],
    ]);
    expect(runs[0].remainder).toBe(2);
    expect(gathered(runs)).toEqual(range(14));
  });

  it('[B8] validation: split_batches with bs 3 on 2 processes mentions "round multiple"; no batch size mentions split_batches; dispatch without a group is refused', () => {
    expect(() => prepareDataLoader(new DataLoader(range(10), { batchSize: 3 }), { numProcesses: 2, splitBatches: true })).toThrow(/round multiple/);
    expect(() =>
      prepareDataLoader(new DataLoader(range(10), { batchSampler: [[0, 1], [2, 3]] }), { numProcesses: 2, splitBatches: true }),
    ).toThrow(/split_batches/);
    expect(() => prepareDataLoader(new DataLoader(range(10), { batchSize: 2 }), { numProcesses: 2, dispatchBatches: true })).toThrow(/process group/);
    expect(() => prepareDataLoader(new DataLoader(range(10), { batchSize: 2 }), { numProcesses: 2, processIndex: 2 })).toThrow(/processIndex/);
  });

  it('[B60] a prepared iterable loader whose collate returns { tensor, non_tensor: "non_tensor_value" } passes the string through (dispatched, P = 1 and 2)', async () => {
    const collateFn = (xs: number[]) => ({ tensor: HostTensor.fromNumbers(xs), non_tensor: 'non_tensor_value' });
    for (const P of [1, 2]) {
      const groups = createInMemoryGroups(P);
      const out = await Promise.all(
        groups.map(async (group, p) => {
          const dl = prepareDataLoader(new DataLoader(fromIterable(() => range(10)), { batchSize: 4, collateFn }), {
            numProcesses: P,
            processIndex: p,
            group: P > 1 ? group : undefined,
            putOnDevice: true,
          });
          expect(dl).toBeInstanceOf(DataLoaderDispatcher);
          const seen: Array<{ tensor: number[]; non_tensor: string }> = [];
          for await (const b of dl) seen.push({ tensor: b.tensor.toArray(), non_tensor: b.non_tensor });
          return seen;
        }),
      );
      for (const rank of out) for (const b of rank) expect(b.non_tensor).toBe('non_tensor_value');
      expect(out[0].map((b) => b.tensor)).toEqual(P === 1 ? [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]] : [[0, 1, 2, 3], [8]]);
    }
  });

  it('deviceTransform sees every batch before it is handed out (shard and dispatcher)', async () => {
    for (const dispatchBatches of [false, true]) {
      const seen: number[][] = [];
      const dl = prepareDataLoader(new DataLoader(range(6), { batchSize: 2 }), {
        dispatchBatches,
        deviceTransform: (b: HostTensor) => {
          seen.push(b.toArray());
          return HostTensor.fromNumbers(b.toArray().map((v) => v * 10));
        },
      });
      const out: number[][] = [];
      for await (const b of dl) out.push(b.toArray());
      expect(seen).toEqual([[0, 1], [2, 3], [4, 5]]);
      expect(out).toEqual([[0, 10], [20, 30], [40, 50]]);
    }
  });

  it('a shuffled loader sharded without a seedable sampler keeps its shared generator in sync through the group', async () => {
    const groups = createInMemoryGroups(2);
    const loaders = groups.map((group, p) => {
      // Different default-generator histories per process: the group sync must still align them.
      resetDefaultGenerator();
      const dl = new DataLoader(range(16), { batchSize: 2, shuffle: true });
      const prepared = prepareDataLoader(dl, { numProcesses: 2, processIndex: p, group, rngTypes: ['generator'] }) as DataLoaderShard<number, HostTensor>;
      if (p === 1) prepared.synchronizedGenerator!.manualSeed(999);
      return prepared;
    });
    const runs = await Promise.all(
      loaders.map(async (dl) => {
        const out: number[] = [];
        for await (const b of dl) out.push(...b.toArray());
        return out;
      }),
    );
    const all = [...runs[0], ...runs[1]].sort((a, b) => a - b);
    expect(all).toEqual(range(16));
  });
});
