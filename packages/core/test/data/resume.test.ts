import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { GradientState } from '../../src/state/gradient-state.js';
import { HostTensor } from '../../src/tensor/host-tensor.js';
import { DataLoader } from '../../src/data/dataloader.js';
import { fromIterable } from '../../src/data/dataset.js';
import { DataLoaderDispatcher, skipFirstBatches, type DataLoaderStateDict, type PreparedDataLoader } from '../../src/data/loaders.js';
import { prepareDataLoader, type PrepareDataLoaderOptions } from '../../src/data/prepare.js';
import { defaultGenerator, Generator, seedDataGenerator, resetDefaultGenerator } from '../../src/data/random.js';
import { SeedableRandomSampler } from '../../src/data/sampler.js';
import { createInMemoryGroups } from '../../src/testing/in-memory-group.js';
import { gatherForMetrics, range } from './helpers.js';

beforeEach(() => {
  GradientState.reset();
  resetDefaultGenerator();
});
afterEach(() => GradientState.reset());

const ids = (b: unknown) => (b as HostTensor).toArray();
const json = (s: DataLoaderStateDict): DataLoaderStateDict => JSON.parse(JSON.stringify(s));

/** The seedable order of `epoch` for a dataset of n with `seed`. */
const orderOf = (n: number, seed: number, epoch: number) => new SeedableRandomSampler(n, { seed }).orderFor(epoch);

/** Iterate `loader` for one pass; at step `stopAt` (0-based, while processing it) take stateDict and stop. */
async function runUntil(loader: PreparedDataLoader<unknown, unknown>, stopAt = Infinity) {
  const batches: number[][] = [];
  let state: DataLoaderStateDict | undefined;
  let i = 0;
  for await (const b of loader) {
    batches.push(ids(b));
    if (i === stopAt) {
      state = json(loader.stateDict());
      break;
    }
    i++;
  }
  return { batches, state, remainder: loader.remainder };
}

function shuffled(n: number, bs: number, opts: PrepareDataLoaderOptions<unknown> & { seed?: number }) {
  const { seed = 7, ...rest } = opts;
  return prepareDataLoader(new DataLoader(range(n), { batchSize: bs, shuffle: true }), { useSeedableSampler: true, dataSeed: seed, ...rest }) as PreparedDataLoader<
    unknown,
    unknown
  >;
}

describe('exact resume (stateDict / loadStateDict)', () => {
  it('single process: stop mid-epoch, restore into a new loader -> the rest of the epoch is identical, then the next epoch too', async () => {
    const ref = shuffled(22, 4, {});
    await runUntil(ref); // epoch 0
    const full = (await runUntil(ref)).batches; // epoch 1
    const next = (await runUntil(ref)).batches; // epoch 2

    const a = shuffled(22, 4, {});
    await runUntil(a);
    const { batches: head, state } = await runUntil(a, 2);
    expect(head).toEqual(full.slice(0, 3));
    expect(state).toEqual({
      version: 1,
      epoch: 1,
      samplesConsumed: 12,
      batchesConsumed: null,
      datasetLength: 22,
      seed: 7,
      samplerGeneratorState: null,
      totalBatchSize: 4,
      numProcesses: 1,
    });

    const b = shuffled(22, 4, { seed: 99 }); // the state's seed wins
    b.loadStateDict(state!);
    expect(b.stateDict()).toEqual(state);
    const rest = await runUntil(b);
    expect(rest.batches).toEqual(full.slice(3));
    expect(rest.remainder).toBe((22 - 12) % 4);
    expect(b.iteration).toBe(2);
    expect((await runUntil(b)).batches).toEqual(next);
  });

  it('2 processes -> 1 process: the remaining global order continues at the same sample', async () => {
    const n = 40;
    const order = orderOf(n, 7, 1);
    // Two simulated ranks, epoch 1, both stop while processing step 2 (3 global batches of 8 = 24 samples consumed).
    const ranks = [0, 1].map((p) => shuffled(n, 4, { numProcesses: 2, processIndex: p }));
    const states: DataLoaderStateDict[] = [];
    const perRank: number[][][] = [];
    for (const dl of ranks) {
      dl.setEpoch(1);
      const r = await runUntil(dl, 2);
      states.push(r.state!);
      perRank.push(r.batches);
    }
    expect(gatherForMetrics(perRank, 0)).toEqual(order.slice(0, 24));
    expect(states[1]).toEqual(states[0]);
    expect(states[0]).toMatchObject({ epoch: 1, samplesConsumed: 24, totalBatchSize: 8, numProcesses: 2 });

    const single = shuffled(n, 4, {});
    single.loadStateDict(states[0]);
    const rest = await runUntil(single);
    expect(rest.batches.flat()).toEqual(order.slice(24));
  });

  it('1 process -> 2 processes at a position that is not a multiple of the new global batch (12 of bs 4 x 2): handled at the sample level', async () => {
    const n = 30;
    const order = orderOf(n, 7, 0);
    const one = shuffled(n, 4, {});
    const { state } = await runUntil(one, 2);
    expect(state!.samplesConsumed).toBe(12);
    const perRank: number[][][] = [];
    let remainder = -2;
    for (const p of [0, 1]) {
      const dl = shuffled(n, 4, { numProcesses: 2, processIndex: p });
      dl.loadStateDict(state!);
      const r = await runUntil(dl);
      perRank.push(r.batches);
      remainder = r.remainder;
    }
    expect(remainder).toBe((30 - 12) % 8);
    expect(gatherForMetrics(perRank, remainder)).toEqual(order.slice(12));
  });

  it('split batches and the dispatcher resume into a plain shard (P = 2 -> P = 1)', async () => {
    const n = 36;
    const order = orderOf(n, 5, 0);
    for (const mode of ['split', 'dispatch'] as const) {
      const groups = createInMemoryGroups(2);
      const runs = await Promise.all(
        groups.map(async (group, p) => {
          const dl = shuffled(n, mode === 'split' ? 8 : 4, {
            seed: 5,
            numProcesses: 2,
            processIndex: p,
            splitBatches: mode === 'split',
            dispatchBatches: mode === 'dispatch',
            group,
          });
          if (mode === 'dispatch') expect(dl).toBeInstanceOf(DataLoaderDispatcher);
          return runUntil(dl, 1);
        }),
      );
      expect(gatherForMetrics(runs.map((r) => r.batches), 0)).toEqual(order.slice(0, 16));
      expect(runs[1].state).toEqual(runs[0].state);
      expect(runs[0].state!.samplesConsumed).toBe(16);
      const single = shuffled(n, 4, { seed: 123 });
      single.loadStateDict(runs[0].state!);
      expect((await runUntil(single)).batches.flat()).toEqual(order.slice(16));
    }
  });

  it('a dispatcher restores a state too (P = 1 shard -> P = 2 dispatcher)', async () => {
    const n = 26;
    const order = orderOf(n, 7, 0);
    const { state } = await runUntil(shuffled(n, 2, {}), 4); // 10 samples
    const groups = createInMemoryGroups(2);
    const runs = await Promise.all(
      groups.map(async (group, p) => {
        const dl = shuffled(n, 2, { numProcesses: 2, processIndex: p, dispatchBatches: true, group });
        dl.loadStateDict(state!);
        return runUntil(dl);
      }),
    );
    // 16 samples left in global batches of 4: the dispatcher's final remainder is the last global batch's size.
    expect(runs[0].remainder).toBe(4);
    expect(gatherForMetrics(runs.map((r) => r.batches), runs[0].remainder)).toEqual(order.slice(10));
  });

  it('a plain RandomSampler (no seed) replays its permutation from the saved generator state', async () => {
    seedDataGenerator(3);
    const mk = () => prepareDataLoader(new DataLoader(range(20), { batchSize: 3, shuffle: true, generator: new Generator(11) })) as PreparedDataLoader<unknown, unknown>;
    const ref = mk();
    await runUntil(ref);
    const epoch1 = (await runUntil(ref)).batches;
    const a = mk();
    await runUntil(a);
    const { state } = await runUntil(a, 1);
    expect(state!.samplerGeneratorState).not.toBeNull();
    expect(state!.seed).toBeNull();
    const b = mk(); // fresh generator at seed 11: without the state it would replay epoch 0
    b.loadStateDict(state!);
    expect((await runUntil(b)).batches).toEqual(epoch1.slice(2));
  });

  it('variable-size batches (custom batch sampler) resume by batches across world sizes', async () => {
    const batches = [[0, 1, 2], [3, 4], [5, 6, 7, 8], [9, 10, 11], [12, 13], [14], [15, 16, 17]];
    const mk = (P: number, p: number) =>
      prepareDataLoader(new DataLoader(range(18), { batchSampler: batches }), { numProcesses: P, processIndex: p }) as PreparedDataLoader<unknown, unknown>;
    const states = [];
    for (const p of [0, 1]) states.push((await runUntil(mk(2, p), 1)).state!);
    expect(states[0]).toMatchObject({ samplesConsumed: null, batchesConsumed: 4 });
    expect(states[1]).toEqual(states[0]);
    const single = mk(1, 0);
    single.loadStateDict(states[0]);
    expect((await runUntil(single)).batches).toEqual(batches.slice(4));
  });

  it('an iterable dataset sharded on 2 processes resumes on 1 by skipping the consumed samples of the stream', async () => {
    const src = () => fromIterable(() => range(21), { length: 21 });
    const states = [];
    for (const p of [0, 1]) {
      const dl = prepareDataLoader(new DataLoader(src(), { batchSize: 3 }), { numProcesses: 2, processIndex: p }) as PreparedDataLoader<unknown, unknown>;
      states.push((await runUntil(dl, 1)).state!);
    }
    expect(states[0]).toMatchObject({ samplesConsumed: 12, seed: null });
    const single = prepareDataLoader(new DataLoader(src(), { batchSize: 3 })) as PreparedDataLoader<unknown, unknown>;
    single.loadStateDict(states[0]);
    expect((await runUntil(single)).batches).toEqual([
      [12, 13, 14],
      [15, 16, 17],
      [18, 19, 20],
    ]);
  });

  it('at the last batch, and after a full pass, the state points at the start of the next epoch', async () => {
    const dl = shuffled(8, 4, {});
    const states: DataLoaderStateDict[] = [];
    for await (const _ of dl) states.push(dl.stateDict());
    expect(states.map((s) => [s.epoch, s.samplesConsumed])).toEqual([
      [0, 4],
      [1, 0],
    ]);
    expect(dl.stateDict()).toMatchObject({ epoch: 1, samplesConsumed: 0 });
  });

  it('setEpoch to another epoch discards a loaded position; mismatched datasets and samplers are refused with reasons', async () => {
    const a = shuffled(20, 4, {});
    const { state } = await runUntil(a, 1);
    const b = shuffled(20, 4, {});
    b.loadStateDict(state!);
    b.setEpoch(3);
    expect((await runUntil(b)).batches.flat()).toEqual(orderOf(20, 7, 3));

    expect(() => shuffled(21, 4, {}).loadStateDict(state!)).toThrow(/20 samples but this loader's dataset has 21/);
    const unshuffled = prepareDataLoader(new DataLoader(range(20), { batchSize: 4 })) as PreparedDataLoader<unknown, unknown>;
    expect(() => unshuffled.loadStateDict(state!)).toThrow(/SeedableRandomSampler \(seed 7\)/);
    expect(() => unshuffled.loadStateDict({ version: 2 } as never)).toThrow(/version 1/);
  });
});

describe('a position saved after the last batch of an epoch', () => {
  /** A plain shuffled loader (RandomSampler over the global data generator), prepared for 1 process. */
  const plain = () => prepareDataLoader(new DataLoader(range(12), { batchSize: 4, shuffle: true }), {}) as PreparedDataLoader<unknown, unknown>;

  for (const how of ['setEpoch(0) and iterate', 'setEpoch(0) and skipFirstBatches(3)'] as const) {
    it(`a loop that counts epochs itself resumes at the finished epoch (${how}): that pass is empty and the next epoch draws the uninterrupted order`, async () => {
      seedDataGenerator(3);
      const ref = plain();
      await runUntil(ref);
      const refEpoch1 = (await runUntil(ref)).batches;

      seedDataGenerator(3);
      const a = plain();
      const { state } = await runUntil(a, 2); // the last batch of epoch 0, as a save inside the loop sees it
      expect(state).toMatchObject({ epoch: 1, samplesConsumed: 0 });
      const generatorAtSave = defaultGenerator().getState(); // what random_states restores

      resetDefaultGenerator();
      defaultGenerator().setState(generatorAtSave);
      const b = plain();
      b.loadStateDict(state!);
      b.setEpoch(0);
      const view = how === 'setEpoch(0) and iterate' ? b : (skipFirstBatches(b, 3) as PreparedDataLoader<unknown, unknown>);
      expect((await runUntil(view)).batches).toEqual([]);
      b.setEpoch(1);
      expect((await runUntil(b)).batches).toEqual(refEpoch1);
    });
  }
});
