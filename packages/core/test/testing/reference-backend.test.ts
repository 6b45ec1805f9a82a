import { describe, expect, it } from 'vitest';
import { HostTensor } from '../../src/tensor/host-tensor.js';
import { LinearModel, RegressionModel } from '../../src/testing/reference-nn.js';
import { SGD } from '../../src/testing/reference-optim.js';
import { ReferenceBackend, referenceBackendFactory } from '../../src/testing/reference-backend.js';
import {
  broadcastShapes,
  cat,
  defaultGenerator,
  mseLoss,
  narrow,
  noGrad,
  randn,
  RefTensor,
  runBackward,
  tensor,
} from '../../src/testing/reference-tensor.js';

const backend = new ReferenceBackend();

/** Central finite differences of scalar `f` with respect to every element of the float64 leaves. */
function finiteDifferences(leaves: RefTensor[], f: () => RefTensor, eps = 1e-6): number[][] {
  return leaves.map((leaf) => {
    const out: number[] = [];
    for (let i = 0; i < leaf.numel; i++) {
      const v = leaf.data[i] as number;
      leaf.data[i] = v + eps;
      const plus = noGrad(() => f().item());
      leaf.data[i] = v - eps;
      const minus = noGrad(() => f().item());
      leaf.data[i] = v;
      out.push((plus - minus) / (2 * eps));
    }
    return out;
  });
}

function expectAllClose(actual: number[], expected: number[], tol: number): void {
  expect(actual.length).toBe(expected.length);
  actual.forEach((a, i) => expect(Math.abs(a - expected[i])).toBeLessThanOrEqual(tol * Math.max(1, Math.abs(expected[i]))));
}

const f64 = (values: number[] | number[][], requiresGrad = true) =>
  tensor(values, { dtype: 'float64', requiresGrad });

describe('reference autograd', () => {
  it('gradients of a composite expression (matmul, transpose, broadcasting add/sub/mul/div, square, mean, sum) match finite differences', () => {
    defaultGenerator.seed(1);
    const x = randn([4, 3], { dtype: 'float64' });
    const w = randn([2, 3], { dtype: 'float64', requiresGrad: true });
    const b = randn([2], { dtype: 'float64', requiresGrad: true });
    const s = f64([[0.7], [1.3], [-0.4], [2.0]]);
    const c = f64([1.5]);
    const target = randn([4, 2], { dtype: 'float64' });
    const f = () => {
      const y = x.matmul(w.t()).add(b).mul(s).div(c.add(2));
      return mseLoss(y, target).add(y.sum().mul(0.1)).sub(b.square().sum());
    };
    const leaves = [w, b, s, c];
    runBackward(f());
    const fd = finiteDifferences(leaves, f);
    leaves.forEach((leaf, k) => expectAllClose(leaf.grad!.toArray(), fd[k], 1e-6));
  });

  it('gradients through cat, narrow, reshape and clone match finite differences', () => {
    const a = f64([
      [1, 2, 3],
      [4, 5, 6],
    ]);
    const b = f64([[-1, 0.5, 2]]);
    const f = () => {
      const joined = cat([a, b], 0); // [3, 3]
      const mid = narrow(joined, 1, 1, 2); // [3, 2]
      const back = narrow(joined, 0, -2, 2).reshape([-1]).clone(); // rows 1..2
      return mid.square().sum().add(back.mul(back).mul(back).mean());
    };
    runBackward(f());
    const fd = finiteDifferences([a, b], f);
    expectAllClose(a.grad!.toArray(), fd[0], 1e-6);
    expectAllClose(b.grad!.toArray(), fd[1], 1e-6);
  });

  it('a cast passes the gradient through unchanged, in the source dtype', () => {
    const p = f64([0.1, 0.2]);
    runBackward(p.to('float32').mul(tensor([3, 5], { dtype: 'float32' })).sum());
    expect(p.grad!.dtype).toBe('float64');
    expect(p.grad!.toArray()).toEqual([3, 5]);
  });

  it('a tensor used on two paths gets the sum of both gradients', () => {
    const p = f64([3]);
    runBackward(p.mul(p).add(p.mul(2)).sum()); // d/dp (p² + 2p) = 2p + 2
    expect(p.grad!.toArray()).toEqual([8]);
  });

  it('gradients accumulate across backward calls until cleared, and upstream scale multiplies them', () => {
    const model = new RegressionModel();
    const x = tensor([1, 2], { dtype: 'float32' });
    const y = tensor([3, 5], { dtype: 'float32' });
    const loss = () => mseLoss(model.forward(x), y);
    // pred = 0: loss = ((0-3)² + (0-5)²)/2 = 17; dL/da = mean(2(pred-y)x) = -13; dL/db = mean(2(pred-y)) = -8.
    expect(loss().item()).toBe(17);
    backend.autograd.backward(loss(), { scale: 1 });
    expect(model.a.grad!.toArray()).toEqual([-13]);
    expect(model.b.grad!.toArray()).toEqual([-8]);
    backend.autograd.backward(loss, { scale: 0.5 });
    expect(model.a.grad!.toArray()).toEqual([-19.5]);
    expect(model.b.grad!.toArray()).toEqual([-12]);
  });

  it('refuses a second backward through the same graph, a non-scalar loss and a loss without grad', () => {
    const p = f64([1, 2]);
    const loss = p.square().sum();
    runBackward(loss);
    expect(() => runBackward(loss)).toThrow(/backward through the graph a second time/);
    expect(() => runBackward(p.square())).toThrow('backward: the loss must have exactly one element, got shape [2].');
    expect(() => runBackward(noGrad(() => p.square().sum()))).toThrow(/does not require grad/);
    expect(() => backend.autograd.backward(42 as unknown as RefTensor, { scale: 1 })).toThrow(/must be a reference-backend tensor/);
  });

  it('broadcasting follows NumPy rules and explains incompatible shapes', () => {
    expect(broadcastShapes([4, 1], [3])).toEqual([4, 3]);
    expect(broadcastShapes([], [2, 2])).toEqual([2, 2]);
    expect(() => broadcastShapes([4, 2], [3])).toThrow('shapes [4, 2] and [3] cannot be broadcast together (dimension 1: 2 vs 3).');
    expect(() => mseLoss(tensor([1, 2], { dtype: 'float32' }), tensor([[1], [2]], { dtype: 'float32' }))).toThrow(
      /prediction shape \[2\] differs from target shape \[2, 1\]/,
    );
  });

  it('int64 arithmetic stays int64; integer tensors cannot require grad', () => {
    const i = tensor([1, 2, 3]);
    expect(i.dtype).toBe('int64');
    expect(i.mul(2).dtype).toBe('int64');
    expect(i.mul(0.5).dtype).toBe('float32');
    expect(i.mul(0.5).toArray()).toEqual([0.5, 1, 1.5]);
    expect(() => i.requiresGrad_()).toThrow("requiresGrad_: only floating tensors can require grad, got dtype 'int64'.");
  });
});

describe('reference models', () => {
  it('RegressionModel computes x * a + b with one-element float32 parameters a and b', () => {
    const m = new RegressionModel({ a: 2, b: 3 });
    expect(backend.models.namedParameters(m).map(([n, p]) => [n, p.shape, p.dtype])).toEqual([
      ['a', [1], 'float32'],
      ['b', [1], 'float32'],
    ]);
    expect(m.forward(tensor([0, 1, -2], { dtype: 'float32' })).toArray()).toEqual([3, 5, -1]);
  });

  it('LinearModel: weight [out, in], deterministic init from manualSeed within ±1/sqrt(in), y = x Wᵀ + b', () => {
    backend.rng.manualSeed(5);
    const m1 = new LinearModel(4, 3);
    backend.rng.manualSeed(5);
    const m2 = new LinearModel(4, 3);
    expect(m1.weight.shape).toEqual([3, 4]);
    expect(m1.bias!.shape).toEqual([3]);
    expect(m1.weight.toArray()).toEqual(m2.weight.toArray());
    const bound = 1 / Math.sqrt(4);
    for (const v of [...m1.weight.toArray(), ...m1.bias!.toArray()]) expect(Math.abs(v)).toBeLessThanOrEqual(bound);
    const x = tensor(
      [
        [1, 0, 0, 0],
        [0, 2, 0, 1],
      ],
      { dtype: 'float32' },
    );
    const w = m1.weight.toArray();
    const b = m1.bias!.toArray();
    const y = m1.forward(x).toArray();
    const f = Math.fround;
    expect(y).toEqual([0, 1, 2].map((o) => f(w[o * 4] + b[o])).concat([0, 1, 2].map((o) => f(f(2 * w[o * 4 + 1] + w[o * 4 + 3]) + b[o]))));
    expect(() => m1.forward(tensor([[1, 2]], { dtype: 'float32' }))).toThrow('LinearModel.forward: input has 2 features but the layer expects 4.');
  });

  it('trains RegressionModel on the RegressionDataset-style data with SGD to a ≈ 2, b ≈ 3', () => {
    defaultGenerator.seed(0);
    const model = new RegressionModel();
    const opt = new SGD(model.parameters(), { lr: 0.1 });
    const x = randn([32]);
    const y = x.mul(2).add(3);
    for (let i = 0; i < 200; i++) {
      opt.zeroGrad();
      backend.autograd.backward(mseLoss(model.forward(x), y), { scale: 1 });
      opt.step();
    }
    expect(model.a.item()).toBeCloseTo(2, 4);
    expect(model.b.item()).toBeCloseTo(3, 4);
  });
});

describe('ReferenceBackend adapters', () => {
  it('loadStateDict copies in place, and names missing, unexpected and mis-shaped keys', () => {
    const m = new LinearModel(2, 1);
    const weight = m.weight;
    backend.models.loadStateDict(m, {
      weight: HostTensor.fromNumbers([1, 2], [1, 2], 'float64'),
      bias: tensor([0.5], { dtype: 'float32' }),
    });
    expect(m.weight).toBe(weight);
    expect(m.weight.toArray()).toEqual([1, 2]);
    expect(m.weight.dtype).toBe('float32');
    expect(m.bias!.toArray()).toEqual([0.5]);
    expect(() => backend.models.loadStateDict(m, { weight: HostTensor.fromNumbers([1, 2], [1, 2], 'float32'), extra: HostTensor.fromNumbers([1], [1]) })).toThrow(
      'loadStateDict: error(s) loading the state dict into LinearModel: missing key(s) "bias"; unexpected key(s) "extra". Pass { strict: false } to load only the keys both have.',
    );
    expect(() => backend.models.loadStateDict(m, { weight: HostTensor.fromNumbers([1, 2, 3], [1, 3], 'float32') }, { strict: false })).toThrow(
      'loadStateDict: error(s) loading the state dict into LinearModel: size mismatch for "weight": the state has shape [1, 3], the model\'s is [1, 2].',
    );
    expect(m.weight.toArray()).toEqual([1, 2]);
  });

  it('stateDict entries share storage with the parameters (an optimizer step is visible through them)', () => {
    const m = new RegressionModel({ a: 1, b: 1 });
    const sd = backend.models.stateDict(m);
    const opt = new SGD(m.parameters(), { lr: 0.5 });
    backend.autograd.backward(m.forward(tensor([2], { dtype: 'float32' })).sum(), { scale: 1 });
    opt.step();
    expect(sd.a.toArray()).toEqual([0]); // a -= 0.5 * 2
    expect(sd.b.toArray()).toEqual([0.5]);
  });

  it('moveModel changes the device label and casts floating parameters; unknown devices and integer casts are refused', () => {
    const b = new ReferenceBackend({ devices: ['cuda:0', 'cuda:1'] });
    expect(b.devices()).toEqual([
      { name: 'cuda:0', kind: 'cuda' },
      { name: 'cuda:1', kind: 'cuda' },
      { name: 'cpu', kind: 'cpu' },
    ]);
    const m = new RegressionModel({ a: 1.5 });
    b.models.moveModel(m, 'cuda:1', 'float64');
    expect(m.a.device).toBe('cuda:1');
    expect(m.a.dtype).toBe('float64');
    expect(m.a.toArray()).toEqual([1.5]);
    expect(() => b.models.moveModel(m, 'mps')).toThrow("moveModel: unknown device 'mps'. The reference backend has 'cuda:0', 'cuda:1', 'cpu'");
    expect(() => b.models.moveModel(m, 'cpu', 'int64')).toThrow("moveModel: models can only be cast to floating dtypes, got 'int64'.");
    const t = b.fromHost(HostTensor.fromNumbers([1, 2], [2], 'float32'), 'cuda');
    expect(b.device(t)).toBe('cuda:0');
    expect(() => m.forward(t)).toThrow("mul: expected all tensors on the same device, found 'cuda:0' and 'cuda:1'");
  });

  it('fromHost refuses half precision with a clear message', () => {
    const h = new HostTensor(new Uint16Array([0x3c00]), [1], 'float16');
    expect(() => backend.fromHost(h)).toThrow(/dtype 'float16' is not supported by the reference backend/);
  });

  it('clipGradNorm (2-norm and inf-norm) returns the pre-clip norm; clipGradValue clamps', () => {
    const p = f64([0, 0]);
    const q = f64([0]);
    p.grad = tensor([3, 4], { dtype: 'float64' });
    q.grad = tensor([12], { dtype: 'float64' });
    expect(backend.autograd.clipGradNorm([p, q], 6.5)).toBe(13);
    expectAllClose(p.grad.toArray(), [1.5, 2], 1e-6);
    expectAllClose(q.grad.toArray(), [6], 1e-6);
    expect(backend.autograd.clipGradNorm([p, q], 3, Infinity)).toBeCloseTo(6, 5);
    expectAllClose(q.grad.toArray(), [3], 1e-6);
    backend.autograd.clipGradValue([p, q], 1.75);
    expect(p.grad.toArray().map((v) => Math.round(v * 1e6) / 1e6)).toEqual([0.75, 1]);
    expect(q.grad.toArray()).toEqual([1.75]);
    expect(backend.autograd.clipGradNorm([f64([1])], 1)).toBe(0);
  });

  it('manualSeed / getRngState / setRngState replay randn exactly; a bad state is refused', () => {
    backend.rng.manualSeed(123);
    const state = backend.rng.getState();
    expect(state.byteLength).toBe(16);
    const first = randn([5]).toArray();
    const second = randn([5]).toArray();
    expect(second).not.toEqual(first);
    backend.rng.setState(state);
    expect(randn([5]).toArray()).toEqual(first);
    backend.rng.manualSeed(123);
    expect(randn([5]).toArray()).toEqual(first);
    expect(() => backend.rng.setState(new Uint8Array(3))).toThrow(
      'SeededRandom.setState: expected a Uint8Array of 16 bytes (from getState()), got 3 bytes.',
    );
  });

  it('isOutOfMemoryError recognises "out of memory" messages only', () => {
    expect(backend.memory.isOutOfMemoryError(new Error('CUDA out of memory. Tried to allocate 2 GiB'))).toBe(true);
    expect(backend.memory.isOutOfMemoryError('DefaultCPUAllocator: out of memory')).toBe(true);
    expect(backend.memory.isOutOfMemoryError(new Error('shape mismatch'))).toBe(false);
    expect(backend.memory.isOutOfMemoryError(undefined)).toBe(false);
  });

  it('[B40] backend part: autocast records fp16 on tensors computed inside, fp32 ("no") in a nested disabled region, fp16 again after', () => {
    const a = tensor([[1, 2]], { dtype: 'float32' });
    const w = tensor([[3], [4]], { dtype: 'float32' });
    const seen: string[] = [];
    backend.precision.autocast('fp16', () => {
      seen.push(a.matmul(w).autocastPrecision, backend.activePrecision);
      backend.precision.autocast('fp16', () => seen.push(a.matmul(w).autocastPrecision), { enabled: false });
      seen.push(a.matmul(w).autocastPrecision);
    });
    seen.push(a.matmul(w).autocastPrecision, backend.activePrecision);
    expect(seen).toEqual(['fp16', 'fp16', 'no', 'fp16', 'no', 'no']);
  });

  it('autocast keeps an async region open until its promise settles and closes it on errors', async () => {
    const inside = await backend.precision.autocast('bf16', async () => {
      await new Promise((r) => setTimeout(r, 1));
      return backend.activePrecision;
    });
    expect(inside).toBe('bf16');
    expect(backend.activePrecision).toBe('no');
    expect(() => backend.precision.autocast('bf16', () => {
      throw new Error('boom');
    })).toThrow('boom');
    expect(backend.activePrecision).toBe('no');
  });

  it('wrapForwardForPrecision runs forward under autocast and unwrapForwardForPrecision restores it', () => {
    const m = new RegressionModel({ a: 1 });
    const x = tensor([1], { dtype: 'float32' });
    expect(backend.precision.wrapForwardForPrecision(m, 'bf16')).toBe(m);
    expect(m.forward(x).autocastPrecision).toBe('bf16');
    backend.precision.wrapForwardForPrecision(m, 'fp16');
    expect(m.forward(x).autocastPrecision).toBe('fp16');
    expect(backend.precision.unwrapForwardForPrecision(m)).toBe(m);
    expect(m.forward(x).autocastPrecision).toBe('no');
  });

  it('setTrainingMode toggles training on the model and its children; schedulers and optimizers are recognised', () => {
    const m = new LinearModel(2, 2);
    backend.models.setTrainingMode(m, false);
    expect(m.training).toBe(false);
    backend.models.setTrainingMode(m, true);
    expect(m.training).toBe(true);
    const opt = new SGD(m.parameters(), { lr: 0.1 });
    expect(backend.optimizers.isOptimizer(opt)).toBe(true);
    expect(backend.optimizers.params(opt)).toEqual([m.weight, m.bias]);
    expect(backend.models.isModel(m)).toBe(true);
    expect(backend.models.isModel(opt)).toBe(false);
  });

  it('referenceBackendFactory produces a ReferenceBackend', async () => {
    const b = await referenceBackendFactory({ devices: ['cuda:0'] }).init();
    expect(b).toBeInstanceOf(ReferenceBackend);
    expect(b.name).toBe('reference');
    expect(b.devices().map((d) => d.name)).toEqual(['cuda:0', 'cpu']);
  });
});
