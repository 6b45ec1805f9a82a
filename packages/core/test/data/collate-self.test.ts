import { describe, it, expect, expectTypeOf } from 'vitest';
import { collateBatch, defaultCollate, HostTensor, type SelfCollating } from '../../src/index.js';

/** A backend-like tensor class that batches itself (as libtorch's Tensor does). */
class FakeTensor implements SelfCollating<FakeTensor> {
  constructor(readonly rows: number[][]) {}
  [collateBatch](samples: readonly unknown[], where: string): FakeTensor {
    if (!samples.every((s) => s instanceof FakeTensor)) throw new TypeError(`mixed samples at ${where}`);
    return new FakeTensor((samples as FakeTensor[]).map((s) => s.rows.flat()));
  }
}

describe('defaultCollate of values that batch themselves (collateBatch)', () => {
  it('hands the samples to the first sample\'s collateBatch method, at any depth', () => {
    const out = defaultCollate([
      { t: new FakeTensor([[1, 2]]), n: 1 },
      { t: new FakeTensor([[3, 4]]), n: 2 },
    ]);
    expect(out.t).toBeInstanceOf(FakeTensor);
    expect(out.t.rows).toEqual([
      [1, 2],
      [3, 4],
    ]);
    expect(out.n).toBeInstanceOf(HostTensor);
    expectTypeOf(out.t).toEqualTypeOf<FakeTensor>();
    expect(() => defaultCollate([[new FakeTensor([[1]])], [{}]])).toThrow('mixed samples at batch[0]');
  });

  it('other class instances still pass through as the list of samples', () => {
    class Other {}
    const a = new Other();
    const b = new Other();
    expect(defaultCollate([a, b])).toEqual([a, b]);
  });
});
