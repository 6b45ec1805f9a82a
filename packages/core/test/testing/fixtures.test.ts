import { describe, expect, it } from 'vitest';
import { SeededRandom } from '../../src/testing/prng.js';
import { RegressionDataset } from '../../src/testing/regression-dataset.js';

describe('SeededRandom', () => {
  it('replays from a seed and from a saved state; different seeds differ', () => {
    const a = new SeededRandom(42);
    const first = Array.from({ length: 5 }, () => a.nextUint32());
    expect(Array.from({ length: 5 }, () => new SeededRandom(42).nextUint32())).toEqual(Array(5).fill(first[0]));
    const b = new SeededRandom(42);
    expect(Array.from({ length: 5 }, () => b.nextUint32())).toEqual(first);
    const state = b.getState();
    const next = Array.from({ length: 3 }, () => b.random());
    b.setState(state);
    expect(Array.from({ length: 3 }, () => b.random())).toEqual(next);
    expect(new SeededRandom(43).nextUint32()).not.toBe(first[0]);
    expect(new SeededRandom(2 ** 40).nextUint32()).not.toBe(new SeededRandom(0).nextUint32());
  });

  it('random() is in [0, 1) with mean ≈ 1/2; normal() has mean ≈ 0 and variance ≈ 1', () => {
    const g = new SeededRandom(7);
    const n = 20_000;
    let sum = 0;
    let lo = Infinity;
    let hi = -Infinity;
    for (let i = 0; i < n; i++) {
      const u = g.random();
      lo = Math.min(lo, u);
      hi = Math.max(hi, u);
      sum += u;
    }
    expect(lo).toBeGreaterThanOrEqual(0);
    expect(hi).toBeLessThan(1);
    expect(Math.abs(sum / n - 0.5)).toBeLessThan(0.01);
    let s = 0;
    let s2 = 0;
    for (let i = 0; i < n; i++) {
      const z = g.normal();
      s += z;
      s2 += z * z;
    }
    expect(Math.abs(s / n)).toBeLessThan(0.03);
    expect(Math.abs(s2 / n - 1)).toBeLessThan(0.05);
  });

  it('refuses non-integer seeds and malformed states', () => {
    expect(() => new SeededRandom(1.5)).toThrow('Generator.manualSeed: seed must be a safe integer, got 1.5. Pass an integer such as 42.');
    expect(() => new SeededRandom(0).setState(new Uint8Array(16))).toThrow(/all-zero state is invalid/);
  });
});

describe('RegressionDataset', () => {
  it('has the requested length and y = a·x + b + small noise, stored as float32', () => {
    const ds = new RegressionDataset({ a: 2, b: 3, length: 64, seed: 1 });
    expect(ds.length).toBe(64);
    expect(ds.x).toBeInstanceOf(Float32Array);
    const residuals = Array.from(ds.x, (x, i) => ds.y[i] - (2 * x + 3));
    const mean = residuals.reduce((s, r) => s + r, 0) / 64;
    const std = Math.sqrt(residuals.reduce((s, r) => s + (r - mean) ** 2, 0) / 64);
    expect(Math.abs(mean)).toBeLessThan(0.05);
    expect(std).toBeGreaterThan(0.05);
    expect(std).toBeLessThan(0.15);
    const item = ds.getItem(5);
    expect(item).toEqual({ x: ds.x[5], y: ds.y[5] });
    expect(Math.fround(item.y)).toBe(item.y);
    expect(ds.getItem(-1)).toEqual({ x: ds.x[63], y: ds.y[63] });
    expect([...ds].length).toBe(64);
    expect(() => ds.getItem(64)).toThrow('RegressionDataset.getItem: index 64 is out of range for 64 samples.');
  });

  it('is deterministic from its seed; other seeds and parameters give other samples', () => {
    const a = new RegressionDataset({ seed: 3, length: 8 });
    const b = new RegressionDataset({ seed: 3, length: 8 });
    expect(Array.from(a.x)).toEqual(Array.from(b.x));
    expect(Array.from(a.y)).toEqual(Array.from(b.y));
    expect(Array.from(new RegressionDataset({ seed: 4, length: 8 }).x)).not.toEqual(Array.from(a.x));
    const shifted = new RegressionDataset({ seed: 3, length: 8, b: 4 });
    expect(Array.from(shifted.x)).toEqual(Array.from(a.x));
    shifted.y.forEach((y, i) => expect(y - a.y[i]).toBeCloseTo(1, 5));
  });

  it('defaults: a = 2, b = 3, 64 samples, seed 42', () => {
    const d = new RegressionDataset();
    const e = new RegressionDataset({ a: 2, b: 3, length: 64, seed: 42 });
    expect(d.length).toBe(64);
    expect(Array.from(d.y)).toEqual(Array.from(e.y));
  });
});
