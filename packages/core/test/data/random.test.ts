import { afterEach, describe, expect, it } from 'vitest';
import { DEFAULT_SEED, Generator, defaultGenerator, deriveSeed, initialSeed, seedDataGenerator, resetDefaultGenerator } from '../../src/data/random.js';
import { range } from './helpers.js';

describe('Generator', () => {
  afterEach(() => resetDefaultGenerator());

  it('the same seed replays the same stream; another seed does not', () => {
    const a = new Generator(42);
    const b = new Generator(42);
    const c = new Generator(43);
    const xs = range(8).map(() => a.nextUint32());
    expect(range(8).map(() => b.nextUint32())).toEqual(xs);
    expect(range(8).map(() => c.nextUint32())).not.toEqual(xs);
    expect(xs.every((x) => Number.isInteger(x) && x >= 0 && x < 2 ** 32)).toBe(true);
  });

  it('getState/setState survive JSON and resume the stream exactly', () => {
    const g = new Generator(7);
    g.nextUint32();
    const saved = JSON.parse(JSON.stringify(g.getState()));
    const after = range(5).map(() => g.nextFloat());
    const h = new Generator(1).setState(saved);
    expect(h.initialSeed).toBe(7);
    expect(range(5).map(() => h.nextFloat())).toEqual(after);
    expect(() => h.setState({ algorithm: 'mt19937' } as never)).toThrow(/getState/);
  });

  it('randperm is a permutation; randint stays in range; floats in [0, 1)', () => {
    const g = new Generator(3);
    const p = g.randperm(1000);
    expect([...p].sort((x, y) => x - y)).toEqual(range(1000));
    expect(p).not.toEqual(range(1000));
    for (let i = 0; i < 1000; i++) {
      const r = g.randint(-3, 4);
      expect(r >= -3 && r < 4 && Number.isInteger(r)).toBe(true);
      const f = g.nextFloat();
      expect(f >= 0 && f < 1).toBe(true);
    }
    expect(g.randperm(0)).toEqual([]);
    expect(() => g.randint(5, 5)).toThrow(RangeError);
  });

  it('deriveSeed separates (seed, epoch) pairs that seed + epoch would conflate', () => {
    expect(deriveSeed(42, 1)).not.toBe(deriveSeed(43, 0));
    expect(deriveSeed(42, 1)).toBe(deriveSeed(42, 1));
    expect(Number.isSafeInteger(deriveSeed(2 ** 52, 7))).toBe(true);
    const seen = new Set(range(200).map((e) => deriveSeed(42, e)));
    expect(seen.size).toBe(200);
  });

  it('the default generator starts at PyTorch default seed and seedDataGenerator reseeds it', () => {
    expect(initialSeed()).toBe(DEFAULT_SEED);
    seedDataGenerator(21);
    expect(initialSeed()).toBe(21);
    const x = defaultGenerator().nextUint32();
    seedDataGenerator(21);
    expect(defaultGenerator().nextUint32()).toBe(x);
    expect(() => seedDataGenerator(1.5)).toThrow(/safe integer/);
  });
});
