import { describe, expect, it } from 'vitest';
import { HostTensor } from '../../src/tensor/host-tensor.js';
import { hostTensorFromNumbers, hostTensorOps, hostTensorToNumbers, type TensorOps } from '../../src/ops/tensor-ops.js';
import {
  DistributedOperationException,
  broadcast,
  broadcastObjectList,
  gather,
  gatherObject,
  padAcrossProcesses,
  reduce,
  type CollectiveContext,
} from '../../src/ops/collectives.js';
import { createInMemoryGroups } from '../../src/testing/in-memory-group.js';
import { patchEnvironment } from '../../src/utils/environment.js';

type Ctx = CollectiveContext<HostTensor>;

const f32 = (values: number[], shape: number[] = [values.length]) => hostTensorFromNumbers(values, shape, 'float32');
const arange = (n: number) => HostTensor.fromNumbers(Array.from({ length: n }, (_, i) => i));

/** Run `fn` as P ranks over in-memory groups; resolves with every rank's result. */
function onRanks<R>(P: number, fn: (ctx: Ctx, p: number) => Promise<R>, extra: Partial<Ctx> = {}): Promise<R[]> {
  const groups = createInMemoryGroups(P, { timeoutMs: 2000 });
  return Promise.all(
    groups.map((group, p) => fn({ group, ops: hostTensorOps, numProcesses: P, processIndex: p, debug: false, ...extra }, p)),
  );
}

/** Like onRanks but collects each rank's rejection (or undefined on success). */
async function errorsOnRanks(P: number, fn: (ctx: Ctx, p: number) => Promise<unknown>, extra: Partial<Ctx> = {}): Promise<unknown[]> {
  const groups = createInMemoryGroups(P, { timeoutMs: 2000 });
  const settled = await Promise.allSettled(
    groups.map((group, p) => fn({ group, ops: hostTensorOps, numProcesses: P, processIndex: p, debug: false, ...extra }, p)),
  );
  return settled.map((s) => (s.status === 'rejected' ? s.reason : undefined));
}

/** Accelerate's test tensor: rank p holds arange(P) + 1 + P·p (float). */
const createTensor = (P: number, p: number) => f32(Array.from({ length: P }, (_, i) => i + 1 + P * p));

const single: Ctx = { ops: hostTensorOps, numProcesses: 1, processIndex: 0 };

describe.each([2, 3])('collectives over %i in-memory ranks', (P) => {
  it(`[B28] gather -> [1..P²] on every rank`, async () => {
    const out = await onRanks(P, (ctx, p) => gather(createTensor(P, p), ctx));
    const expected = Array.from({ length: P * P }, (_, i) => i + 1);
    for (const t of out) {
      expect(t.shape).toEqual([P * P]);
      expect(t.dtype).toBe('float32');
      expect(t.toArray()).toEqual(expected);
    }
  });

  it('[B28] gatherObject([p]) -> [0..P-1]', async () => {
    const out = await onRanks(P, (ctx, p) => gatherObject([p], ctx));
    for (const o of out) expect(o).toEqual(Array.from({ length: P }, (_, i) => i));
  });

  it('[B28] broadcast -> every rank holds rank 0 values [1..P], in place', async () => {
    const inputs = Array.from({ length: P }, (_, p) => createTensor(P, p));
    const out = await onRanks(P, (ctx, p) => broadcast(inputs[p], ctx));
    out.forEach((t, p) => {
      expect(t.shape).toEqual([P]);
      expect(t.toArray()).toEqual(Array.from({ length: P }, (_, i) => i + 1));
      expect(t).toBe(inputs[p]);
    });
  });

  it('broadcast from the last rank', async () => {
    const out = await onRanks(P, (ctx, p) => broadcast({ x: createTensor(P, p) }, ctx, P - 1));
    for (const o of out) expect(o.x.toArray()).toEqual(createTensor(P, P - 1).toArray());
  });

  it('gathers a nested structure; 0-d tensors become length 1 per rank', async () => {
    const out = await onRanks(P, (ctx, p) =>
      gather({ a: f32([p, p], [1, 2]), b: [HostTensor.fromNumbers([10 * p], [])] }, ctx),
    );
    for (const o of out) {
      expect(o.a.shape).toEqual([P, 2]);
      expect(o.a.toArray()).toEqual(Array.from({ length: P }, (_, p) => [p, p]).flat());
      expect(o.b[0].shape).toEqual([P]);
      expect(o.b[0].dtype).toBe('int64');
      expect(o.b[0].toArray()).toEqual(Array.from({ length: P }, (_, p) => 10 * p));
    }
  });

  it('gather of a non-tensor leaf is a TypeError on every rank', async () => {
    const errors = await errorsOnRanks(P, (ctx, p) => gather([createTensor(P, p), 1], ctx));
    for (const e of errors) {
      expect(e).toBeInstanceOf(TypeError);
      expect((e as Error).message).toMatch(/^Unsupported types \(number\) passed to `gather`/);
    }
  });

  it('[B29] padAcrossProcesses: main holds arange(P+1), others arange(P) -> all length P+1, others end with 0', async () => {
    const out = await onRanks(P, (ctx, p) => padAcrossProcesses(p === 0 ? arange(P + 1) : arange(P), ctx));
    out.forEach((t, p) => {
      expect(t.shape).toEqual([P + 1]);
      if (p === 0) expect(t.toArray()).toEqual(Array.from({ length: P + 1 }, (_, i) => i));
      else expect(t.toArray()).toEqual([...Array.from({ length: P }, (_, i) => i), 0]);
    });
  });

  it('[B29] padAcrossProcesses with an out-of-range dim returns the same object', async () => {
    const tensors = Array.from({ length: P }, () => f32(new Array(4 * 3 * 5).fill(1), [4, 3, 5]));
    const out = await onRanks(P, (ctx, p) => padAcrossProcesses(tensors[p], ctx, { dim: -4 }));
    out.forEach((t, p) => expect(t).toBe(tensors[p]));
  });

  it('padAcrossProcesses on a negative dim with padFirst and padIndex; the largest tensor comes back as is', async () => {
    const inputs = Array.from({ length: P }, (_, p) => f32(Array.from({ length: 2 * (p + 1) }, () => p + 1), [2, p + 1]));
    const out = await onRanks(P, (ctx, p) => padAcrossProcesses({ t: inputs[p] }, ctx, { dim: -1, padIndex: -1, padFirst: true }));
    out.forEach((o, p) => {
      expect(o.t.shape).toEqual([2, P]);
      const row = [...new Array(P - (p + 1)).fill(-1), ...new Array(p + 1).fill(p + 1)];
      expect(o.t.toArray()).toEqual([...row, ...row]);
    });
    expect(out[P - 1].t).toBe(inputs[P - 1]);
  });

  it('[B30] debug mode: different shapes make padAcrossProcesses, reduce, broadcast and gather throw DistributedOperationException', async () => {
    const padData = (p: number) => ({ tensor: p === 0 ? f32([0, 1, 2, 3, 4], [1, 5]) : f32([0, 1, 2, 3, 4, 5], [1, 1, 6]) });
    const otherData = (p: number) =>
      ({ tensor: p === 0 ? f32([0, 1, 2, 3, 4], [1, 5]) : f32([0, 1, 2, 3, 4, 5, 6, 7, 8, 9], [1, 2, 5]) });
    const cases: Array<[string, (ctx: Ctx, p: number) => Promise<unknown>]> = [
      ['padAcrossProcesses', (ctx, p) => padAcrossProcesses(padData(p), ctx)],
      ['reduce', (ctx, p) => reduce(otherData(p), ctx)],
      ['broadcast', (ctx, p) => broadcast(otherData(p), ctx)],
      ['gather', (ctx, p) => gather(otherData(p), ctx)],
    ];
    for (const [name, run] of cases) {
      const errors = await errorsOnRanks(P, run, { debug: true });
      for (const e of errors) {
        expect(e, name).toBeInstanceOf(DistributedOperationException);
        const message = (e as Error).message;
        expect(message).toContain(name);
        expect(message).toContain(name === 'padAcrossProcesses' ? 'Process 0: {"tensor":[1,5]}' : 'Process 0: {"tensor":[1,5]}');
        expect(message).toContain(name === 'padAcrossProcesses' ? 'Process 1: {"tensor":[1,1,6]}' : 'Process 1: {"tensor":[1,2,5]}');
      }
    }
  });

  it('debug mode lets matching shapes through, and pad accepts different sizes along its dim', async () => {
    const out = await onRanks(
      P,
      async (ctx, p) => {
        const g = await gather(createTensor(P, p), ctx);
        const padded = await padAcrossProcesses(arange(p + 1), ctx);
        return [g.numel, padded.numel];
      },
      { debug: true },
    );
    for (const o of out) expect(o).toEqual([P * P, P]);
  });

  it('debug mode follows ACCELERATE_DEBUG_MODE when ctx.debug is unset', async () => {
    const errors = await patchEnvironment({ ACCELERATE_DEBUG_MODE: 'true' }, () =>
      errorsOnRanks(P, (ctx, p) => reduce(arange(p + 1), ctx), { debug: undefined }),
    );
    for (const e of errors) expect(e).toBeInstanceOf(DistributedOperationException);
  });

  it('debug mode rejects tensors on the wrong device kind', async () => {
    const errors = await errorsOnRanks(P, (ctx, p) => gather(createTensor(P, p), ctx), { debug: true, device: 'cuda:0' });
    for (const e of errors) {
      expect(e).toBeInstanceOf(DistributedOperationException);
      expect((e as Error).message).toMatch(/on 'cpu' while the run is configured for 'cuda:0'/);
    }
  });

  it('reduce over P ranks: sum, mean, max, with scale', async () => {
    const sums = Array.from({ length: P }, (_, i) => Array.from({ length: P }, (_, p) => i + 1 + P * p).reduce((a, b) => a + b, 0));
    const out = await onRanks(P, async (ctx, p) => {
      const t = createTensor(P, p);
      return {
        sum: (await reduce(t, ctx, 'sum')).toArray(),
        mean: (await reduce(t, ctx, 'mean')).toArray(),
        max: (await reduce(t, ctx, 'max')).toArray(),
        scaled: (await reduce(t, ctx, 'sum', 0.5)).toArray(),
        input: t.toArray(),
      };
    });
    out.forEach((o, p) => {
      expect(o.sum).toEqual(sums);
      expect(o.mean).toEqual(sums.map((s) => s / P));
      expect(o.max).toEqual(Array.from({ length: P }, (_, i) => i + 1 + P * (P - 1)));
      expect(o.scaled).toEqual(sums.map((s) => s / 2));
      expect(o.input).toEqual(createTensor(P, p).toArray()); // inputs untouched
    });
  });

  it('broadcastObjectList replaces the elements in place with the source rank values', async () => {
    const lists = Array.from({ length: P }, (_, p) => [p, `rank ${p}`, { p }]);
    const out = await onRanks(P, (ctx, p) => broadcastObjectList(lists[p], ctx, 1));
    out.forEach((l, p) => {
      expect(l).toBe(lists[p]);
      expect(l).toEqual([1, 'rank 1', { p: 1 }]);
    });
  });

  it('gatherObject carries values of different sizes, NaN, bigint, Maps and HostTensors', async () => {
    const out = await onRanks(P, (ctx, p) =>
      gatherObject([{ rank: p, text: 'x'.repeat(10 * p), loss: p === 0 ? Number.NaN : p, big: 2n ** 60n + BigInt(p) }], ctx),
    );
    for (const o of out) {
      expect(o.map((x) => x.rank)).toEqual(Array.from({ length: P }, (_, i) => i));
      expect(o[P - 1].text).toBe('x'.repeat(10 * (P - 1)));
      expect(o[0].loss).toBeNaN();
      expect(o[1].big).toBe(2n ** 60n + 1n);
    }
    const tensors = await onRanks(P, (ctx, p) => gatherObject(new Map([['t', hostTensorFromNumbers([p, 0.5], [2], 'float16')]]), ctx));
    for (const o of tensors) {
      expect(o).toHaveLength(P);
      const t = (o[P - 1] as Map<string, HostTensor>).get('t')!;
      expect(t.dtype).toBe('float16');
      expect(hostTensorToNumbers(t)).toEqual([P - 1, 0.5]);
    }
  });
});

describe('collectives with one process', () => {
  it('gather, broadcast and padAcrossProcesses return their input; gatherObject wraps a non-array', async () => {
    const t = arange(3);
    expect(await gather(t, single)).toBe(t);
    expect(await broadcast(t, single)).toBe(t);
    expect((await padAcrossProcesses({ t }, single)).t).toBe(t);
    const list = [1, 2];
    expect(await gatherObject(list, single)).toBe(list);
    expect(await gatherObject('x', single)).toEqual(['x']);
    const objs = [{ a: 1 }];
    expect(await broadcastObjectList(objs, single)).toBe(objs);
  });

  it('reduce clones (and scales) without communicating', async () => {
    const t = f32([1, 2]);
    const r = await reduce(t, single, 'mean');
    expect(r).not.toBe(t);
    expect(r.toArray()).toEqual([1, 2]);
    expect((await reduce(t, single, 'sum', 3)).toArray()).toEqual([3, 6]);
    await expect(reduce([t, 'x'], single, 'sum')).rejects.toThrow(TypeError);
  });

  it("reduce rejects 'none' (Accelerate silently sums) and unknown reductions", async () => {
    await expect(reduce(f32([1]), single, 'none' as never)).rejects.toThrow(
      /reduction 'none' is not supported; use 'sum', 'mean' or 'max' \(Accelerate treats 'none' as 'sum'/,
    );
    await expect(reduce(f32([1]), single, 'min' as never)).rejects.toThrow(RangeError);
  });

  it('a multi-process context without a group, or one that disagrees with its group, is an error', async () => {
    await expect(gather(f32([1]), { ops: hostTensorOps, numProcesses: 2, processIndex: 0 })).rejects.toThrow(
      /numProcesses is 2 but no process group was given/,
    );
    const [g0] = createInMemoryGroups(2);
    await expect(gather(f32([1]), { group: g0, ops: hostTensorOps, numProcesses: 2, processIndex: 1 })).rejects.toThrow(
      /context says rank 1 of 2 but the group is rank 0 of 2/,
    );
  });
});

/** A fake device backend whose group only carries typed arrays (host transport). */
class Boxed {
  constructor(
    readonly host: HostTensor,
    readonly dev: string,
  ) {}
}
const boxedOps: TensorOps<Boxed> = {
  isTensor: (x): x is Boxed => x instanceof Boxed,
  shape: (t) => [...t.host.shape],
  dtype: (t) => t.host.dtype,
  device: (t) => t.dev,
  toDevice: (t, device) => new Boxed(t.host, device),
  // Copies, like a real device transfer, so in-place host collectives cannot leak into inputs.
  fromHost: (h, device = 'cpu') => new Boxed(hostTensorOps.cast(h, h.dtype), device),
  toHost: (t) => hostTensorOps.cast(t.host, t.host.dtype),
  cat: (ts, dim) => new Boxed(hostTensorOps.cat(ts.map((t) => t.host), dim), ts[0].dev),
  narrow: (t, dim, s, l) => new Boxed(hostTensorOps.narrow(t.host, dim, s, l), t.dev),
  fullLike: (like, shape, v) => new Boxed(hostTensorOps.fullLike(like.host, shape, v), like.dev),
  mulScalar: (t, v) => new Boxed(hostTensorOps.mulScalar(t.host, v), t.dev),
};

describe('host transport (backend tensors over a typed-array group)', () => {
  const P = 2;
  function run<R>(fn: (ctx: CollectiveContext<Boxed>, p: number) => Promise<R>): Promise<R[]> {
    const groups = createInMemoryGroups(P, { timeoutMs: 2000 });
    return Promise.all(
      groups.map((group, p) =>
        fn({ group: group as never, ops: boxedOps, numProcesses: P, processIndex: p, hostTransport: true, debug: true }, p),
      ),
    );
  }
  const boxed = (values: number[], dtype: 'float32' | 'float16' | 'bfloat16' = 'float32') =>
    new Boxed(hostTensorFromNumbers(values, [values.length], dtype), 'gpu:0');

  it('[B28] gather, reduce and broadcast give backend tensors on the original device', async () => {
    const out = await run(async (ctx, p) => {
      const t = boxed([2 * p + 1, 2 * p + 2]);
      const g = await gather(t, ctx);
      const s = await reduce(t, ctx, 'sum');
      const m = await reduce(t, ctx, 'mean');
      const x = await reduce(t, ctx, 'max');
      const b = await broadcast(t, ctx);
      return { g, s, m, x, b };
    });
    for (const o of out) {
      expect(o.g.dev).toBe('gpu:0');
      expect(o.g.host.toArray()).toEqual([1, 2, 3, 4]);
      expect(o.s.host.toArray()).toEqual([4, 6]);
      expect(o.m.host.toArray()).toEqual([2, 3]);
      expect(o.x.host.toArray()).toEqual([3, 4]);
      expect(o.b.host.toArray()).toEqual([1, 2]);
      expect(o.b.dev).toBe('gpu:0');
    }
  });

  it('HostTensor leaves next to a backend travel as typed arrays and stay HostTensors', async () => {
    const groups = createInMemoryGroups(P, { timeoutMs: 2000 });
    const inputs = [HostTensor.fromNumbers([1, 2]), HostTensor.fromNumbers([3, 4])];
    const out = await Promise.all(
      groups.map(async (group, p) => {
        // No hostTransport: only HostTensors may take the typed-array route here.
        const ctx: CollectiveContext<Boxed> = { group: group as never, ops: boxedOps, numProcesses: P, processIndex: p, debug: true };
        const g = await gather({ h: inputs[p] }, ctx);
        const r = await reduce([inputs[p]], ctx, 'sum');
        const b = await broadcast(inputs[p], ctx, 1);
        return { g: g.h, r: r[0], b };
      }),
    );
    out.forEach((o, p) => {
      expect(o.g).toBeInstanceOf(HostTensor);
      expect(o.g.dtype).toBe('int64');
      expect(o.g.toArray()).toEqual([1, 2, 3, 4]);
      expect(o.r.toArray()).toEqual([4, 6]);
      expect(o.b).toBe(inputs[p]); // broadcast overwrote the HostTensor in place
      expect(o.b.toArray()).toEqual([3, 4]);
    });
  });

  it('16-bit floats travel as float32 and come back in their dtype', async () => {
    const out = await run((ctx, p) => reduce(boxed([0.5 + p, 1024 + p], 'bfloat16'), ctx, 'sum'));
    for (const o of out) {
      expect(o.host.dtype).toBe('bfloat16');
      expect(hostTensorToNumbers(o.host)).toEqual([2, 2048]);
    }
  });
});
