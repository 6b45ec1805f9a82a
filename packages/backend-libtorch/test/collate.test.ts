import { describe, it, expect, expectTypeOf } from 'vitest';
import { DataLoader, defaultCollate, type Dataset } from '@accelerate/core';
import * as torch from '../src/index.js';

/** A map-style dataset whose samples are libtorch Tensors (as a user's Dataset returns them). */
class TensorSamples implements Dataset<{ x: torch.Tensor; y: torch.Tensor; pair: [torch.Tensor, number] }> {
  readonly length = 5;
  get(i: number) {
    return {
      x: torch.full([2, 3], i),
      y: torch.tensor([i], { dtype: 'int64' }).squeeze(),
      pair: [torch.tensor([i, i + 10]), i] as [torch.Tensor, number],
    };
  }
}

describe('default collate of libtorch Tensors', () => {
  it('stacks Tensor samples into [B, ...] Tensors, inside dicts and tuples too', async () => {
    const loader = new DataLoader(new TensorSamples(), { batchSize: 2 });
    const batches = [];
    for await (const b of loader) batches.push(b);
    expect(batches).toHaveLength(3);
    const [first, , last] = batches;
    expect(first.x).toBeInstanceOf(torch.Tensor);
    expect(first.x.shape).toEqual([2, 2, 3]);
    expect(first.x.tolist()).toEqual([
      [[0, 0, 0], [0, 0, 0]],
      [[1, 1, 1], [1, 1, 1]],
    ]);
    expect(first.y.shape).toEqual([2]); // 0-d samples -> [B]
    expect(first.y.dtype).toBe('int64');
    expect(first.pair[0]).toBeInstanceOf(torch.Tensor);
    expect(first.pair[0].tolist()).toEqual([[0, 10], [1, 11]]);
    expect(first.pair[1].data).toEqual(new BigInt64Array([0n, 1n])); // numbers still become a HostTensor
    expect(last.x.shape).toEqual([1, 2, 3]); // the remainder
    expectTypeOf(first.x).toEqualTypeOf<torch.Tensor>();
  });

  it('a bare Tensor sample becomes one Tensor; mismatched samples get an error naming the place', () => {
    const batch = defaultCollate([torch.ones([3]), torch.zeros([3])]);
    expect(batch).toBeInstanceOf(torch.Tensor);
    expect(batch.tolist()).toEqual([[1, 1, 1], [0, 0, 0]]);
    expect(() => defaultCollate([{ a: torch.ones([3]) }, { a: torch.ones([4]) }])).toThrow(/at batch\.a, .*cannot be stacked.*Pad samples/);
    expect(() => defaultCollate([torch.ones([3]), 1 as unknown as torch.Tensor])).toThrow(/sample 1 is number/);
  });
});
