import { describe, expect, it } from 'vitest';
import { HostTensor } from '../../src/tensor/host-tensor.js';
import { gatherObject, splitBetweenProcesses } from '../../src/ops/collectives.js';
import { hostTensorOps } from '../../src/ops/tensor-ops.js';
import { createInMemoryGroups } from '../../src/testing/in-memory-group.js';

const split = <D>(inputs: D, P: number, p: number, applyPadding = false) =>
  splitBetweenProcesses(inputs, { numProcesses: P, processIndex: p, applyPadding });
const ranks = (P: number) => Array.from({ length: P }, (_, p) => p);

describe('splitBetweenProcesses', () => {
  it('[B25] ["A","B","C"] over 2 processes, without and with padding', () => {
    expect(ranks(2).map((p) => split(['A', 'B', 'C'], 2, p))).toEqual([['A', 'B'], ['C']]);
    expect(ranks(2).map((p) => split(['A', 'B', 'C'], 2, p, true))).toEqual([
      ['A', 'B'],
      ['C', 'C'],
    ]);
  });

  it('[B25] ["A","B","C"] over 4 processes: the last gets nothing, or ["C"] with padding', () => {
    expect(ranks(4).map((p) => split(['A', 'B', 'C'], 4, p))).toEqual([['A'], ['B'], ['C'], []]);
    expect(ranks(4).map((p) => split(['A', 'B', 'C'], 4, p, true))).toEqual([['A'], ['B'], ['C'], ['C']]);
  });

  it('[B26] range(17) over 4 processes -> sizes 5,4,4,4 covering the input in order', () => {
    const data = Array.from({ length: 17 }, (_, i) => i);
    const parts = ranks(4).map((p) => split(data, 4, p));
    expect(parts.map((x) => x.length)).toEqual([5, 4, 4, 4]);
    expect(parts.flat()).toEqual(data);
  });

  it('[B27] a dict of list, strings and a tensor over 2 and 4 processes', () => {
    const make = () => ({
      a: [1, 2, 3, 4, 5, 6, 7, 8],
      b: ['a', 'b', 'c', 'd', 'e', 'f', 'g', 'h'],
      c: HostTensor.fromNumbers([1, 2, 3, 4, 5, 6, 7, 8]),
    });
    const two = ranks(2).map((p) => split(make(), 2, p));
    expect(two[0].a).toEqual([1, 2, 3, 4]);
    expect(two[0].b).toEqual(['a', 'b', 'c', 'd']);
    expect(two[0].c.toArray()).toEqual([1, 2, 3, 4]);
    expect(two[1].a).toEqual([5, 6, 7, 8]);
    expect(two[1].b).toEqual(['e', 'f', 'g', 'h']);
    expect(two[1].c.toArray()).toEqual([5, 6, 7, 8]);

    const four = ranks(4).map((p) => split(make(), 4, p));
    expect(four[0].a).toEqual([1, 2]);
    expect(four[3].a).toEqual([7, 8]);
    expect(four[3].b).toEqual(['g', 'h']);
    expect(four[3].c.toArray()).toEqual([7, 8]);
  });

  it('[B27] the dict is updated in place and returned', () => {
    const data = { a: [1, 2, 3, 4] };
    const out = split(data, 2, 1);
    expect(out).toBe(data);
    expect(data.a).toEqual([3, 4]);
  });

  it('[B27] a 2x4 tensor over 2 processes -> one row each', () => {
    const t = HostTensor.fromNumbers([0, 1, 2, 3, 4, 5, 6, 7], [2, 4]);
    const parts = ranks(2).map((p) => split(t, 2, p));
    expect(parts[0].shape).toEqual([1, 4]);
    expect(parts[0].toArray()).toEqual([0, 1, 2, 3]);
    expect(parts[1].toArray()).toEqual([4, 5, 6, 7]);
  });

  it('[B27] dict values of different lengths -> error naming each length', () => {
    expect(() => split({ a: [1, 2, 3], b: [1, 2] }, 2, 0)).toThrow(
      /all values of the object must have the same length, got 'a': 3, 'b': 2/,
    );
  });

  it('pads tensors by repeating the last row', () => {
    const t = HostTensor.fromNumbers([0, 1, 2, 3, 4, 5], [3, 2]);
    const parts = ranks(2).map((p) => split(t, 2, p, true));
    expect(parts[0].toArray()).toEqual([0, 1, 2, 3]);
    expect(parts[1].shape).toEqual([2, 2]);
    expect(parts[1].toArray()).toEqual([4, 5, 4, 5]);
  });

  it('splits datasets with select() and pads them with the last index', () => {
    const ds = {
      length: 5,
      select: (indices: number[]) => indices.map((i) => `row${i}`),
    };
    const parts = ranks(2).map((p) => splitBetweenProcesses(ds, { numProcesses: 2, processIndex: p, applyPadding: true }));
    expect(parts).toEqual([
      ['row0', 'row1', 'row2'],
      ['row3', 'row4', 'row4'],
    ]);
  });

  it('returns the input unchanged with one process', () => {
    const data = ['A', 'B', 'C'];
    expect(split(data, 1, 0, true)).toBe(data);
  });

  it('rejects a processIndex outside the world', () => {
    expect(() => split([1], 2, 2)).toThrow(/processIndex must be in \[0, 1\], got 2/);
  });

  it.each([2, 3])(
    '[B27] with padding on 2P-1 items, gatherObject of the parts truncated to the input length equals the input (P=%i)',
    async (P) => {
      const data = Array.from({ length: 2 * P - 1 }, (_, i) => i);
      const groups = createInMemoryGroups(P, { timeoutMs: 2000 });
      const out = await Promise.all(
        groups.map(async (group, p) => {
          const part = split(data, P, p, true);
          expect(part).toHaveLength(2);
          const gathered = await gatherObject(part, { group, ops: hostTensorOps, numProcesses: P, processIndex: p });
          return gathered.slice(0, data.length);
        }),
      );
      for (const o of out) expect(o).toEqual(data);
    },
  );
});
