import { describe, expect, it } from 'vitest';
import { HostTensor } from '../../src/tensor/host-tensor.js';
import {
  hostTensorFromNumbers,
  hostTensorOps as ops,
  hostTensorToNumbers,
} from '../../src/ops/tensor-ops.js';
import {
  bfloat16BitsToNumber,
  float16BitsToNumber,
  numberToBfloat16Bits,
  numberToFloat16Bits,
} from '../../src/ops/float16.js';

const f32 = (values: number[], shape: number[]) => hostTensorFromNumbers(values, shape, 'float32');

describe('float16 / bfloat16 bit conversions', () => {
  it('encodes known half-precision values', () => {
    expect(numberToFloat16Bits(1)).toBe(0x3c00);
    expect(numberToFloat16Bits(-2)).toBe(0xc000);
    expect(numberToFloat16Bits(65504)).toBe(0x7bff);
    expect(numberToFloat16Bits(65520)).toBe(0x7c00); // rounds to +inf
    expect(numberToFloat16Bits(2 ** -24)).toBe(0x0001); // smallest subnormal
    expect(numberToFloat16Bits(2 ** -26)).toBe(0x0000); // below half of it -> 0
    expect(numberToFloat16Bits(Number.NaN) & 0x7c00).toBe(0x7c00);
    // 1 + 2^-11 is exactly halfway between 1 and the next half: ties to even (1).
    expect(numberToFloat16Bits(1 + 2 ** -11)).toBe(0x3c00);
    expect(numberToFloat16Bits(1 + 3 * 2 ** -11)).toBe(0x3c02);
  });

  it('decodes half-precision bits', () => {
    expect(float16BitsToNumber(0x3c00)).toBe(1);
    expect(float16BitsToNumber(0x3555)).toBeCloseTo(0.333251953125, 12);
    expect(float16BitsToNumber(0x0001)).toBe(2 ** -24);
    expect(float16BitsToNumber(0xfc00)).toBe(Number.NEGATIVE_INFINITY);
    expect(float16BitsToNumber(0x7e00)).toBeNaN();
  });

  it('round-trips bfloat16', () => {
    expect(numberToBfloat16Bits(1)).toBe(0x3f80);
    expect(bfloat16BitsToNumber(0x3f80)).toBe(1);
    expect(bfloat16BitsToNumber(numberToBfloat16Bits(3.140625))).toBe(3.140625);
    // 1 + 2^-8 is halfway between 1 and 1 + 2^-7: ties to even.
    expect(bfloat16BitsToNumber(numberToBfloat16Bits(1 + 2 ** -8))).toBe(1);
  });
});

describe('hostTensorOps', () => {
  it('cats along dim 0 and dim 1', () => {
    const a = f32([1, 2, 3, 4, 5, 6], [2, 3]);
    const b = f32([7, 8, 9], [1, 3]);
    const c0 = ops.cat([a, b], 0);
    expect(c0.shape).toEqual([3, 3]);
    expect(c0.toArray()).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9]);
    const d = f32([10, 20], [2, 1]);
    const c1 = ops.cat([a, d], -1);
    expect(c1.shape).toEqual([2, 4]);
    expect(c1.toArray()).toEqual([1, 2, 3, 10, 4, 5, 6, 20]);
  });

  it('rejects cat of different dtypes or mismatched shapes with the index named', () => {
    const a = f32([1, 2], [2]);
    expect(() => ops.cat([a, HostTensor.fromNumbers([1])], 0)).toThrow(/tensor 1 has dtype int64/);
    expect(() => ops.cat([f32([1, 2], [1, 2]), f32([1, 2, 3], [1, 3])], 0)).toThrow(/tensor 1 has shape \[1, 3\]/);
  });

  it('narrows along a dimension', () => {
    const a = f32([0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11], [3, 4]);
    expect(ops.narrow(a, 0, 1, 2).toArray()).toEqual([4, 5, 6, 7, 8, 9, 10, 11]);
    const cols = ops.narrow(a, 1, 1, 2);
    expect(cols.shape).toEqual([3, 2]);
    expect(cols.toArray()).toEqual([1, 2, 5, 6, 9, 10]);
    expect(() => ops.narrow(a, 0, 2, 2)).toThrow(/do not fit dim 0 of size 3/);
  });

  it('fullLike keeps the dtype of the model tensor', () => {
    const like = HostTensor.fromNumbers([1, 2, 3]);
    const full = ops.fullLike(like, [2, 2], 7);
    expect(full.dtype).toBe('int64');
    expect(full.shape).toEqual([2, 2]);
    expect(Array.from(full.data as BigInt64Array)).toEqual([7n, 7n, 7n, 7n]);
  });

  it('mulScalar follows PyTorch dtype promotion', () => {
    const ints = HostTensor.fromNumbers([1, 2, 3]);
    const doubled = ops.mulScalar(ints, 2);
    expect(doubled.dtype).toBe('int64');
    expect(doubled.toArray()).toEqual([2, 4, 6]);
    const halved = ops.mulScalar(ints, 0.5);
    expect(halved.dtype).toBe('float32');
    expect(halved.toArray()).toEqual([0.5, 1, 1.5]);
    const half = hostTensorFromNumbers([1.5, -2], [2], 'float16');
    const h3 = ops.mulScalar(half, 3);
    expect(h3.dtype).toBe('float16');
    expect(hostTensorToNumbers(h3)).toEqual([4.5, -6]);
  });

  it('cast converts values and copies on same-dtype casts', () => {
    const bf = hostTensorFromNumbers([1, 2.5], [2], 'bfloat16');
    const f = ops.cast(bf, 'float32');
    expect(f.dtype).toBe('float32');
    expect(f.toArray()).toEqual([1, 2.5]);
    const same = ops.cast(f, 'float32');
    expect(same).not.toBe(f);
    expect(same.data).not.toBe(f.data);
    expect(ops.cast(f32([2.9, -2.9], [2]), 'int32').toArray()).toEqual([2, -2]);
  });

  it('lives on cpu and refuses other devices with a fix', () => {
    const t = f32([1], [1]);
    expect(ops.device(t)).toBe('cpu');
    expect(ops.toDevice(t, 'cpu')).toBe(t);
    expect(() => ops.toDevice(t, 'cuda:0')).toThrow(/cannot be placed on device 'cuda:0'.*Pass a backend's tensor ops/);
  });
});
