import { describe, it, expect } from 'vitest';
import { HostTensor } from '../../src/tensor/host-tensor.js';
import { histogramOf, isPng, normalizeImage, sanitizeLogValues } from '../../src/tracking/values.js';

describe('sanitizeLogValues', () => {
  it('keeps finite numbers, strings, booleans and numeric groups; lists the rest', () => {
    const { values, problems } = sanitizeLogValues({
      loss: 0.25,
      nan: NaN,
      inf: -Infinity,
      note: 'hello',
      flag: true,
      big: 5n,
      t: HostTensor.fromNumbers([1.5], [1]),
      group: { train: 1, val: NaN, bad: 'x' },
      allBad: { a: NaN },
      arr: [1, 2],
      nul: null,
      obj: new Map(),
      und: undefined,
    });
    expect(values).toEqual({ loss: 0.25, note: 'hello', flag: true, big: 5, t: 1.5, group: { train: 1 } });
    expect(problems).toEqual([
      { key: 'nan', kind: 'non-finite', value: 'NaN' },
      { key: 'inf', kind: 'non-finite', value: '-Infinity' },
      { key: 'group/val', kind: 'non-finite', value: 'NaN' },
      { key: 'group/bad', kind: 'non-numeric', value: 'a string' },
      { key: 'allBad/a', kind: 'non-finite', value: 'NaN' },
      { key: 'arr', kind: 'non-numeric', value: 'an array of 2' },
      { key: 'nul', kind: 'non-numeric', value: 'null' },
      { key: 'obj', kind: 'non-numeric', value: 'an object' },
      { key: 'und', kind: 'non-numeric', value: 'undefined' },
    ]);
  });
});

describe('normalizeImage', () => {
  it('accepts PNG bytes, raw pixels with inferred channels, and HWC tensors (floats scaled)', () => {
    const png = new Uint8Array([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0]);
    expect(isPng(png)).toBe(true);
    expect(normalizeImage('a', png)).toEqual({ format: 'png', data: png });
    const raw = normalizeImage('b', { data: [0, 10, 20, 300, -5, 60], width: 2, height: 1 });
    expect(raw).toEqual({ format: 'raw', width: 2, height: 1, channels: 3, data: new Uint8Array([0, 10, 20, 255, 0, 60]) });
    const t = new HostTensor(new Float32Array([0, 0.5, 1, 0.25]), [2, 2], 'float32');
    expect(normalizeImage('c', t)).toEqual({ format: 'raw', width: 2, height: 2, channels: 1, data: new Uint8Array([0, 128, 255, 64]) });
  });

  it('rejects what it cannot read with the key and the fix', () => {
    expect(() => normalizeImage('x', new Uint8Array([1, 2, 3]))).toThrow(/image "x" is a Uint8Array without the PNG signature/);
    expect(() => normalizeImage('y', { data: new Uint8Array(5), width: 2, height: 1 })).toThrow(/image "y" has 5 values for 2x1/);
    expect(() => normalizeImage('z', new HostTensor(new Uint8Array(8), [2, 2, 2], 'uint8'))).toThrow(/shape \[2, 2, 2\]/);
  });
});

describe('histogramOf', () => {
  it('bins into equal-width buckets, right edges inclusive, with exact totals', () => {
    const xs = [0, 1, 1, 2, 3, 4, NaN];
    const h = histogramOf(xs, 4);
    expect(h.min).toBe(0);
    expect(h.max).toBe(4);
    expect(h.num).toBe(6);
    expect(h.sum).toBe(11);
    expect(h.sumSquares).toBe(31);
    expect(h.bucketLimits).toEqual([1, 2, 3, 4]);
    // (-, 1] holds 0, 1, 1; (1, 2] holds 2; (2, 3] holds 3; (3, 4] holds 4.
    expect(h.bucketCounts).toEqual([3, 1, 1, 1]);
  });

  it('agrees with a direct count over many values and handles constant and empty input', () => {
    const xs = Array.from({ length: 1000 }, (_, i) => Math.sin(i) * 3);
    const h = histogramOf(Float64Array.from(xs), 7);
    const direct = h.bucketLimits.map((hi, i) => xs.filter((x) => x <= hi && (i === 0 || x > h.bucketLimits[i - 1])).length);
    expect(h.bucketCounts).toEqual(direct);
    expect(h.bucketCounts.reduce((a, b) => a + b, 0)).toBe(1000);
    expect(histogramOf([2, 2, 2])).toEqual({ min: 2, max: 2, num: 3, sum: 6, sumSquares: 12, bucketLimits: [2], bucketCounts: [3] });
    expect(histogramOf([]).num).toBe(0);
    expect(() => histogramOf([1], 0)).toThrow(/bins must be a whole number >= 1, got 0/);
  });
});
