import { describe, expect, it } from 'vitest';
import { HostTensor } from '../../src/tensor/host-tensor.js';
import { batchSizeOf, concatBatches, defaultCollate, sliceBatch, stackTensors } from '../../src/data/collate.js';
import { TensorDataset } from '../../src/data/dataset.js';
import { decodeBatch, encodeBatch } from '../../src/data/serialize.js';

describe('defaultCollate', () => {
  it('numbers -> int64 when all integers, else float64; booleans -> bool; bigints -> int64', () => {
    const ints = defaultCollate([1, 2, 3]);
    expect([ints.dtype, ints.shape, ints.toArray()]).toEqual(['int64', [3], [1, 2, 3]]);
    const floats = defaultCollate([1, 2.5]);
    expect([floats.dtype, floats.toArray()]).toEqual(['float64', [1, 2.5]]);
    const bools = defaultCollate([true, false]);
    expect([bools.dtype, bools.toArray()]).toEqual(['bool', [1, 0]]);
    expect(defaultCollate([5n, 6n]).dtype).toBe('int64');
  });

  it('stacks tensors and typed arrays with a leading batch dimension', () => {
    const t = defaultCollate([new HostTensor(new Float32Array([1, 2]), [2], 'float32'), new HostTensor(new Float32Array([3, 4]), [2], 'float32')]);
    expect([t.dtype, t.shape, t.toArray()]).toEqual(['float32', [2, 2], [1, 2, 3, 4]]);
    const a = defaultCollate([new Int32Array([1, 2, 3]), new Int32Array([4, 5, 6])]);
    expect([a.dtype, a.shape, a.toArray()]).toEqual(['int32', [2, 3], [1, 2, 3, 4, 5, 6]]);
    expect(() => stackTensors([HostTensor.fromNumbers([1]), HostTensor.fromNumbers([1, 2])])).toThrow(/same shape/);
  });

  it('the common rows collate in one pass: { x: Float32Array, y: number } -> x float32 [n, k], y int64; HostTensor rows stack; odd rows still get the precise error', () => {
    const rows = Array.from({ length: 3 }, (_, i) => ({ x: Float32Array.from([i, i + 0.5]), y: i, w: new HostTensor(Int32Array.from([i, -i]), [1, 2], 'int32') }));
    const b = defaultCollate(rows);
    expect([b.x.dtype, b.x.shape, b.x.toArray()]).toEqual(['float32', [3, 2], [0, 0.5, 1, 1.5, 2, 2.5]]);
    expect([b.y.dtype, b.y.shape, b.y.toArray()]).toEqual(['int64', [3], [0, 1, 2]]);
    expect([b.w.dtype, b.w.shape, b.w.toArray()]).toEqual(['int32', [3, 1, 2], [0, 0, 1, -1, 2, -2]]);
    expect(b.x.data).not.toBe(rows[0].x); // a fresh buffer, never a row's
    const big = defaultCollate([-(2 ** 40), -1, 0, 2 ** 31 - 1, 2 ** 31, -(2 ** 31)]);
    expect([big.dtype, Array.from(big.data as BigInt64Array)]).toEqual(['int64', [-(2n ** 40n), -1n, 0n, 2n ** 31n - 1n, 2n ** 31n, -(2n ** 31n)]]);
    expect(() => defaultCollate([Float32Array.from([1, 2]), Float32Array.from([1])])).toThrow(/same shape/);
    expect(() => defaultCollate([Float32Array.from([1]), Float64Array.from([1])])).toThrow(/sample 1 is Float64Array/);
    expect(() => defaultCollate([new HostTensor(Float32Array.from([1, 2]), [2], 'float32'), new HostTensor(Float32Array.from([1, 2]), [1, 2], 'float32')])).toThrow(/same shape/);
  });

  it('objects and tuples field by field; strings -> string[]; other values pass through as the list', () => {
    const when = new Date(0);
    const b = defaultCollate([
      { x: [1, 2], label: 'a', meta: when },
      { x: [3, 4], label: 'b', meta: when },
    ]);
    expect(b.x.map((t) => t.toArray())).toEqual([
      [1, 3],
      [2, 4],
    ]);
    expect(b.label).toEqual(['a', 'b']);
    expect(b.meta).toEqual([when, when]);
    expect(() => defaultCollate([{ x: 1 }, { y: 1 } as unknown as { x: number }])).toThrow(/no field "x"/);
    expect(() => defaultCollate([1, 'a'] as unknown[])).toThrow(/sample 1/);
  });

  it('TensorDataset rows collate like PyTorch (a list with one stacked tensor per source tensor)', () => {
    const ds = new TensorDataset(HostTensor.fromNumbers([0, 1, 2, 3, 4, 5], [3, 2]), HostTensor.fromNumbers([7, 8, 9]));
    const batch = defaultCollate([ds.get(0), ds.get(2)]);
    expect(batch.map((t) => [t.shape, t.toArray()])).toEqual([
      [[2, 2], [0, 1, 4, 5]],
      [[2], [7, 9]],
    ]);
    expect(() => new TensorDataset(HostTensor.fromNumbers([1, 2]), HostTensor.fromNumbers([1]))).toThrow(/same first dimension/);
  });

  it('object rows are filled field by field; a field that stops fitting part-way gets the general path, its batch and its error', () => {
    const rows = (n: number, at = -1, odd: unknown = undefined, key = 'x') =>
      Array.from({ length: n }, (_, i) => {
        const r: Record<string, unknown> = { x: Float32Array.from([i, -i]), y: i };
        if (i === at) r[key] = odd;
        return r;
      });
    // Mixed ints and floats: float64, wherever the first float is.
    expect(defaultCollate(rows(4, 2, 2.5, 'y')).y).toMatchObject({ dtype: 'float64', data: Float64Array.from([0, 1, 2.5, 3]) });
    // A typed array of another length or kind part-way: the general path's error (or stack) for that field.
    expect(() => defaultCollate(rows(4, 2, Float32Array.from([1])))).toThrow(/sample 0 is HostTensor\(float32, \[2\]\) but sample 2 is HostTensor\(float32, \[1\]\)/);
    expect(() => defaultCollate(rows(4, 3, Float64Array.from([1, 2])))).toThrow(/at batch\.x, sample 0 is a Float32Array but sample 3 is Float64Array\(2\)/);
    expect(() => defaultCollate(rows(4, 1, 'one', 'y'))).toThrow(/at batch\.y, sample 0 is a number but sample 1 is string/);
    // A missing field (the first row missing it is named) before a wrong kind in the same field.
    const missing = rows(5, 3, Float64Array.from([1, 2]));
    delete missing[1].x;
    expect(() => defaultCollate(missing)).toThrow('defaultCollate: sample 1 has no field "x" (at batch) but sample 0 has.');
    expect(() => defaultCollate([...rows(2), 7] as unknown[])).toThrow(/at batch, sample 0 is an object but sample 2 is number/);
    // Each row's field is read once, also when the field falls back part-way.
    let reads = 0;
    const counted = (odd: unknown) => rows(4).map((r, i) => Object.defineProperty({ ...r }, 'y', { enumerable: true, get: () => (reads++, i === 2 ? odd : i) }));
    expect(defaultCollate(counted(2)).y).toMatchObject({ dtype: 'int64', shape: [4] });
    expect(reads).toBe(4);
    expect(() => defaultCollate(counted('two'))).toThrow(/sample 2 is string/);
    expect(reads).toBe(8);
    // Bits are copied as they are (NaN payloads included).
    const nan = new Float32Array(2);
    new Uint32Array(nan.buffer).set([0x7fc00001, 0xff800001]);
    const bits = defaultCollate([{ x: nan }, { x: nan }]).x.data as Float32Array;
    expect(Array.from(new Uint32Array(bits.buffer))).toEqual([0x7fc00001, 0xff800001, 0x7fc00001, 0xff800001]);
  });
});

describe('batch structure operations', () => {
  const batch = () => ({
    x: HostTensor.fromNumbers([0, 1, 2, 3, 4, 5], [3, 2]),
    names: ['a', 'b', 'c'],
    tag: 'const',
    pair: [HostTensor.fromNumbers([1, 2, 3]), new Float32Array([0.5, 1.5, 2.5])],
  });

  it('batchSizeOf, sliceBatch and concatBatches walk the structure; metadata passes through', () => {
    const b = batch();
    expect(batchSizeOf(b)).toBe(3);
    expect(batchSizeOf({ tag: 'x' })).toBeUndefined();
    const s = sliceBatch(b, 1, 3);
    expect(s.x.shape).toEqual([2, 2]);
    expect(s.x.toArray()).toEqual([2, 3, 4, 5]);
    expect(s.names).toEqual(['b', 'c']);
    expect(s.tag).toBe('const');
    expect([...(s.pair[1] as Float32Array)]).toEqual([1.5, 2.5]);
    const c = concatBatches([s, sliceBatch(b, 0, 1)]);
    expect(c.x.toArray()).toEqual([2, 3, 4, 5, 0, 1]);
    expect(c.names).toEqual(['b', 'c', 'a']);
    expect((c.pair[0] as HostTensor).toArray()).toEqual([2, 3, 1]);
    expect(() => concatBatches([{ tag: 'a' }, { tag: 'b' }])).toThrow(/non-tensor values/);
    expect(() => concatBatches([HostTensor.fromNumbers([1, 2], [1, 2]), HostTensor.fromNumbers([1, 2, 3], [1, 3])])).toThrow(/first dimension/);
  });

  it('encodeBatch/decodeBatch round-trip structure, dtypes, shapes and values', () => {
    const b = {
      ...batch(),
      half: new HostTensor(new Uint16Array([1, 2]), [2], 'bfloat16'),
      big: new HostTensor(new BigInt64Array([-5n, 2n ** 40n]), [2], 'int64'),
      flags: new HostTensor(new Uint8Array([1, 0, 1]), [3], 'bool'),
      misc: [null, undefined, NaN, -Infinity, 12n, true, { 'a.b': 1 }],
    };
    const bytes = encodeBatch(b);
    const d = decodeBatch<typeof b>(bytes);
    expect(d.x.shape).toEqual([3, 2]);
    expect(d.x.dtype).toBe('int64');
    expect(d.x.toArray()).toEqual([0, 1, 2, 3, 4, 5]);
    expect(d.names).toEqual(['a', 'b', 'c']);
    expect(d.tag).toBe('const');
    expect(d.pair[1]).toBeInstanceOf(Float32Array);
    expect([...(d.pair[1] as Float32Array)]).toEqual([0.5, 1.5, 2.5]);
    expect([d.half.dtype, [...(d.half.data as Uint16Array)]]).toEqual(['bfloat16', [1, 2]]);
    expect([...(d.big.data as BigInt64Array)]).toEqual([-5n, 2n ** 40n]);
    expect([d.flags.dtype, d.flags.toArray()]).toEqual(['bool', [1, 0, 1]]);
    expect(d.misc).toEqual([null, undefined, NaN, -Infinity, 12n, true, { 'a.b': 1 }]);
    expect(() => encodeBatch({ when: new Date() })).toThrow(/batch\.when/);
  });
});
