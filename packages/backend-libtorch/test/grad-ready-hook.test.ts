// addGradientReadyHook: a per-parameter hook that runs after backward accumulated the
// parameter's gradient into param.grad (post-accumulate-grad), on real libtorch autograd.
import { describe, it, expect } from 'vitest';
import * as torch from '../src/index.js';
const { nn } = torch;

const values = (t: torch.Tensor | null) => (t ? Array.from(t.dataSync() as ArrayLike<number>, Number) : null);

function twoLayer(): { model: torch.nn.Sequential; x: torch.Tensor; y: torch.Tensor } {
  torch.manualSeed(1);
  const model = new nn.Sequential(new nn.Linear(4, 8), new nn.ReLU(), new nn.Linear(8, 3));
  return { model, x: torch.randn([5, 4]), y: torch.randint(0, 3, [5]) };
}

describe('addGradientReadyHook', () => {
  it('fires once per parameter, the second layer before the first, with param.grad already the autograd result', () => {
    const { model, x, y } = twoLayer();
    // The autograd result, from a copy of the model without hooks.
    const ref = new nn.Sequential(new nn.Linear(4, 8), new nn.ReLU(), new nn.Linear(8, 3));
    ref.loadStateDict(model.stateDict());
    nn.functional.crossEntropy(ref.forward(x), y).backward();
    const expected = new Map(ref.namedParameters().map(([n, p]) => [n, values(p.grad)!]));

    const fired: { name: string; grad: number[] | null; same: boolean }[] = [];
    const hooks = model.namedParameters().map(([name, p]) =>
      torch.addGradientReadyHook(p, (param) => fired.push({ name, grad: values(param.grad), same: param === p })),
    );
    nn.functional.crossEntropy(model.forward(x), y).backward();

    expect(fired.map((f) => f.name).sort()).toEqual(['0.bias', '0.weight', '2.bias', '2.weight']);
    const order = fired.map((f) => f.name);
    expect(Math.max(order.indexOf('2.weight'), order.indexOf('2.bias'))).toBeLessThan(Math.min(order.indexOf('0.weight'), order.indexOf('0.bias')));
    for (const f of fired) {
      expect(f.same).toBe(true);
      expect(f.grad, f.name).not.toBeNull();
      const want = expected.get(f.name)!;
      f.grad!.forEach((v, i) => expect(v).toBeCloseTo(want[i]!, 6));
    }

    // Removing stops it (and removing twice is harmless).
    for (const h of hooks) h.remove();
    hooks[0]!.remove();
    fired.length = 0;
    nn.functional.crossEntropy(model.forward(x), y).backward();
    expect(fired).toEqual([]);
  });

  it('with gradient accumulation over two backward calls: fires in each, and sees the sum the second time', () => {
    const w = torch.tensor([1, 2, 3], { requiresGrad: true });
    const seen: (number[] | null)[] = [];
    const h = torch.addGradientReadyHook(w, (p) => seen.push(values(p.grad)));
    w.mul(torch.tensor([1, 1, 1])).sum().backward(); // d/dw = 1
    w.mul(torch.tensor([2, 3, 4])).sum().backward(); // d/dw = [2, 3, 4], accumulated
    expect(seen).toEqual([
      [1, 1, 1],
      [3, 4, 5],
    ]);
    h.remove();
  });

  it('a parameter used twice in the graph fires once, after its full gradient', () => {
    const w = torch.tensor([1, -2, 0.5], { requiresGrad: true });
    const x = torch.tensor([3, 4, 5]);
    const seen: (number[] | null)[] = [];
    const h = torch.addGradientReadyHook(w, (p) => seen.push(values(p.grad)));
    // loss = sum(w * x) + sum(w * w): d/dw = x + 2w
    w.mul(x).sum().add(w.mul(w).sum()).backward();
    expect(seen).toEqual([[5, 0, 6]]);
    h.remove();
  });

  it('several hooks on one parameter run in registration order; a hook may remove itself', () => {
    const w = torch.tensor([1, 2], { requiresGrad: true });
    const calls: string[] = [];
    const a = torch.addGradientReadyHook(w, () => {
      calls.push('a');
      a.remove();
    });
    const b = torch.addGradientReadyHook(w, () => calls.push('b'));
    w.sum().backward();
    w.sum().backward();
    expect(calls).toEqual(['a', 'b', 'b']);
    b.remove();
  });

  it('an exception in the hook comes out of backward as a clear error, and the process carries on', () => {
    const { model, x, y } = twoLayer();
    const boom = new Error('boom from the hook');
    const p = model.namedParameters().find(([n]) => n === '2.weight')![1];
    const h = torch.addGradientReadyHook(p, () => {
      throw boom;
    });
    let caught: unknown;
    try {
      nn.functional.crossEntropy(model.forward(x), y).backward();
    } catch (e) {
      caught = e;
    }
    expect(caught).toBeInstanceOf(Error);
    expect((caught as Error).message).toMatch(/gradient-ready hook threw.*boom from the hook/);
    expect((caught as Error & { cause?: unknown }).cause).toBe(boom);
    h.remove();
    // Autograd still works afterwards, and hooks on other parameters fire normally.
    for (const q of model.parameters()) q.grad = null;
    let fired = 0;
    const h2 = torch.addGradientReadyHook(p, () => fired++);
    nn.functional.crossEntropy(model.forward(x), y).backward();
    expect(fired).toBe(1);
    expect(p.grad).not.toBeNull();
    h2.remove();
  });

  it('rejects tensors whose gradient is never accumulated', () => {
    expect(() => torch.addGradientReadyHook(torch.tensor([1, 2]), () => {})).toThrow(/leaf that requires grad/);
    const w = torch.tensor([1, 2], { requiresGrad: true });
    expect(() => torch.addGradientReadyHook(w.mul(2), () => {})).toThrow(/leaf that requires grad/);
  });
});
