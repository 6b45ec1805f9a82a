/** BatchSampler over an in-order SequentialSampler counts its batches out instead of pulling indices one by one: same batches. */
import { describe, expect, it } from 'vitest';
import { BatchSampler, SequentialSampler } from '../../src/data/sampler.js';
import { range } from './helpers.js';

describe('BatchSampler over a SequentialSampler', () => {
  /** A SequentialSampler subclass takes the general path (index by index through the sampler). */
  class Counting extends SequentialSampler {}
  it('counts out the same batches as pulling indices one by one, from any start, with and without dropLast', () => {
    for (const n of [0, 1, 7, 8, 9]) {
      for (const bs of [1, 3, 4]) {
        for (const dropLast of [false, true]) {
          for (const samples of [0, 1, 3, 4, 8, 12]) {
            const fast = [...new BatchSampler(new SequentialSampler(n), bs, dropLast).iterateFrom({ samples })];
            const slow = [...new BatchSampler(new Counting(n), bs, dropLast).iterateFrom({ samples })];
            expect(fast).toEqual(slow);
            expect(fast.flat()).toEqual(range(n).slice(samples, dropLast ? samples + Math.floor(Math.max(0, n - samples) / bs) * bs : n));
          }
          const batches = [...new BatchSampler(new SequentialSampler(n), bs, dropLast).iterateFrom({ batches: 1 })];
          expect(batches).toEqual([...new BatchSampler(new Counting(n), bs, dropLast).iterateFrom({ batches: 1 })]);
        }
      }
    }
  });
});
