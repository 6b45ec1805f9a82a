import { describe, it, expect, beforeEach } from 'vitest';
import { wrapOptimizer, wrapScheduler, unwrapPrepared } from '../../src/accelerator/wrappers.js';
import { GradientState } from '../../src/state/gradient-state.js';
import { ReferenceBackend, RegressionModel, SGD, LambdaLR, RefGradScaler, full } from '../../src/testing/index.js';

beforeEach(() => GradientState.reset());

describe('AcceleratedOptimizer', () => {
  it('[B39] fp16 scaler: clean, NaN, NaN, clean -> stepWasSkipped false, true, true, false', () => {
    const backend = new ReferenceBackend();
    const model = new RegressionModel({ a: 1, b: 1 });
    const opt = new SGD(model.parameters(), { lr: 0.1 });
    const scaler = new RefGradScaler({ initScale: 1024, growthFactor: 2, backoffFactor: 0.5, growthInterval: 2000, enabled: true });
    const wrapped = wrapOptimizer(opt, backend, { scaler });
    const skipped: boolean[] = [];
    const scales: number[] = [];
    for (const g of [1, NaN, NaN, 1]) {
      model.a.grad = full([1], g * scaler.getScale());
      model.b.grad = full([1], g * scaler.getScale());
      wrapped.step();
      skipped.push(wrapped.stepWasSkipped);
      scales.push(scaler.getScale());
      wrapped.zeroGrad();
    }
    expect(skipped).toEqual([false, true, true, false]);
    expect(scales).toEqual([1024, 512, 256, 256]);
    // two applied steps of grad 1 with lr 0.1
    expect(model.a.toArray()[0]).toBeCloseTo(0.8, 6);
  });

  it('keeps the optimizer type and unwraps to the original object', () => {
    const backend = new ReferenceBackend();
    const opt = new SGD(new RegressionModel().parameters(), { lr: 0.5 });
    const wrapped = wrapOptimizer(opt, backend);
    expect(wrapped.paramGroups[0].lr).toBe(0.5);
    expect(wrapped).toBeInstanceOf(SGD);
    expect(unwrapPrepared(wrapped)).toBe(opt);
  });
});

describe('AcceleratedScheduler', () => {
  it('[B37] 2 processes: LambdaLR(1 - n/10) is at 0.8 after one step, 0.9 when split; stays after a skipped step', () => {
    const backend = new ReferenceBackend();
    const mk = (splitBatches: boolean) => {
      const opt = new SGD(new RegressionModel().parameters(), { lr: 1 });
      const wrappedOpt = wrapOptimizer(opt, backend);
      const sched = wrapScheduler(new LambdaLR(opt, (n) => 1 - n / 10), backend, {
        optimizers: () => [wrappedOpt],
        stepWithOptimizer: true,
        splitBatches,
        numProcesses: 2,
      });
      return { opt, wrappedOpt, sched };
    };
    const a = mk(false);
    a.wrappedOpt.step();
    a.sched.step();
    expect(a.opt.paramGroups[0].lr).toBeCloseTo(0.8, 12);
    const b = mk(true);
    b.wrappedOpt.step();
    b.sched.step();
    expect(b.opt.paramGroups[0].lr).toBeCloseTo(0.9, 12);
  });

  it('[B38] 2 processes, linear schedule of 20 steps, GA n: lr > 0 at iteration 10n-2 and 0 after the last', () => {
    const backend = new ReferenceBackend();
    for (const n of [1, 2, 4]) {
      GradientState.reset();
      const gs = new GradientState({ numSteps: n });
      const opt = new SGD(new RegressionModel().parameters(), { lr: 1 });
      const wrappedOpt = wrapOptimizer(opt, backend);
      const sched = wrapScheduler(new LambdaLR(opt, (s) => Math.max(0, 1 - s / 20)), backend, {
        optimizers: () => [wrappedOpt],
        stepWithOptimizer: true,
        splitBatches: false,
        numProcesses: 2,
      });
      const lrs: number[] = [];
      for (let i = 0; i < 10 * n; i++) {
        gs.advance();
        wrappedOpt.step();
        sched.step();
        lrs.push(opt.paramGroups[0].lr);
      }
      expect(lrs[10 * n - 2]).toBeGreaterThan(0);
      expect(lrs[10 * n - 1]).toBe(0);
    }
  });
});

describe('scheduler misuse', () => {
  it('warns once when scheduler.step() runs twice without an optimizer update (spec §13.3)', async () => {
    const backend = new ReferenceBackend();
    const opt = new SGD(new RegressionModel().parameters(), { lr: 1 });
    const wrappedOpt = wrapOptimizer(opt, backend);
    const sched = wrapScheduler(new LambdaLR(opt, (n) => 1 - n / 10), backend, {
      optimizers: () => [wrappedOpt],
      stepWithOptimizer: true,
      splitBatches: false,
      numProcesses: 1,
    });
    const warnings: string[] = [];
    const onWarning = (w: Error) => warnings.push(w.message);
    process.on('warning', onWarning);
    try {
      wrappedOpt.step();
      sched.step();
      wrappedOpt.step();
      sched.step();
      await new Promise((r) => setImmediate(r));
      expect(warnings.filter((w) => w.includes('scheduler.step() was called again'))).toHaveLength(0);
      sched.step();
      sched.step();
      await new Promise((r) => setImmediate(r));
      expect(warnings.filter((w) => w.includes('scheduler.step() was called again'))).toHaveLength(1);
    } finally {
      process.off('warning', onWarning);
    }
  });
});
