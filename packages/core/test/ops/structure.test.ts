import { describe, expect, it } from 'vitest';
import { HostTensor } from '../../src/tensor/host-tensor.js';
import { hostTensorFromNumbers, hostTensorOps, type TensorOps } from '../../src/ops/tensor-ops.js';
import {
  concatenate,
  convertToFp32,
  findBatchSize,
  findDevice,
  ignorantFindBatchSize,
  isHostTensor,
  listify,
  padInputTensors,
  recursivelyApply,
  sendToDevice,
  sliceTensors,
} from '../../src/ops/structure.js';

const f32 = (values: number[], shape: number[]) => hostTensorFromNumbers(values, shape, 'float32');
const range = (n: number, shape: number[] = [n]) => f32(Array.from({ length: n }, (_, i) => i), shape);

/** A fake device backend: tensors are boxes around HostTensors that remember a device. */
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
  toDevice: (t, device) => (t.dev === device ? t : new Boxed(t.host, device)),
  fromHost: (h, device = 'cpu') => new Boxed(h, device),
  toHost: (t) => t.host,
  cat: (ts, dim) => new Boxed(hostTensorOps.cat(ts.map((t) => t.host), dim), ts[0].dev),
  narrow: (t, dim, s, l) => new Boxed(hostTensorOps.narrow(t.host, dim, s, l), t.dev),
  fullLike: (like, shape, v) => new Boxed(hostTensorOps.fullLike(like.host, shape, v), like.dev),
  mulScalar: (t, v) => new Boxed(hostTensorOps.mulScalar(t.host, v), t.dev),
};

describe('recursivelyApply', () => {
  it('[B31] errorOnOtherType names the leaf type, the function and the test', () => {
    function toTensor(t: HostTensor) {
      return t;
    }
    const data = [HostTensor.fromNumbers([1], []), 1];
    expect(() => recursivelyApply(toTensor, data, { testType: isHostTensor, errorOnOtherType: true })).toThrow(
      new TypeError(
        'Unsupported types (number) passed to `toTensor`. Only nested arrays/objects/Maps of objects that are valid for `isHostTensor` should be passed.',
      ),
    );
    expect(() => recursivelyApply(toTensor, [{ a: 'x' }], { testType: isHostTensor, errorOnOtherType: true })).toThrow(
      /Unsupported types \(string\) passed to `toTensor`/,
    );
  });

  it('maps matching leaves, keeps others, and keeps arrays, plain objects, null-prototype objects and Maps', () => {
    const t = range(3);
    const bare = Object.create(null) as Record<string, unknown>;
    bare.t = t;
    const data = { a: t, b: [t, 'keep', 5], c: new Map<string, unknown>([['m', t]]), d: bare };
    const out = recursivelyApply((x: HostTensor) => x.shape.length, data, { testType: isHostTensor });
    expect(out.a).toBe(1);
    expect(out.b).toEqual([1, 'keep', 5]);
    expect(out.c).toBeInstanceOf(Map);
    expect(out.c.get('m')).toBe(1);
    expect(Object.getPrototypeOf(out.d)).toBeNull();
    expect((out.d as Record<string, unknown>).t).toBe(1);
    // A new structure: the input is untouched.
    expect(data.b[0]).toBe(t);
  });
});

describe('sendToDevice', () => {
  it('[B32] keeps array/object/Map kinds and leaves non-tensors untouched', () => {
    const t = new Boxed(range(10, [5, 2]), 'cpu');
    const out = sendToDevice([t, [t, t], 1] as const, 'cuda:0', boxedOps);
    expect(Array.isArray(out)).toBe(true);
    expect(out[0].dev).toBe('cuda:0');
    expect(out[0].host).toBe(t.host);
    expect(Array.isArray(out[1])).toBe(true);
    expect(out[1].map((x) => x.dev)).toEqual(['cuda:0', 'cuda:0']);
    expect(out[2]).toBe(1);

    const dict = sendToDevice({ a: t, b: [t, t], c: 1 }, 'cuda:0', boxedOps);
    expect(dict.a.dev).toBe('cuda:0');
    expect(dict.b[1].dev).toBe('cuda:0');
    expect(dict.c).toBe(1);

    const map = sendToDevice(new Map([['a', t]]), 'cuda:0', boxedOps);
    expect(map).toBeInstanceOf(Map);
    expect(map.get('a')!.dev).toBe('cuda:0');
  });

  it('skips the values under skipKeys at every depth', () => {
    const t = new Boxed(range(2), 'cpu');
    const out = sendToDevice({ a: t, keep: t, nested: { keep: t, b: t } }, 'cuda:0', boxedOps, { skipKeys: 'keep' });
    expect(out.a.dev).toBe('cuda:0');
    expect(out.keep).toBe(t);
    expect(out.nested.keep).toBe(t);
    expect(out.nested.b.dev).toBe('cuda:0');
  });

  it('turns HostTensors into backend tensors and calls .to() on other movable objects', () => {
    const h = range(4);
    const moved: string[] = [];
    const movable = { to: (d: string) => (moved.push(d), 'moved') };
    class Movable {
      to(d: string) {
        moved.push(d);
        return 'moved-instance';
      }
    }
    const out = sendToDevice({ h, m: new Movable(), plain: movable }, 'cuda:1', boxedOps);
    expect(out.h).toBeInstanceOf(Boxed);
    expect((out.h as unknown as Boxed).dev).toBe('cuda:1');
    expect(out.m).toBe('moved-instance');
    // A plain object is a mapping, not a movable leaf: its `to` function is kept as a value.
    expect(typeof out.plain.to).toBe('function');
    expect(moved).toEqual(['cuda:1']);
  });
});

describe('findBatchSize / findDevice', () => {
  it('returns dim 0 of the first leaf', () => {
    expect(findBatchSize({ x: range(12, [4, 3]), y: range(4) })).toBe(4);
    expect(findBatchSize([[range(6, [6])]])).toBe(6);
    expect(findBatchSize(new Map([['x', range(2)]]))).toBe(2);
  });

  it('rejects empty containers and non-tensors', () => {
    expect(() => findBatchSize([])).toThrow(RangeError);
    expect(() => findBatchSize({})).toThrow(/empty object/);
    expect(() => findBatchSize([1, 2])).toThrow(new TypeError('findBatchSize: can only find the batch size of tensors but got number.'));
    expect(ignorantFindBatchSize([])).toBeUndefined();
    expect(ignorantFindBatchSize(['a'])).toBeUndefined();
  });

  it('[B32] findDevice returns the first tensor device, or undefined without tensors', () => {
    expect(findDevice([1, 'a', range(3)])).toBe('cpu');
    expect(findDevice({ a: 1, b: range(3) })).toBe('cpu');
    expect(findDevice([1, 'a'])).toBeUndefined();
    expect(findDevice([1, { x: new Boxed(range(1), 'cuda:3') }], boxedOps)).toBe('cuda:3');
  });
});

describe('concatenate / listify / sliceTensors', () => {
  it('[B32] concatenates two 2x3 batches into 4x3, and returns a single item as is', () => {
    const a = range(6, [2, 3]);
    const b = f32([6, 7, 8, 9, 10, 11], [2, 3]);
    const out = concatenate([a, b]);
    expect(out.shape).toEqual([4, 3]);
    expect(out.toArray()).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11]);
    expect(concatenate([a])).not.toBe(a); // a tensor is concatenated (copied) even alone
    expect(concatenate(['a string'])).toBe('a string');
    expect(() => concatenate(['a', 'b'])).toThrow(/can only concatenate tensors but got string/);
  });

  it('concatenates nested structures key by key', () => {
    const out = concatenate([
      { x: range(2), y: [range(1)] },
      { x: f32([5, 6], [2]), y: [f32([9], [1])] },
    ]);
    expect(out.x.toArray()).toEqual([0, 1, 5, 6]);
    expect(out.y[0].toArray()).toEqual([0, 9]);
  });

  it('listify turns tensors into nested number arrays', () => {
    expect(listify(HostTensor.fromNumbers([1, 2, 3, 4, 5]))).toEqual([1, 2, 3, 4, 5]);
    expect(listify(HostTensor.fromNumbers([1, 2, 3, 4, 5, 6, 7, 8, 9, 10], [2, 5]))).toEqual([
      [1, 2, 3, 4, 5],
      [6, 7, 8, 9, 10],
    ]);
    const cube = HostTensor.fromNumbers(Array.from({ length: 20 }, (_, i) => i + 1), [2, 2, 5]);
    expect(listify(cube)).toEqual([
      [
        [1, 2, 3, 4, 5],
        [6, 7, 8, 9, 10],
      ],
      [
        [11, 12, 13, 14, 15],
        [16, 17, 18, 19, 20],
      ],
    ]);
    expect(listify({ s: HostTensor.fromNumbers([7], []), b: hostTensorFromNumbers([0.5, 2], [2], 'bfloat16'), k: 'x' })).toEqual({
      s: 7,
      b: [0.5, 2],
      k: 'x',
    });
  });

  it('sliceTensors takes rows [start, end) with Python slice rules', () => {
    const t = range(10, [5, 2]);
    const out = sliceTensors({ t, n: 3 }, 1, 3);
    expect(out.t.shape).toEqual([2, 2]);
    expect(out.t.toArray()).toEqual([2, 3, 4, 5]);
    expect(out.n).toBe(3);
    expect(sliceTensors(t, -2, undefined).toArray()).toEqual([6, 7, 8, 9]);
    expect(sliceTensors(t, 4, 100).shape).toEqual([1, 2]);
  });
});

describe('padInputTensors', () => {
  it.each([
    [2, 1, [4], [2, 4]],
    [2, 3, [4], [4, 4]],
    [3, 4, [4, 4], [6, 4, 4]],
    [4, 3, [4, 4], [4, 4, 4]],
    [6, 4, [4, 4], [6, 4, 4]],
    [6, 1, [4, 4], [6, 4, 4]],
    [6, 2, [4, 4], [6, 4, 4]],
    [6, 61, [4, 4], [66, 4, 4]],
  ])('[B32] %i processes, batch size %i -> shape %j', (P, bs, rest, expected) => {
    const n = bs * (rest as number[]).reduce((a, b) => a * b, 1);
    const batch = range(n, [bs, ...(rest as number[])]);
    const out = padInputTensors(batch, bs, P);
    expect(out.shape).toEqual(expected);
    // Original rows first, zero rows after.
    const values = out.toArray();
    expect(values.slice(0, n)).toEqual(batch.toArray());
    expect(values.slice(n).every((v) => v === 0)).toBe(true);
  });

  it('leaves a batch that already splits evenly alone', () => {
    const batch = range(8, [8]);
    expect(padInputTensors(batch, 8, 2)).toBe(batch);
  });
});

describe('convertToFp32', () => {
  it('casts float16/bfloat16 leaves only', () => {
    const half = hostTensorFromNumbers([1.5, 2], [2], 'float16');
    const ints = HostTensor.fromNumbers([1, 2]);
    const out = convertToFp32({ half, ints, s: 'x' });
    expect(out.half.dtype).toBe('float32');
    expect(out.half.toArray()).toEqual([1.5, 2]);
    expect(out.ints).toBe(ints);
    expect(out.s).toBe('x');
  });

  it('falls back to a host round trip when the backend has no cast', () => {
    const b = new Boxed(hostTensorFromNumbers([0.25], [1], 'bfloat16'), 'cuda:0');
    const out = convertToFp32([b], boxedOps)[0] as Boxed;
    expect(out.dev).toBe('cuda:0');
    expect(out.host.dtype).toBe('float32');
    expect(out.host.toArray()).toEqual([0.25]);
  });
});
