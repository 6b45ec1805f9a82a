// core's setSeed decides tfjs's initial weights with no Accelerator and no
// import-time registration: the tfjs generator takes a pending setSeed at its
// next draw (core's takeSeed), and an explicit tfjs manualSeed afterwards wins.
import { describe, it, expect } from 'vitest';
import { setSeed } from '@accelerate/core';
import { Linear, manualSeed, getRngState } from '../../src/index.js';

const weights = (m: Linear) => Array.from(m.weight.dataSync());

describe('setSeed and the tfjs generator', () => {
  it('setSeed before building a model repeats its weights; another seed changes them', () => {
    setSeed(0);
    const a = weights(new Linear(4, 3));
    setSeed(0);
    const b = weights(new Linear(4, 3));
    setSeed(1);
    const c = weights(new Linear(4, 3));
    expect(b).toEqual(a);
    expect(c).not.toEqual(a);
  });

  it('one setSeed seeds once: two models built after it differ', () => {
    setSeed(0);
    const a = weights(new Linear(4, 3));
    const b = weights(new Linear(4, 3));
    expect(b).not.toEqual(a);
  });

  it('an explicit tfjs manualSeed after setSeed is not overridden by it', () => {
    manualSeed(5);
    const ref = weights(new Linear(4, 3));
    setSeed(0);
    manualSeed(5);
    expect(weights(new Linear(4, 3))).toEqual(ref);
  });

  it('the RNG state read after setSeed is the seeded one', () => {
    setSeed(3);
    const viaSetSeed = getRngState();
    manualSeed(3);
    expect(getRngState()).toEqual(viaSetSeed);
  });
});
