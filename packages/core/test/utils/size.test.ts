import { describe, expect, it } from 'vitest';
import { convertFileSizeToInt, dtypeByteSize, parseSize } from '../../src/utils/size.js';

describe('convertFileSizeToInt', () => {
  it('[B52] converts sizes with decimal and binary units', () => {
    expect(convertFileSizeToInt('0MB')).toBe(0);
    expect(convertFileSizeToInt('100MB')).toBe(100 * 10 ** 6);
    expect(convertFileSizeToInt('2GiB')).toBe(2 * 2 ** 30);
    expect(convertFileSizeToInt('512KiB')).toBe(512 * 2 ** 10);
    expect(convertFileSizeToInt('1.5GB')).toBe(1.5 * 10 ** 9);
    expect(convertFileSizeToInt('100KB')).toBe(100 * 10 ** 3);
    expect(convertFileSizeToInt(500)).toBe(500);
  });

  it('[B52] rejects malformed and negative sizes', () => {
    for (const bad of ['5MBB', '5k0MB', '-1GB']) {
      expect(() => convertFileSizeToInt(bad), bad).toThrow(RangeError);
    }
    expect(() => convertFileSizeToInt('5MBB')).toThrow(
      `size "5MBB" is not in a valid format. Use an integer for bytes, or a string with a unit (like '5.0GB').`,
    );
  });

  it('is case-insensitive, reads a lower-case b as bits, truncates fractions', () => {
    expect(convertFileSizeToInt('1mib')).toBe(1048576);
    expect(convertFileSizeToInt('8Gb')).toBe(10 ** 9);
    expect(convertFileSizeToInt('1.0000005KB')).toBe(1000);
    expect(parseSize('10GB')).toBe(10 ** 10);
  });

  it('rejects strings without a unit, negative or fractional integers', () => {
    expect(() => convertFileSizeToInt('100')).toThrow(RangeError);
    expect(() => convertFileSizeToInt(-1)).toThrow(RangeError);
    expect(() => convertFileSizeToInt(1.5)).toThrow(RangeError);
  });
});

describe('dtypeByteSize', () => {
  it('[B52] bool 1/8, fp16/bf16 2, fp32 4, fp64 8, every float8 variant 1', () => {
    expect(dtypeByteSize('bool')).toBe(1 / 8);
    expect(dtypeByteSize('float16')).toBe(2);
    expect(dtypeByteSize('bfloat16')).toBe(2);
    expect(dtypeByteSize('float32')).toBe(4);
    expect(dtypeByteSize('float64')).toBe(8);
    for (const name of ['float8_e4m3fn', 'float8_e5m2', 'float8_e4m3fnuz', 'float8_e5m2fnuz', 'float8_e8m0fnu']) {
      expect(dtypeByteSize(name), name).toBe(1);
    }
  });

  it('accepts torch. prefixes, aliases and sub-byte custom dtypes', () => {
    expect(dtypeByteSize('torch.int64')).toBe(8);
    expect(dtypeByteSize('half')).toBe(2);
    expect(dtypeByteSize('uint8')).toBe(1);
    expect(dtypeByteSize('int4')).toBe(0.5);
    expect(dtypeByteSize('int2')).toBe(0.25);
    expect(dtypeByteSize('fp8')).toBe(1);
    expect(() => dtypeByteSize('string')).toThrow(/"string" is not a valid dtype/);
  });
});
