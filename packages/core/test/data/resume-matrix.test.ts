/**
 * Exact resume over many configurations: a pass restored from `stateDict()`
 * taken at any step must give every rank exactly the batches the
 * uninterrupted pass gave it after that step, including the padded last
 * batch (whose padding comes from the start of the epoch's order). Across
 * world sizes "exact" means: the resumed run consumes the epoch's order from
 * the saved sample on, every real sample once, and pads its own last global
 * batch from the start of the epoch's order, as that world size does.
 */
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { GradientState } from '../../src/state/gradient-state.js';
import { HostTensor } from '../../src/tensor/host-tensor.js';
import { DataLoader } from '../../src/data/dataloader.js';
import { fromIterable } from '../../src/data/dataset.js';
import { skipFirstBatches, type DataLoaderStateDict, type PreparedDataLoader } from '../../src/data/loaders.js';
import { prepareDataLoader } from '../../src/data/prepare.js';
import { Generator, resetDefaultGenerator } from '../../src/data/random.js';
import { SeedableRandomSampler } from '../../src/data/sampler.js';
import { createInMemoryGroups } from '../../src/testing/in-memory-group.js';
import { gatherForMetrics, range } from './helpers.js';

beforeEach(() => {
  GradientState.reset();
  resetDefaultGenerator();
});
afterEach(() => {
  GradientState.reset();
  vi.restoreAllMocks();
});

type Loader = PreparedDataLoader<unknown, unknown>;
const ids = (b: unknown) => (b as HostTensor).toArray();
const json = (s: DataLoaderStateDict): DataLoaderStateDict => JSON.parse(JSON.stringify(s));

interface Config {
  n: number;
  bs: number;
  shuffle: boolean;
  evenBatches: boolean;
  splitBatches: boolean;
  dropLast: boolean;
  dispatch: boolean;
  iterable: boolean;
  seed: number;
}

/** One prepared loader per rank of a world of P (with in-memory groups when dispatching). */
function makeWorld(c: Config, P: number): Loader[] {
  const groups = c.dispatch && P > 1 ? createInMemoryGroups(P) : undefined;
  return range(P).map((p) => {
    const base = c.iterable
      ? new DataLoader(fromIterable(() => range(c.n), { length: c.n }), { batchSize: c.bs, dropLast: c.dropLast })
      : new DataLoader(range(c.n), { batchSize: c.bs, shuffle: c.shuffle, dropLast: c.dropLast });
    return prepareDataLoader(base, {
      numProcesses: P,
      processIndex: p,
      evenBatches: c.evenBatches,
      splitBatches: c.splitBatches,
      dispatchBatches: c.dispatch,
      group: groups?.[p],
      useSeedableSampler: true,
      dataSeed: c.seed,
    }) as Loader;
  });
}

/** Run every rank of a world for one pass (concurrently, so dispatchers can broadcast); stop after step `stopAt` with its state. */
async function runWorld(world: Loader[], stopAt = Infinity) {
  const runs = await Promise.all(
    world.map(async (dl) => {
      const batches: number[][] = [];
      let state: DataLoaderStateDict | undefined;
      let i = 0;
      for await (const b of dl) {
        batches.push(ids(b));
        if (i === stopAt) {
          state = json(dl.stateDict());
          break;
        }
        i++;
      }
      return { batches, state, remainder: dl.remainder };
    }),
  );
  return { perRank: runs.map((r) => r.batches), state: runs[0].state, states: runs.map((r) => r.state), remainder: runs[0].remainder };
}

/** The epoch's global order of samples. */
function orderOf(c: Config, epoch: number): number[] {
  return c.shuffle && !c.iterable ? new SeedableRandomSampler(c.n, { seed: c.seed }).orderFor(epoch) : range(c.n);
}

function configs(): Config[] {
  const out: Config[] = [];
  for (const n of [20, 19, 24])
    for (const shuffle of [true, false])
      for (const evenBatches of [true, false])
        for (const splitBatches of [false, true])
          for (const dropLast of [false, true])
            for (const kind of ['shard', 'dispatch', 'iterable'] as const) {
              if (kind !== 'shard' && (!evenBatches || (kind === 'iterable' && shuffle))) continue; // evenBatches only shapes BatchSamplerShard; streams are not shuffled
              out.push({ n, bs: splitBatches ? 6 : 3, shuffle, evenBatches, splitBatches, dropLast, dispatch: kind === 'dispatch', iterable: kind === 'iterable', seed: 7 });
            }
  return out;
}

const name = (c: Config) =>
  `n${c.n} bs${c.bs}${c.shuffle ? ' shuffle' : ''}${c.evenBatches ? '' : ' !even'}${c.splitBatches ? ' split' : ''}${c.dropLast ? ' dropLast' : ''}${c.dispatch ? ' dispatch' : ''}${c.iterable ? ' iterable' : ''}`;

describe('exact resume at every step equals the uninterrupted pass (same world size)', () => {
  for (const P of [1, 2, 3]) {
    it(`P = ${P}: every configuration, every resume step, epoch 1`, async () => {
      let checked = 0;
      for (const c0 of configs()) {
        const c = { ...c0, bs: c0.splitBatches ? 2 * P : c0.bs };
        const ref = makeWorld(c, P);
        ref.forEach((dl) => dl.setEpoch(1));
        const full = await runWorld(ref);
        const steps = full.perRank[0].length;
        for (let k = 0; k < steps; k++) {
          const a = makeWorld(c, P);
          a.forEach((dl) => dl.setEpoch(1));
          const cut = await runWorld(a, k);
          // Ranks agree on the position (rank 0 saves it), except, with uneven batches, where a rank has no step k or is already at its end.
          const minSteps = Math.min(...full.perRank.map((r) => r.length));
          if (k < minSteps - 1) expect(cut.states.every((s) => JSON.stringify(s) === JSON.stringify(cut.state)), name(c)).toBe(true);
          const b = makeWorld(c, P);
          b.forEach((dl) => dl.loadStateDict(cut.state!));
          const rest = await runWorld(b);
          if (k === steps - 1) {
            // The last batch's state is the start of the next epoch.
            expect(cut.state!.epoch, name(c)).toBe(2);
            continue;
          }
          expect(rest.perRank, `${name(c)} P=${P} resume after step ${k}`).toEqual(full.perRank.map((r) => r.slice(k + 1)));
          expect(rest.remainder, name(c)).toBe(full.remainder);
          checked++;
        }
      }
      expect(checked).toBeGreaterThan(100);
    });
  }

  it('the reported case: 20 samples, bs 3, shuffle, seed 7, 2 processes, resume after 2 steps pads the last batch from the epoch start', async () => {
    const c: Config = { n: 20, bs: 3, shuffle: true, evenBatches: true, splitBatches: false, dropLast: false, dispatch: false, iterable: false, seed: 7 };
    const order = orderOf(c, 0);
    const full = await runWorld(makeWorld(c, 2));
    const cut = await runWorld(makeWorld(c, 2), 1);
    const b = makeWorld(c, 2);
    b.forEach((dl) => dl.loadStateDict(cut.state!));
    const rest = await runWorld(b);
    // Step 3: rank 0 has the last 2 real samples + the first sample of the epoch, rank 1 the next two of the epoch's start.
    expect(rest.perRank[0][1]).toEqual([order[18], order[19], order[0]]);
    expect(rest.perRank[1][1]).toEqual([order[1], order[2], order[3]]);
    expect(rest.perRank).toEqual(full.perRank.map((r) => r.slice(2)));
  });
});

describe('exact resume across world sizes', () => {
  /** How many first samples of the epoch the padding cycles through. */
  const padPool = (c: Config, P: number) => (c.dispatch ? P : c.splitBatches || c.iterable ? (c.iterable ? (c.splitBatches ? c.bs : c.bs * P) : c.bs) : P * c.bs);

  for (const [from, to] of [
    [2, 1],
    [1, 2],
    [2, 3],
    [3, 2],
  ] as const) {
    it(`P = ${from} -> P = ${to}: the order continues at the saved sample, each real sample once, padding from the epoch start`, async () => {
      let checked = 0;
      for (const c0 of configs()) {
        if (!c0.evenBatches || c0.dropLast) continue;
        // A batch size every world size can split.
        const c = { ...c0, bs: c0.splitBatches ? 6 : c0.bs };
        const order = orderOf(c, 0);
        const steps = (await runWorld(makeWorld(c, from))).perRank[0].length;
        for (let k = 0; k < steps - 1; k++) {
          const cut = await runWorld(makeWorld(c, from), k);
          const s = cut.state!.samplesConsumed!;
          const b = makeWorld(c, to);
          b.forEach((dl) => dl.loadStateDict(cut.state!));
          const rest = await runWorld(b);
          const label = `${name(c)} ${from}->${to} after step ${k} (${s} samples)`;
          const flat = gatherForMetrics(rest.perRank, 0);
          expect(flat.slice(0, c.n - s), label).toEqual(order.slice(s));
          const pad = flat.slice(c.n - s);
          const pool = order.slice(0, Math.min(c.n, padPool(c, to)));
          expect(pad, label).toEqual(pad.map((_, i) => pool[i % pool.length]));
          expect(gatherForMetrics(rest.perRank, rest.remainder), label).toEqual(order.slice(s));
          checked++;
        }
      }
      expect(checked).toBeGreaterThan(20);
    });
  }
});

describe('skipFirstBatches and a restored position', () => {
  const mk = (seed = 5) => prepareDataLoader(new DataLoader(range(40), { batchSize: 4, shuffle: true }), { useSeedableSampler: true, dataSeed: seed }) as Loader;
  const pass = async (dl: AsyncIterable<unknown>) => {
    const out: number[][] = [];
    for await (const b of dl) out.push(ids(b));
    return out;
  };

  it('loadStateDict then skipFirstBatches(dl, 3): the view resumes once (no double skip), warns once, and the next pass of dl is the whole next epoch', async () => {
    const ref = mk();
    const epoch0 = await pass(ref);
    const epoch1 = await pass(ref);
    const a = mk();
    let state: DataLoaderStateDict | undefined;
    let i = 0;
    for await (const _ of a) if (i++ === 2) state = json(a.stateDict());
    expect(state!.samplesConsumed).toBe(12);

    const warn = vi.spyOn(console, 'warn').mockImplementation(() => {});
    const dl = mk();
    dl.loadStateDict(state!);
    const view = skipFirstBatches(dl, 3);
    expect(await pass(view)).toEqual(epoch0.slice(3));
    expect(warn).toHaveBeenCalledTimes(1);
    const msg = String(warn.mock.calls[0][0]);
    expect(msg).toContain('skipFirstBatches(loader, 3)');
    expect(msg).toContain('12 samples of epoch 0 already consumed');
    expect(msg).toContain('double-skip samples 12..23');
    expect(await pass(dl)).toEqual(epoch1);
    expect(dl.iteration).toBe(2);
  });

  it('stateDict of the original loader while its skipFirstBatches view is part-way gives the view position', async () => {
    const ref = mk();
    const epoch0 = await pass(ref);
    const dl = mk();
    const view = skipFirstBatches(dl, 2) as Loader;
    let state: DataLoaderStateDict | undefined;
    let i = 0;
    for await (const _ of view) if (i++ === 1) state = json(dl.stateDict());
    expect(state).toMatchObject({ epoch: 0, samplesConsumed: 16 });
    const b = mk();
    b.loadStateDict(state!);
    expect(await pass(b)).toEqual(epoch0.slice(4));
  });

  it('without a restored position skipFirstBatches skips like Accelerate (no warning), and the original loader is unchanged', async () => {
    const warn = vi.spyOn(console, 'warn').mockImplementation(() => {});
    const ref = mk();
    const epoch0 = await pass(ref);
    const dl = mk();
    expect(await pass(skipFirstBatches(dl, 3))).toEqual(epoch0.slice(3));
    expect(warn).not.toHaveBeenCalled();
    // As in Accelerate, the view copies the epoch and the original loader still iterates that epoch in full.
    expect(await pass(dl)).toEqual(epoch0);
    // Streams and a plain shuffled loader too.
    const plain = prepareDataLoader(new DataLoader(range(10), { batchSize: 3, shuffle: true, generator: new Generator(3) })) as Loader;
    const stream = prepareDataLoader(new DataLoader(fromIterable(() => range(10), { length: 10 }), { batchSize: 3 })) as Loader;
    expect(await pass(skipFirstBatches(stream, 2))).toEqual([[6, 7, 8], [9]]);
    expect((await pass(skipFirstBatches(plain, 1))).flat()).toHaveLength(7);
  });

  it('skipFirstBatches(dl, 0) after loadStateDict takes the position over silently', async () => {
    const warn = vi.spyOn(console, 'warn').mockImplementation(() => {});
    const ref = mk();
    const epoch0 = await pass(ref);
    const epoch1 = await pass(ref);
    const a = mk();
    let state: DataLoaderStateDict | undefined;
    let i = 0;
    for await (const _ of a) if (i++ === 4) state = json(a.stateDict());
    const dl = mk();
    dl.loadStateDict(state!);
    expect(await pass(skipFirstBatches(dl, 0))).toEqual(epoch0.slice(5));
    expect(await pass(dl)).toEqual(epoch1);
    expect(warn).not.toHaveBeenCalled();
  });
});
