import { describe, expect, it } from 'vitest';
import { findExecutableBatchSize, shouldReduceBatchSize } from '../../src/utils/memory.js';

const fakeOom = () => {
  throw new Error('CUDA out of memory.');
};

// The sequence Accelerate's test expects: int(bs * 0.9) from 128 down to 8.
const FROM_128 = [128, 115, 103, 92, 82, 73, 65, 58, 52, 46, 41, 36, 32, 28, 25, 22, 19, 17, 15, 13, 11, 9, 8];

describe('findExecutableBatchSize', () => {
  it('[B54] retries 128, 115, 103, ... 9, 8 until the function succeeds', () => {
    const tried: number[] = [];
    const train = findExecutableBatchSize(
      (batchSize: number) => {
        tried.push(batchSize);
        if (batchSize !== 8) fakeOom();
      },
      { startingBatchSize: 128 },
    );
    train();
    expect(tried).toEqual(FROM_128);
  });

  it('[B54] passes the other arguments through and returns the result', () => {
    const tried: number[] = [];
    const train = findExecutableBatchSize((batchSize: number, arg1: string) => {
      tried.push(batchSize);
      if (batchSize !== 8) fakeOom();
      return [batchSize, arg1] as const;
    });
    expect(train('hello')).toEqual([8, 'hello']);
    expect(tried).toEqual(FROM_128);
  });

  it('[B54] async functions are retried the same way', async () => {
    const tried: number[] = [];
    const train = findExecutableBatchSize(async (batchSize: number) => {
      tried.push(batchSize);
      await Promise.resolve();
      if (batchSize !== 8) fakeOom();
      return batchSize;
    });
    await expect(train()).resolves.toBe(8);
    expect(tried).toEqual(FROM_128);
  });

  it('[B54] starting at 0 -> "No executable batch size found, reached zero."', () => {
    const train = findExecutableBatchSize((_batchSize: number) => undefined, { startingBatchSize: 0 });
    expect(() => train()).toThrow(new Error('No executable batch size found, reached zero.'));
  });

  it('[B54] always failing from 16 tries 16,14,12,10,9,8,7,6,5,4,3,2,1 then reaches zero', async () => {
    const tried: number[] = [];
    const train = findExecutableBatchSize(
      (batchSize: number) => {
        tried.push(batchSize);
        fakeOom();
      },
      { startingBatchSize: 16 },
    );
    expect(() => train()).toThrow('No executable batch size found, reached zero.');
    expect(tried).toEqual([16, 14, 12, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1]);

    const triedAsync: number[] = [];
    const trainAsync = findExecutableBatchSize(
      async (batchSize: number) => {
        triedAsync.push(batchSize);
        fakeOom();
      },
      { startingBatchSize: 16 },
    );
    await expect(trainAsync()).rejects.toThrow('No executable batch size found, reached zero.');
    expect(triedAsync).toEqual(tried);
  });

  it('[B54] calling the wrapper with the batch size too is a TypeError', () => {
    const train = findExecutableBatchSize((batchSize: number, arg1: string, arg2: string) => [batchSize, arg1, arg2]);
    expect(() => (train as (...a: unknown[]) => unknown)(128, 'hello', 'world')).toThrow(TypeError);
    expect(() => (train as (...a: unknown[]) => unknown)(128, 'hello', 'world')).toThrow(
      /Batch size was passed into `.*` as the first argument when called\. .*\(hello, world\)`/,
    );
  });

  it('re-raises errors that are not out-of-memory', () => {
    const train = findExecutableBatchSize((_bs: number) => {
      throw new RangeError('Oops, we had an error!');
    });
    expect(() => train()).toThrow(new RangeError('Oops, we had an error!'));
  });

  it('uses a custom reducer, OOM predicate and cache clearer, and keeps the working size for later calls', () => {
    const tried: number[] = [];
    let cleared = 0;
    class DeviceOom extends Error {}
    const train = findExecutableBatchSize(
      (batchSize: number) => {
        tried.push(batchSize);
        if (batchSize > 20) throw new DeviceOom('no room');
        return batchSize;
      },
      {
        startingBatchSize: 100,
        reduceBatchSizeFn: (bs) => Math.floor(bs / 2),
        isOutOfMemoryError: (e) => e instanceof DeviceOom,
        clearCache: () => cleared++,
      },
    );
    expect(train()).toBe(12);
    expect(tried).toEqual([100, 50, 25, 12]);
    expect(cleared).toBe(4); // once before the first try, then after each of the 3 failures
    expect(train()).toBe(12);
    expect(tried).toEqual([100, 50, 25, 12, 12]);
  });
});

describe('shouldReduceBatchSize', () => {
  it("matches Accelerate's out-of-memory messages only", () => {
    expect(shouldReduceBatchSize(new Error('CUDA out of memory. Tried to allocate'))).toBe(true);
    expect(shouldReduceBatchSize(new Error('cuDNN error: CUDNN_STATUS_NOT_SUPPORTED. This error'))).toBe(true);
    expect(shouldReduceBatchSize(new Error("[enforce fail] DefaultCPUAllocator: can't allocate memory: you tried"))).toBe(true);
    expect(shouldReduceBatchSize(new Error('FATAL ERROR :: MODULE:PT_DEVMEM Allocation failed'))).toBe(true);
    expect(shouldReduceBatchSize(new Error('out of memory'))).toBe(false);
    expect(shouldReduceBatchSize('CUDA out of memory.')).toBe(false);
  });
});
