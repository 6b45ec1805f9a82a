import { describe, it, expect, beforeEach } from 'vitest';
import { GradientState, schedulerStepsPerCall, type ActiveLoader } from '../../src/state/gradient-state.js';

/** Simulates a prepared loader of `n` batches: endOfDataloader is true on the last one. */
function syncPattern(numSteps: number, batches: number, epochs = 1): boolean[] {
  const gs = new GradientState({ numSteps });
  const out: boolean[] = [];
  for (let e = 0; e < epochs; e++) {
    const loader = { endOfDataloader: false, remainder: -1 } as { endOfDataloader: boolean; remainder: number };
    gs.addDataloader(loader);
    for (let i = 0; i < batches; i++) {
      loader.endOfDataloader = i === batches - 1;
      out.push(gs.advance());
    }
    gs.removeDataloader(loader);
  }
  return out;
}

describe('GradientState', () => {
  beforeEach(() => GradientState.reset());

  it('[B33] GA=2 over 5 batches syncs F,T,F,T,T and repeats next epoch', () => {
    const F = false, T = true;
    expect(syncPattern(2, 5, 2)).toEqual([F, T, F, T, T, F, T, F, T, T]);
  });

  it('[B33] GA=4 over 6 batches and GA=3 over 7 batches', () => {
    const F = false, T = true;
    expect(syncPattern(4, 6)).toEqual([F, F, F, T, F, T]);
    GradientState.reset();
    expect(syncPattern(3, 7)).toEqual([F, F, T, F, F, T, T]);
  });

  it('counts purely when no loader is active', () => {
    const gs = new GradientState({ numSteps: 3 });
    expect([gs.advance(), gs.advance(), gs.advance(), gs.advance()]).toEqual([false, false, true, false]);
  });

  it('[B36] numSteps and syncGradients are shared by every instance', () => {
    const a = new GradientState();
    a.numSteps = 4;
    expect(new GradientState().numSteps).toBe(4);
    a.syncGradients = false;
    expect(new GradientState().syncGradients).toBe(false);
    expect(new GradientState().pluginKwargs).toEqual({ numSteps: 4 });
  });

  it('[B21] tracks nested loaders; nothing active gives end=false, remainder=-1', () => {
    const gs = new GradientState();
    expect(gs.activeDataloader).toBeUndefined();
    expect(gs.endOfDataloader).toBe(false);
    expect(gs.remainder).toBe(-1);
    const outer: ActiveLoader = { endOfDataloader: false, remainder: 0 };
    const inner: ActiveLoader = { endOfDataloader: true, remainder: 7 };
    gs.addDataloader(outer);
    expect(gs.activeDataloader).toBe(outer);
    gs.addDataloader(inner);
    expect(gs.activeDataloader).toBe(inner);
    expect(gs.remainder).toBe(7);
    expect(gs.inDataloader).toBe(true);
    gs.removeDataloader(inner);
    expect(gs.activeDataloader).toBe(outer);
    gs.removeDataloader(outer);
    expect(gs.activeDataloader).toBeUndefined();
    expect(gs.inDataloader).toBe(false);
  });

  it('rejects a non-integer accumulation count with the fix', () => {
    expect(() => new GradientState({ numSteps: 0 })).toThrow('gradientAccumulationSteps must be a whole number >= 1, got 0');
    expect(() => new GradientState({ numSteps: 1.5 })).toThrow(RangeError);
  });
});

describe('schedulerStepsPerCall', () => {
  const base = { stepWithOptimizer: true, syncGradients: true, optimizerStepWasSkipped: false, splitBatches: false, numProcesses: 2 };
  it('[B37] steps once per process, once with split batches, once when not tied to the optimizer', () => {
    expect(schedulerStepsPerCall(base)).toBe(2);
    expect(schedulerStepsPerCall({ ...base, splitBatches: true })).toBe(1);
    expect(schedulerStepsPerCall({ ...base, stepWithOptimizer: false })).toBe(1);
  });
  it('[B37] does not step after a skipped optimizer step or while accumulating', () => {
    expect(schedulerStepsPerCall({ ...base, optimizerStepWasSkipped: true })).toBe(0);
    expect(schedulerStepsPerCall({ ...base, syncGradients: false })).toBe(0);
    expect(schedulerStepsPerCall({ ...base, stepWithOptimizer: false, optimizerStepWasSkipped: true })).toBe(1);
  });
});
