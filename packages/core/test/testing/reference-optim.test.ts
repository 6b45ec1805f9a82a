import { describe, expect, it } from 'vitest';
import { ReferenceBackend } from '../../src/testing/reference-backend.js';
import { RegressionModel } from '../../src/testing/reference-nn.js';
import { AdamW, LambdaLR, RefGradScaler, SGD, type RefOptimizer } from '../../src/testing/reference-optim.js';
import { mseLoss, RefTensor, tensor } from '../../src/testing/reference-tensor.js';

const backend = new ReferenceBackend();

/** Apply `opt` to a float64 parameter starting at `p0`, feeding `grads` one step each; returns the parameter after each step. */
function trajectory(make: (params: RefTensor[]) => RefOptimizer, p0: number[], grads: number[][]): number[][] {
  const p = tensor(p0, { dtype: 'float64', requiresGrad: true });
  const opt = make([p]);
  return grads.map((g) => {
    p.grad = tensor(g, { dtype: 'float64' });
    opt.step();
    return p.toArray();
  });
}

function expectTrajectory(actual: number[][], expected: number[][], tol = 1e-12): void {
  expect(actual.length).toBe(expected.length);
  actual.forEach((row, k) => row.forEach((v, i) => expect(Math.abs(v - expected[k][i])).toBeLessThanOrEqual(tol)));
}

describe('SGD', () => {
  it('plain: p -= lr * g', () => {
    expectTrajectory(trajectory((ps) => new SGD(ps, { lr: 0.1 }), [1, 2], [[1, -2], [0.5, 0.5]]), [
      [0.9, 2.2],
      [0.85, 2.15],
    ]);
  });

  it('momentum 0.9: buf = g on the first step, then 0.9·buf + g', () => {
    // step 1: buf [1,-2] → p [0.9, 2.2]; step 2: buf [2.9, -1.3] → p [0.61, 2.33]; step 3: buf [1.61, -0.17] → p [0.449, 2.347]
    expectTrajectory(trajectory((ps) => new SGD(ps, { lr: 0.1, momentum: 0.9 }), [1, 2], [[1, -2], [2, 0.5], [-1, 1]]), [
      [0.9, 2.2],
      [0.61, 2.33],
      [0.449, 2.347],
    ]);
  });

  it('momentum with dampening 0.5 and weight decay 0.1 (d = g + wd·p; buf = μ·buf + (1−τ)·d)', () => {
    // step 1: d = [1.1, -1.8], buf = d → p [0.89, 2.18]
    // step 2: d = [2.089, 0.718], buf = 0.9·[1.1,-1.8] + 0.5·d = [2.0345, -1.261] → p [0.68655, 2.3061]
    expectTrajectory(
      trajectory((ps) => new SGD(ps, { lr: 0.1, momentum: 0.9, dampening: 0.5, weightDecay: 0.1 }), [1, 2], [[1, -2], [2, 0.5], [-1, 1]]),
      [
        [0.89, 2.18],
        [0.68655, 2.3061],
        [0.55001225, 2.3580595],
      ],
    );
  });

  it('nesterov: d = g + μ·buf', () => {
    // step 1: buf = [1,-2], d = [1.9, -3.8] → p [0.81, 2.38]
    expectTrajectory(trajectory((ps) => new SGD(ps, { lr: 0.1, momentum: 0.9, nesterov: true }), [1, 2], [[1, -2], [2, 0.5], [-1, 1]]), [
      [0.81, 2.38],
      [0.349, 2.447],
      [0.3041, 2.3623],
    ]);
    expect(() => new SGD([tensor([1], { dtype: 'float32' })], { lr: 0.1, nesterov: true })).toThrow(
      'SGD: nesterov momentum requires momentum > 0 and dampening = 0.',
    );
  });

  it('skips parameters without gradients and validates lr', () => {
    const p = tensor([1], { dtype: 'float32', requiresGrad: true });
    const q = tensor([1], { dtype: 'float32', requiresGrad: true });
    q.grad = tensor([1], { dtype: 'float32' });
    new SGD([p, q], { lr: 0.5 }).step();
    expect(p.toArray()).toEqual([1]);
    expect(q.toArray()).toEqual([0.5]);
    expect(() => new SGD([p], { lr: -1 })).toThrow('SGD: lr must be a number >= 0, got -1.');
    expect(() => new SGD([], { lr: 1 })).toThrow("SGD: got an empty parameter list; pass the model's parameters.");
  });
});

describe('AdamW', () => {
  it('matches PyTorch: decoupled weight decay, bias correction, eps 1e-8 (lr 0.1, wd 0.01)', () => {
    // Step 1 by hand for p = 1, g = 0.5: p ← 1·(1 − 0.1·0.01) = 0.999; m = 0.05; v = 0.00025;
    // step size = 0.1 / (1 − 0.9) = 1; denom = √0.00025 / √0.001 + 1e-8 = 0.5 + 1e-8 → p = 0.999 − 0.05/(0.5+1e-8) = 0.899000002.
    // Later steps as torch.optim.AdamW(lr=0.1, weight_decay=0.01) computes them in float64.
    expectTrajectory(trajectory((ps) => new AdamW(ps, { lr: 0.1, weightDecay: 0.01 }), [1, -2], [[0.5, -3], [-0.25, 1], [1, 0]]), [
      [0.899000002, -1.8980000003333333],
      [0.8714672987058463, -1.8560801433165766],
      [0.804784672376384, -1.8232870517348878],
    ]);
  });

  it('defaults are lr 1e-3, betas 0.9/0.999, eps 1e-8, weight decay 1e-2', () => {
    const opt = new AdamW([tensor([1], { dtype: 'float64', requiresGrad: true })]);
    expect(opt.defaults).toEqual({ lr: 1e-3, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 1e-2 });
    expectTrajectory(trajectory((ps) => new AdamW(ps), [1, -2], [[0.5, -3], [-0.25, 1], [1, 0]]), [
      [0.99899000002, -1.9989800000033335],
      [0.9987136730870784, -1.9985597916331694],
      [0.9980455743600399, -1.9982304359208696],
    ]);
  });

  it('state dict round-trips: a restored optimizer continues exactly like the original', () => {
    const run = (restore: boolean) => {
      const p = tensor([1, -2], { dtype: 'float64', requiresGrad: true });
      let opt = new AdamW([p], { lr: 0.1 });
      p.grad = tensor([0.5, -3], { dtype: 'float64' });
      opt.step();
      if (restore) {
        const sd = opt.stateDict();
        expect(sd.paramGroups).toEqual([{ lr: 0.1, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0.01, params: [0] }]);
        expect(Object.keys(sd.state['0']).sort()).toEqual(['expAvg', 'expAvgSq', 'step']);
        opt = new AdamW([p], { lr: 0.5 });
        opt.loadStateDict(sd);
      }
      p.grad = tensor([-0.25, 1], { dtype: 'float64' });
      opt.step();
      return p.toArray();
    };
    expect(run(true)).toEqual(run(false));
  });

  it('loadStateDict rejects a state with a different layout', () => {
    const p = tensor([1], { dtype: 'float32', requiresGrad: true });
    const q = tensor([1], { dtype: 'float32', requiresGrad: true });
    const sd = new AdamW([p, q]).stateDict();
    expect(() => new AdamW([p]).loadStateDict(sd)).toThrow(
      'AdamW.loadStateDict: group 0 holds 2 parameter(s) in the saved state but 1 in the optimizer.',
    );
  });
});

describe('LambdaLR', () => {
  it('sets lr = base · λ(epoch), starting at epoch 0 on construction (as PyTorch)', () => {
    const opt = new AdamW([tensor([1], { dtype: 'float32', requiresGrad: true })], { lr: 0.5 });
    const sched = new LambdaLR(opt, (e) => 1 / (e + 1));
    const lrs = [sched.getLastLr()[0]];
    for (let i = 0; i < 3; i++) {
      opt.step();
      sched.step();
      lrs.push(sched.getLastLr()[0]);
    }
    expect(lrs).toEqual([0.5, 0.25, 0.5 / 3, 0.125]);
    expect(sched.lastEpoch).toBe(3);
    expect(opt.paramGroups[0].lr).toBe(0.125);
    expect(opt.paramGroups[0].initialLr).toBe(0.5);
    expect(backend.optimizers.isScheduler(sched)).toBe(true);
    expect(backend.optimizers.schedulerOptimizer(sched)).toBe(opt);
  });

  it('LambdaLR(1 − n/10): two scheduler steps → lr 0.8, one → 0.9 (the values Accelerate\'s 2-process scheduler test expects)', () => {
    const make = () => {
      const opt = new SGD([tensor([1], { dtype: 'float32', requiresGrad: true })], { lr: 1 });
      return new LambdaLR(opt, (n) => 1 - n / 10);
    };
    const perProcess = make();
    perProcess.step();
    perProcess.step(); // 2 processes: Accelerate steps the scheduler once per process
    expect(perProcess.getLastLr()[0]).toBeCloseTo(0.8, 12);
    const once = make();
    backend.optimizers.schedulerStep(once);
    expect(once.getLastLr()[0]).toBeCloseTo(0.9, 12);
  });

  it('one lambda per param group; state dict round-trip', () => {
    const a = tensor([1], { dtype: 'float32', requiresGrad: true });
    const b = tensor([1], { dtype: 'float32', requiresGrad: true });
    const opt = new SGD([{ params: [a] }, { params: [b], lr: 0.2 }], { lr: 1 });
    const sched = new LambdaLR(opt, [(e) => 0.5 ** e, (e) => e + 1]);
    sched.step();
    expect(sched.getLastLr()).toEqual([0.5, 0.4]);
    const sd = sched.stateDict();
    const other = new LambdaLR(new SGD([{ params: [a] }, { params: [b], lr: 0.2 }], { lr: 1 }), [(e) => 0.5 ** e, (e) => e + 1]);
    other.loadStateDict(sd);
    other.step();
    expect(other.getLastLr()).toEqual([0.25, 0.6000000000000001]);
    expect(() => new LambdaLR(opt, [(e) => e])).toThrow('LambdaLR: expected 2 lr lambdas (one per param group), got 1.');
  });
});

describe('GradScaler', () => {
  const options = { initScale: 65536, growthFactor: 2, backoffFactor: 0.5, growthInterval: 2000, enabled: true };

  /** One fp16-style iteration on RegressionModel; `poison` puts a NaN into the gradients. */
  function setup(growthInterval = 3) {
    const model = new RegressionModel({ a: 1, b: 1 });
    const opt = new SGD(model.parameters(), { lr: 0.1 });
    const scaler = backend.precision.createGradScaler({ ...options, growthInterval });
    const x = tensor([1, 2], { dtype: 'float32' });
    const y = tensor([3, 5], { dtype: 'float32' });
    const iteration = (poison: boolean): boolean => {
      opt.zeroGrad();
      backend.autograd.backward(scaler.scale(mseLoss(model.forward(x), y)), { scale: poison ? Number.NaN : 1 });
      const stepped = scaler.step(opt);
      scaler.update();
      return stepped;
    };
    return { model, opt, scaler, iteration };
  }

  it('scale() multiplies the loss; step() unscales the gradients before stepping', () => {
    const { model, opt, scaler } = setup();
    const x = tensor([1, 2], { dtype: 'float32' });
    const y = tensor([3, 5], { dtype: 'float32' });
    // pred = x + 1 = [2, 3]; loss = ((2-3)² + (3-5)²)/2 = 2.5; dL/da = (2·(-1)·1 + 2·(-2)·2)/2 = -5; dL/db = -3
    const scaled = scaler.scale(mseLoss(model.forward(x), y));
    expect(scaled.item()).toBe(2.5 * 65536);
    backend.autograd.backward(scaled, { scale: 1 });
    expect(model.a.grad!.toArray()).toEqual([-5 * 65536]);
    scaler.unscale(opt);
    expect(model.a.grad!.toArray()).toEqual([-5]);
    expect(model.b.grad!.toArray()).toEqual([-3]);
    expect(() => scaler.unscale(opt)).toThrow(/already called on this optimizer since the last update/);
    expect(scaler.step(opt)).toBe(true);
    expect(model.a.toArray()).toEqual([1.5]);
    expect(model.b.toArray()).toEqual([Math.fround(1.3)]);
  });

  it('[B39] scaler level: clean, NaN, NaN, clean gradients → skipped false, true, true, false; scale backs off by 0.5 on each NaN', () => {
    const { model, scaler, iteration } = setup(2000);
    const skipped: boolean[] = [];
    const scales: number[] = [];
    for (const poison of [false, true, true, false]) {
      const before = model.a.toArray();
      const stepped = iteration(poison);
      skipped.push(!stepped);
      if (!stepped) expect(model.a.toArray()).toEqual(before);
      scales.push(scaler.getScale());
    }
    expect(skipped).toEqual([false, true, true, false]);
    expect(scales).toEqual([65536, 32768, 16384, 16384]);
  });

  it('grows by growthFactor after growthInterval clean steps in a row; a NaN resets the count', () => {
    const { scaler, iteration } = setup(3);
    const scales: number[] = [];
    for (const poison of [false, false, true, false, false, false, false, false, false]) {
      iteration(poison);
      scales.push(scaler.getScale());
    }
    expect(scales).toEqual([65536, 65536, 32768, 32768, 32768, 65536, 65536, 65536, 131072]);
  });

  it('state dict uses PyTorch keys and restores scale and growth tracker', () => {
    const { scaler, iteration } = setup(3);
    iteration(false);
    iteration(true);
    iteration(false);
    expect(scaler.stateDict()).toEqual({ scale: 32768, growth_factor: 2, backoff_factor: 0.5, growth_interval: 3, _growth_tracker: 1 });
    const other = new RefGradScaler({ ...options, growthInterval: 3 });
    other.loadStateDict(scaler.stateDict());
    expect(other.getScale()).toBe(32768);
    expect(other.stateDict()).toEqual(scaler.stateDict());
  });

  it('disabled: scale is 1, the loss is untouched and every step runs', () => {
    const scaler = new RefGradScaler({ ...options, enabled: false });
    const p = tensor([1], { dtype: 'float32', requiresGrad: true });
    const opt = new SGD([p], { lr: 1 });
    const loss = p.mul(2).sum();
    expect(scaler.scale(loss)).toBe(loss);
    backend.autograd.backward(loss, { scale: 1 });
    expect(scaler.step(opt)).toBe(true);
    scaler.update();
    expect(p.toArray()).toEqual([-1]);
    expect(scaler.getScale()).toBe(1);
    expect(scaler.stateDict()).toEqual({});
  });

  it('update() without a step explains the order; invalid options are refused', () => {
    const scaler = new RefGradScaler(options);
    expect(() => scaler.update()).toThrow('GradScaler.update: no inf checks were recorded for this iteration; call step(optimizer) before update().');
    expect(() => new RefGradScaler({ ...options, backoffFactor: 2 })).toThrow('GradScaler: backoffFactor must be in (0, 1), got 2.');
    expect(() => new RefGradScaler({ ...options, growthInterval: 0 })).toThrow('GradScaler: growthInterval must be a positive integer, got 0.');
  });
});
