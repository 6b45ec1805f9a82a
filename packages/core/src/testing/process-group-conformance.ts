/**
 * The process-group conformance suite: what every {@link ProcessGroup}
 * implementation (c10d gloo, NCCL, the in-memory group, a third party's) must
 * do, checked with all ranks of a group living in the test's own process —
 * collectives are issued synchronously and awaited later, so one process can
 * drive every rank. Run it with `runProcessGroupConformance(vitestApi, {
 * name, createGroups })` next to {@link runBackendConformance}.
 * @module
 */
import type { HostArray } from '../tensor/host-tensor.js';
import type { ProcessGroup, ReduceOp } from '../interfaces/process-group.js';
import type { ConformanceTestApi } from './conformance.js';

/** How the suite gets groups to test. */
export interface ProcessGroupConformanceOptions<T = never> {
  /** Shown in the describe block (`gloo`, `in-memory`). */
  name: string;
  /** `size` groups forming one world, element r being rank r's. Called once per test. */
  createGroups(size: number): Promise<ProcessGroup<T>[]>;
  /** World sizes to test (default `[2, 3]`). */
  sizes?: readonly number[];
  /** Reductions the group supports (default all five). */
  ops?: readonly ReduceOp[];
  /**
   * Backend tensors, when the group accepts them as well as host arrays:
   * `make(values)` builds a float32 tensor, `read(t)` returns its values.
   */
  tensors?: { make(values: number[]): T; read(t: T): number[] };
}

const ALL_OPS: readonly ReduceOp[] = ['sum', 'avg', 'max', 'min', 'product'];

function reduce(op: ReduceOp, values: number[]): number {
  switch (op) {
    case 'sum':
      return values.reduce((a, b) => a + b, 0);
    case 'avg':
      return values.reduce((a, b) => a + b, 0) / values.length;
    case 'max':
      return Math.max(...values);
    case 'min':
      return Math.min(...values);
    case 'product':
      return values.reduce((a, b) => a * b, 1);
  }
}

/** Rank r's input for element i: small integers, different per rank, exact in float32 products. */
const input = (r: number, i: number) => ((r * 3 + i) % 5) + 1;

/**
 * Register the suite with `api` (vitest's or jest's `describe`/`it`/`expect`).
 * Each test creates fresh groups and destroys them at its end.
 */
export function runProcessGroupConformance<T = never>(api: ConformanceTestApi, options: ProcessGroupConformanceOptions<T>): void {
  const { describe, it, expect } = api;
  const sizes = options.sizes ?? [2, 3];
  const ops = options.ops ?? ALL_OPS;

  const withGroups = (size: number, fn: (groups: ProcessGroup<T>[]) => Promise<void>) => async () => {
    const groups = await options.createGroups(size);
    try {
      await fn(groups);
    } finally {
      await Promise.all(groups.map((g) => g.destroy()));
    }
  };

  describe(`process group conformance: ${options.name}`, () => {
    for (const size of sizes) {
      describe(`${size} ranks`, () => {
        it('knows its rank, size and transport', withGroups(size, async (groups) => {
          expect(groups.map((g) => g.rank)).toEqual(groups.map((_, r) => r));
          for (const g of groups) {
            expect(g.size).toBe(size);
            expect(typeof g.backend === 'string' && g.backend.length > 0, 'backend names its transport').toBe(true);
          }
        }));

        for (const op of ops) {
          it(`allReduce(${op}) on float32, float64 and int32 host arrays`, withGroups(size, async (groups) => {
            const n = 5;
            const make = <A extends Float32Array | Float64Array | Int32Array>(Ctor: new (n: number) => A) =>
              groups.map((_, r) => {
                const a = new Ctor(n);
                for (let i = 0; i < n; i++) a[i] = input(r, i);
                return a;
              });
            const kinds: Array<HostArray[]> = [make(Float32Array), make(Float64Array)];
            if (op !== 'avg') kinds.push(make(Int32Array)); // an integer average is not exact
            for (const arrays of kinds) {
              const works = groups.map((g, r) => g.allReduce(arrays[r]!, op));
              await Promise.all(works.map((w) => w.wait()));
              for (const w of works) expect(w.isCompleted(), 'isCompleted() after wait()').toBe(true);
              const want = Array.from({ length: n }, (_, i) => reduce(op, groups.map((__, r) => input(r, i))));
              for (const a of arrays) {
                const got = Array.from(a as ArrayLike<number>);
                for (let i = 0; i < n; i++) expect(Math.abs(got[i]! - want[i]!) <= 1e-6 * Math.max(1, Math.abs(want[i]!)), `${op}[${i}]: ${got[i]} vs ${want[i]}`).toBe(true);
              }
            }
          }));
        }

        it('broadcast copies the source rank\'s values everywhere', withGroups(size, async (groups) => {
          const src = size - 1;
          const arrays = groups.map((_, r) => Float32Array.from([r, r * 10, -r]));
          await Promise.all(groups.map((g, r) => g.broadcast(arrays[r]!, src).wait()));
          for (const a of arrays) expect(Array.from(a)).toEqual([src, src * 10, -src]);
        }));

        it('allGather returns every rank\'s data in rank order', withGroups(size, async (groups) => {
          const results = await Promise.all(groups.map((g, r) => g.allGather(Float32Array.from([r, r + 0.5])).wait()));
          for (const gathered of results) {
            expect(gathered.length).toBe(size);
            gathered.forEach((part, r) => expect(Array.from(part as Float32Array)).toEqual([r, r + 0.5]));
          }
        }));

        it('reduceScatter sums inputs[r] over ranks into rank r\'s output', withGroups(size, async (groups) => {
          const outputs = groups.map(() => new Float32Array(2));
          // Sender s contributes [r + s, 1] to receiver r.
          const inputs = groups.map((_, s) => groups.map((__, r) => Float32Array.from([r + s, 1])));
          await Promise.all(groups.map((g, s) => g.reduceScatter(outputs[s]!, inputs[s]!, 'sum').wait()));
          const senders = groups.reduce((acc, _, s) => acc + s, 0);
          outputs.forEach((out, r) => expect(Array.from(out)).toEqual([r * size + senders, size]));
        }));

        it('send and recv pass data around a ring', withGroups(size, async (groups) => {
          const received = groups.map(() => new Float64Array(1));
          const works = groups.flatMap((g, r) => [
            g.send(Float64Array.from([100 + r]), (r + 1) % size),
            g.recv(received[r]!, (r + size - 1) % size),
          ]);
          await Promise.all(works.map((w) => w.wait()));
          received.forEach((a, r) => expect(a[0]).toBe(100 + ((r + size - 1) % size)));
        }));

        it('several collectives issued in order complete when awaited later, in any order', withGroups(size, async (groups) => {
          const first = groups.map((_, r) => Float32Array.from([r]));
          const second = groups.map((_, r) => Float32Array.from([r * 2]));
          const w1 = groups.map((g, r) => g.allReduce(first[r]!, 'sum'));
          const w2 = groups.map((g, r) => g.allReduce(second[r]!, 'max'));
          await Promise.all([...w2, ...w1].map((w) => w.wait()));
          const sum = groups.reduce((acc, _, r) => acc + r, 0);
          for (const a of first) expect(a[0]).toBe(sum);
          for (const a of second) expect(a[0]).toBe((size - 1) * 2);
        }));

        it('barrier resolves on every rank', withGroups(size, async (groups) => {
          await Promise.all(groups.map((g) => g.barrier().wait()));
        }));

        it('newGroup gives members a working subgroup and non-members null', withGroups(size, async (groups) => {
          const members = [0, size - 1];
          const subs = await Promise.all(groups.map((g) => g.newGroup(members)));
          subs.forEach((s, r) => {
            if (members.includes(r)) {
              expect(s, `rank ${r} is a member`).not.toBe(null);
              expect(s!.size).toBe(members.length);
              expect(s!.rank).toBe(members.indexOf(r));
            } else expect(s, `rank ${r} is not a member`).toBe(null);
          });
          const live = subs.filter((s): s is ProcessGroup<T> => s !== null);
          const arrays = live.map((s) => Float32Array.from([s.rank + 1]));
          await Promise.all(live.map((s, i) => s.allReduce(arrays[i]!, 'sum').wait()));
          for (const a of arrays) expect(a[0]).toBe(3);
          await Promise.all(live.map((s) => s.destroy()));
        }));

        it('waitSync, when present, returns what wait() resolves with and completes the work', withGroups(size, async (groups) => {
          // Every rank issues before any rank blocks: one process drives all ranks here.
          const arrays = groups.map((_, r) => Float32Array.from([r, 1]));
          const works = groups.map((g, r) => g.allReduce(arrays[r]!, 'sum'));
          if (!works.every((w) => typeof w.waitSync === 'function')) {
            await Promise.all(works.map((w) => w.wait()));
            return;
          }
          for (const w of works) expect(w.waitSync!()).toBe(undefined);
          const sum = groups.reduce((acc, _, r) => acc + r, 0);
          for (const a of arrays) expect(Array.from(a)).toEqual([sum, size]);
          for (const w of works) expect(w.isCompleted(), 'isCompleted() after waitSync()').toBe(true);
          // wait() after waitSync() resolves at once without running the finisher again.
          await Promise.all(works.map((w) => w.wait()));
          for (const a of arrays) expect(Array.from(a)).toEqual([sum, size]);
          // avg divides once, whichever of wait() and waitSync() runs first.
          const avgArrays = groups.map((_, r) => Float64Array.from([r * 2]));
          const avgWorks = groups.map((g, r) => g.allReduce(avgArrays[r]!, 'avg'));
          const pending = avgWorks.map((w) => w.wait());
          for (const w of avgWorks) w.waitSync!();
          await Promise.all(pending);
          for (const a of avgArrays) expect(a[0]).toBeCloseTo(size - 1, 12);
          // A result-bearing collective returns its result synchronously.
          const gathers = groups.map((g, r) => g.allGather(Float32Array.from([r + 0.25])));
          for (const w of gathers) {
            const got = w.waitSync!();
            expect(got.map((p) => Array.from(p as Float32Array))).toEqual(groups.map((_, r) => [r + 0.25]));
          }
        }));

        it('implementations, when present, names how each flat collective is done', withGroups(size, async (groups) => {
          for (const g of groups) {
            if (!g.implementations) continue;
            for (const [k, v] of Object.entries(g.implementations)) expect(typeof v === 'string' && v.length > 0, `implementations.${k}`).toBe(true);
            if (g.allGatherInto) expect(typeof g.implementations.allGatherInto, 'implementations.allGatherInto').toBe('string');
            if (g.reduceScatterInto) expect(typeof g.implementations.reduceScatterInto, 'implementations.reduceScatterInto').toBe('string');
          }
        }));

        if (options.tensors) {
          const t = options.tensors;
          const hasFlat = (groups: ProcessGroup<T>[], m: 'allGatherInto' | 'reduceScatterInto') => groups.every((g) => typeof g[m] === 'function');

          it('allGatherInto, when present, gathers every rank\'s input into one output in rank order', withGroups(size, async (groups) => {
            if (!hasFlat(groups, 'allGatherInto')) return;
            for (const n of [3, 1, 0]) {
              const inputs = groups.map((_, r) => t.make(Array.from({ length: n }, (__, i) => r * 10 + i + 0.5)));
              const outputs = groups.map(() => t.make(new Array<number>(n * size).fill(-1)));
              const works = groups.map((g, r) => g.allGatherInto!(outputs[r]!, inputs[r]!));
              await Promise.all(works.map((w) => w.wait()));
              const want = groups.flatMap((_, r) => Array.from({ length: n }, (__, i) => r * 10 + i + 0.5));
              for (const o of outputs) expect(t.read(o), `n = ${n}`).toEqual(want);
              for (const [r, x] of inputs.entries()) expect(t.read(x), 'input unchanged').toEqual(Array.from({ length: n }, (__, i) => r * 10 + i + 0.5));
            }
          }));

          for (const op of ops) {
            it(`reduceScatterInto(${op}), when present, leaves chunk r of the reduction on rank r`, withGroups(size, async (groups) => {
              if (!hasFlat(groups, 'reduceScatterInto')) return;
              for (const n of [2, 1, 0]) {
                const values = (r: number) => Array.from({ length: n * size }, (_, i) => input(r, i));
                const inputs = groups.map((_, r) => t.make(values(r)));
                const outputs = groups.map(() => t.make(new Array<number>(n).fill(-1)));
                const works = groups.map((g, r) => g.reduceScatterInto!(outputs[r]!, inputs[r]!, op));
                await Promise.all(works.map((w) => w.wait()));
                outputs.forEach((o, r) => {
                  const got = t.read(o);
                  const want = Array.from({ length: n }, (_, i) => reduce(op, groups.map((__, s) => input(s, r * n + i))));
                  expect(got.length, `rank ${r} n = ${n}`).toBe(n);
                  for (let i = 0; i < n; i++) expect(Math.abs(got[i]! - want[i]!) <= 1e-6 * Math.max(1, Math.abs(want[i]!)), `rank ${r} ${op}[${i}]: ${got[i]} vs ${want[i]}`).toBe(true);
                });
              }
            }));
          }

          it('allGatherInto and reduceScatterInto, when present, complete through waitSync too', withGroups(size, async (groups) => {
            if (!hasFlat(groups, 'allGatherInto') || !hasFlat(groups, 'reduceScatterInto')) return;
            const inputs = groups.map((_, r) => t.make([r, -r]));
            const outputs = groups.map(() => t.make(new Array<number>(2 * size).fill(0)));
            const gathers = groups.map((g, r) => g.allGatherInto!(outputs[r]!, inputs[r]!));
            const big = groups.map((_, r) => t.make(Array.from({ length: size }, (__, i) => r + i)));
            const small = groups.map(() => t.make([0]));
            const scatters = groups.map((g, r) => g.reduceScatterInto!(small[r]!, big[r]!, 'sum'));
            const works = [...gathers, ...scatters];
            if (!works.every((w) => typeof w.waitSync === 'function')) {
              await Promise.all(works.map((w) => w.wait()));
            } else {
              for (const w of [...scatters, ...gathers]) w.waitSync!();
            }
            const want = groups.flatMap((_, r) => [r, -r]);
            for (const o of outputs) expect(t.read(o)).toEqual(want);
            const senders = groups.reduce((acc, _, r) => acc + r, 0);
            small.forEach((s, r) => expect(t.read(s)).toEqual([senders + size * r]));
          }));

          it('allReduce and broadcast work in place on backend tensors too', withGroups(size, async (groups) => {
            const tensors = groups.map((_, r) => t.make([r, 1]));
            await Promise.all(groups.map((g, r) => g.allReduce(tensors[r]!, 'sum').wait()));
            const sum = groups.reduce((acc, _, r) => acc + r, 0);
            for (const x of tensors) expect(t.read(x)).toEqual([sum, size]);
            const b = groups.map((_, r) => t.make([r, -r]));
            await Promise.all(groups.map((g, r) => g.broadcast(b[r]!, 1).wait()));
            for (const x of b) expect(t.read(x)).toEqual([1, -1]);
          }));
        }
      });
    }
  });
}
