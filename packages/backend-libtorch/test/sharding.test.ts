// The `sharding` capability on real libtorch: flat buffers whose storage is released and
// given back in place (as FSDP frees gathered parameters after forward and gathers them
// again before backward), setData, tensor gradient hooks, backward-end callbacks,
// activation checkpointing, optimizer.replaceParams.
import { describe, it, expect } from 'vitest';
import * as torch from '../src/index.js';
import { LibtorchBackend } from '../src/backend.js';

const { nn } = torch;
const F = nn.functional;
const backend = new LibtorchBackend();
const sh = backend.sharding;
const values = (t: torch.Tensor | null) => (t ? Array.from(t.dataSync() as ArrayLike<number>, Number) : null);
const expectClose = (a: number[] | null, b: number[] | null, digits = 5) => {
  expect(a).not.toBeNull();
  expect(a!.length).toBe(b!.length);
  const worst = a!.reduce((m, v, i) => Math.max(m, Math.abs(v - b![i]!)), 0);
  expect(worst).toBeLessThan(10 ** -digits / 2);
};

describe('sharding: flat buffers and views', () => {
  it('view / flatten / copy / addInPlace / zero, including empty views and tensors', () => {
    const flat = torch.zeros([10]);
    const a = sh.view(flat, 0, [2, 3]);
    const b = sh.view(flat, 6, [4]);
    const empty = sh.view(flat, 10, [0, 3]);
    expect(a.shape).toEqual([2, 3]);
    expect(sh.numel(empty)).toBe(0);
    sh.copy(a, torch.tensor([[1, 2, 3], [4, 5, 6]], { dtype: 'float64' })); // dtype converted
    sh.copy(b, torch.tensor([7, 8, 9, 10]));
    expect(values(flat)).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
    sh.addInPlace(b, torch.ones([2, 2]));
    expect(values(flat)!.slice(6)).toEqual([8, 9, 10, 11]);
    sh.zero(a);
    expect(values(flat)!.slice(0, 6)).toEqual([0, 0, 0, 0, 0, 0]);
    const f = sh.flatten(torch.tensor([[1, 2], [3, 4]]).t());
    expect(f.shape).toEqual([4]);
    expect(values(f)).toEqual([1, 3, 2, 4]);
    // Empty everywhere.
    sh.copy(empty, torch.zeros([0]));
    sh.addInPlace(empty, torch.zeros([0]));
    sh.zero(empty);
    expect(sh.flatten(torch.zeros([0, 5])).shape).toEqual([0]);
    expect(() => sh.view(flat, 8, [3])).toThrow(/outside the flat buffer/);
    expect(() => sh.copy(a, torch.zeros([5]))).toThrow(/6 elements, the source 5/);
    // copy and flatten record no autograd history.
    const w = torch.ones([3]).requiresGrad_();
    const dst = torch.zeros([3]);
    sh.copy(dst, w.mul(2));
    expect(dst.requiresGrad).toBe(false);
    expect(sh.flatten(w).requiresGrad).toBe(false);
  });

  it('freeStorage releases the memory (counted by memory.info) and allocateStorage gives it back to the same storage, seen by earlier views', () => {
    const n = 1 << 18; // 1 MiB of float32
    const before = backend.memory.info('cpu').allocated;
    const flat = torch.empty([n]);
    expect(backend.memory.info('cpu').allocated - before).toBe(n * 4);
    const v = sh.view(flat, 100, [4, 4]);
    torch.tidy(() => sh.copy(v, torch.arange(16).float()));
    expect(sh.hasStorage(flat)).toBe(true);
    sh.freeStorage(flat);
    expect(sh.hasStorage(flat)).toBe(false);
    expect(backend.memory.info('cpu').allocated - before).toBe(0);
    const z = torch.zeros([16]);
    expect(() => sh.copy(v, z)).toThrow(/storage was released/);
    z.dispose();
    // (ATen ops on a freed view are undefined behaviour: only sharding's own methods check.)
    sh.freeStorage(flat); // twice is harmless
    sh.allocateStorage(flat);
    expect(sh.hasStorage(flat)).toBe(true);
    expect(backend.memory.info('cpu').allocated - before).toBe(n * 4);
    sh.copy(v, torch.full([16], 3));
    expect(values(v)).toEqual(new Array(16).fill(3));
    expect(values(flat.narrow(0, 100, 16))).toEqual(new Array(16).fill(3));
    // Empty buffers and views of storage that are not the whole storage.
    const e = torch.empty([0]);
    sh.freeStorage(e);
    expect(sh.hasStorage(e)).toBe(true);
    sh.allocateStorage(e);
    expect(() => sh.freeStorage(flat.narrow(0, 10, 10))).toThrow(/start its storage/);
  });

  it('leafView shares memory and is a leaf with the requested requiresGrad', () => {
    const flat = torch.zeros([4]);
    const leaf = sh.leafView(flat, true);
    expect(leaf.isLeaf).toBe(true);
    expect(sh.requiresGrad(leaf)).toBe(true);
    expect(sh.requiresGrad(flat)).toBe(false);
    torch.noGrad(() => leaf.add_(1));
    expect(values(flat)).toEqual([1, 1, 1, 1]);
    sh.setGrad(leaf, torch.ones([4]));
    expect(values(sh.grad(leaf))).toEqual([1, 1, 1, 1]);
    sh.setGrad(leaf, null);
    expect(sh.grad(leaf)).toBeNull();
  });
});

describe('sharding: the FSDP cycle (setData to views, free after forward, re-gather before backward)', () => {
  function model(): { m: torch.nn.Sequential; x: torch.Tensor; y: torch.Tensor } {
    torch.manualSeed(3);
    const m = new nn.Sequential(new nn.Linear(5, 7), new nn.Tanh(), new nn.Linear(7, 3));
    return { m, x: torch.randn([6, 5]), y: torch.randint(0, 3, [6]) };
  }

  it('gives the same gradients as a plain run, with saved tensors seeing the re-filled memory and gradient-ready hooks firing', () => {
    const { m, x, y } = model();
    F.crossEntropy(m.forward(x), y).backward();
    const expected = m.namedParameters().map(([n, p]) => [n, values(p.grad)!] as const);
    m.zeroGrad();

    const params = m.parameters();
    const full = params.map((p) => sh.flatten(p)); // the "gathered" values, kept apart
    const total = params.reduce((a, p) => a + sh.numel(p), 0);
    const flat = torch.empty([total]);
    let off = 0;
    const views = params.map((p) => {
      const v = sh.view(flat, off, p.shape);
      off += sh.numel(p);
      return v;
    });
    params.forEach((p, i) => {
      sh.copy(views[i]!, full[i]!);
      sh.setData(p, views[i]!);
    });
    const ready: number[] = [];
    const hooks = params.map((p, i) => backend.models.addGradientReadyHook(p, () => ready.push(i)));
    // The parameters are still the module's leaves and require grad.
    expect(params.every((p) => p.isLeaf && sh.requiresGrad(p))).toBe(true);

    const loss = F.crossEntropy(m.forward(x), y);
    // Reshard: free the gathered memory after forward; scribble over the storage on re-gather.
    sh.freeStorage(flat);
    sh.allocateStorage(flat);
    sh.zero(flat);
    sh.addInPlace(flat, torch.full([total], 123)); // garbage: backward must not see it
    views.forEach((v, i) => sh.copy(v, full[i]!)); // the all-gather (version of flat bumps)
    loss.backward();

    m.namedParameters().forEach(([n, p], i) => {
      expect(n).toBe(expected[i]![0]);
      expectClose(values(p.grad), expected[i]![1]);
    });
    expect(ready.sort()).toEqual([0, 1, 2, 3]);
    hooks.forEach((h) => h.remove());
  });

  it('without re-filling, backward computes with the new contents (the saved tensors are the flat storage, not copies)', () => {
    const { m, x, y } = model();
    const p = m.parameters()[2]!; // second layer weight [3, 7]: its gradient depends on layer-1 output, its use in backward on itself
    const w = sh.flatten(p);
    const flat = torch.empty([sh.numel(p)]);
    sh.copy(flat, w);
    sh.setData(p, sh.view(flat, 0, p.shape));
    const x1 = x.requiresGrad_();
    F.crossEntropy(m.forward(x1), y).backward();
    const g1 = values(x1.grad)!;
    x1.grad = null;
    const loss = F.crossEntropy(m.forward(x1), y);
    sh.freeStorage(flat);
    sh.allocateStorage(flat);
    sh.copy(flat, w.mul(2)); // different weights: x's gradient through layer 2 changes
    loss.backward();
    const g2 = values(x1.grad)!;
    expect(g2.some((v, i) => Math.abs(v - g1[i]!) > 1e-4)).toBe(true);
  });

  it('setData with an empty view (a rank with an empty shard) and back', () => {
    const p = new nn.Parameter(torch.ones([2, 2]));
    const flat = torch.zeros([4]);
    const empty = sh.view(flat, 4, [0]);
    sh.setData(p, empty);
    expect(sh.numel(p)).toBe(0);
    expect(sh.requiresGrad(p)).toBe(true);
    sh.setData(p, sh.view(flat, 0, [2, 2]));
    expect(p.shape).toEqual([2, 2]);
    p.mul(2).sum().backward();
    expect(values(p.grad)).toEqual([2, 2, 2, 2]);
  });
});

describe('sharding: backward hooks', () => {
  it('addTensorGradHook runs when the tensor gradient is ready, before its producer backward; a queued callback runs once at the end', () => {
    torch.manualSeed(5);
    const l1 = new nn.Linear(3, 4);
    const l2 = new nn.Linear(4, 2);
    const x = torch.randn([2, 3]);
    const events: string[] = [];
    const hReady1 = backend.models.addGradientReadyHook(l1.weight, () => events.push('l1.weight ready'));
    const hReady2 = backend.models.addGradientReadyHook(l2.weight, () => events.push('l2.weight ready'));
    const h = l1.forward(x);
    const out = l2.forward(h.relu());
    let callbacks = 0;
    const handle = sh.addTensorGradHook(h, () => {
      events.push('h grad');
      // Hooks may use the other sharding methods, register further hooks and queue callbacks.
      expect(sh.grad(l1.weight)).toBeNull();
      sh.queueBackwardCallback(() => {
        callbacks++;
        events.push(`callback (l1.weight grad ${sh.grad(l1.weight) ? 'set' : 'missing'})`);
      });
    });
    expect(handle).toBeDefined();
    expect(sh.addTensorGradHook(torch.ones([2]), () => {})).toBeUndefined();
    const outHook = sh.addTensorGradHook(out, () => {
      events.push('out grad');
      sh.addTensorGradHook(h, () => events.push('h grad (registered during backward)'));
    });
    out.sum().backward();
    expect(events).toEqual(['out grad', 'l2.weight ready', 'h grad', 'h grad (registered during backward)', 'l1.weight ready', 'callback (l1.weight grad set)']);
    expect(callbacks).toBe(1);

    // Removed hooks stop; a second backward does not rerun the callback.
    events.length = 0;
    handle!.remove();
    outHook!.remove();
    hReady1.remove();
    hReady2.remove();
    l2.forward(l1.forward(x).relu()).sum().backward();
    expect(events).toEqual([]);
    expect(callbacks).toBe(1);
  });

  it('queueBackwardCallback outside backward throws; a throwing hook or callback makes backward throw with it as cause', () => {
    expect(() => sh.queueBackwardCallback(() => {})).toThrow(/no backward is running/);
    const w = torch.ones([3]).requiresGrad_();
    const y = w.mul(2);
    sh.addTensorGradHook(y, () => {
      throw new Error('boom in hook');
    });
    let caught: unknown;
    try {
      y.sum().backward();
    } catch (e) {
      caught = e;
    }
    expect((caught as Error).message).toMatch(/tensor gradient hook threw.*boom in hook/);
    expect(((caught as Error).cause as Error).message).toBe('boom in hook');

    const y2 = w.mul(3);
    sh.addTensorGradHook(y2, () =>
      sh.queueBackwardCallback(() => {
        throw new Error('boom in callback');
      }),
    );
    expect(() => y2.sum().backward()).toThrow(/backward callback threw.*boom in callback/);
    // Backward works normally afterwards.
    w.grad = null;
    w.mul(4).sum().backward();
    expect(values(w.grad)).toEqual([4, 4, 4]);
  });
});

class Block extends nn.Module {
  fc1 = new nn.Linear(32, 256);
  fc2 = new nn.Linear(256, 256);
  fc3 = new nn.Linear(256, 32);
  drop = new nn.Dropout(0.3);
  forward(x: torch.Tensor): torch.Tensor {
    const a = this.fc1.forward(x).relu();
    const b = this.drop.forward(this.fc2.forward(a).tanh());
    return this.fc3.forward(b).add(x);
  }
}

describe('sharding: checkpointModule', () => {
  function run(checkpoint: boolean): { loss: number; grads: number[][]; held: number; xGrad: number[] } {
    torch.manualSeed(11);
    const blocks = [new Block(), new Block()];
    const head = new nn.Linear(32, 4);
    const handles = checkpoint ? blocks.map((b) => sh.checkpointModule!(b)) : [];
    const x = torch.randn([64, 32]).requiresGrad_();
    const y = torch.randint(0, 4, [64]);
    torch.manualSeed(12); // dropout masks
    const before = backend.memory.info('cpu').allocated;
    let h = x;
    for (const b of blocks) h = b.forward(h);
    const loss = F.crossEntropy(head.forward(h), y);
    const held = backend.memory.info('cpu').allocated - before;
    loss.backward();
    handles.forEach((hd) => hd.remove());
    const params = [...blocks.flatMap((b) => b.parameters()), ...head.parameters()];
    return { loss: loss.item(), grads: params.map((p) => values(p.grad)!), held, xGrad: values(x.grad)! };
  }

  it('gives the same loss and gradients (dropout included) while holding fewer bytes after forward', () => {
    const plain = run(false);
    const ckpt = run(true);
    expect(ckpt.loss).toBeCloseTo(plain.loss, 6);
    ckpt.grads.forEach((g, i) => expectClose(g, plain.grads[i]!, 5));
    expectClose(ckpt.xGrad, plain.xGrad, 5);
    // Plain keeps ~5 activations of [64, 256] per block; checkpointed keeps the block inputs.
    expect(ckpt.held).toBeLessThan(plain.held / 2);
  });

  it('works for a child of a fused Sequential, runs forward hooks again in recomputation, is off without grad and undone by remove()', () => {
    torch.manualSeed(2);
    const seq = new nn.Sequential(new nn.Linear(4, 8), new nn.ReLU(), new nn.Linear(8, 2));
    const ref = new nn.Sequential(new nn.Linear(4, 8), new nn.ReLU(), new nn.Linear(8, 2));
    ref.loadStateDict(seq.stateDict());
    const x = torch.randn([3, 4]);
    ref.forward(x).square().sum().backward();
    let calls = 0;
    let layer0GradAtEnd: boolean | undefined;
    backend.models.addForwardHooks(seq.at(2), {
      pre: () => {
        calls++;
        // In the recomputation (inside backward): a queued callback runs after the whole backward.
        if (calls === 2) sh.queueBackwardCallback(() => (layer0GradAtEnd = sh.grad(seq.at(0).parameters()[0]!) !== null));
      },
    });
    const handle = sh.checkpointModule!(seq.at(2));
    // x does not require grad: layer 0's parameters still get theirs through the checkpoint.
    const handle0 = sh.checkpointModule!(seq.at(0));
    expect(() => sh.checkpointModule!(seq.at(0))).toThrow(/already checkpointed/);
    const out = seq.forward(x);
    expect(calls).toBe(1);
    expect(out.gradFn).toBe('CheckpointBackward');
    out.square().sum().backward();
    expect(calls).toBe(2); // recomputed in backward
    expect(layer0GradAtEnd).toBe(true);
    seq.parameters().forEach((p, i) => expectClose(values(p.grad), values(ref.parameters()[i]!.grad)));
    torch.noGrad(() => seq.forward(x));
    expect(calls).toBe(3);
    handle.remove();
    handle0.remove();
    expect(seq.forward(x).gradFn).not.toBe('CheckpointBackward');
  });
});

describe('optimizers.replaceParams', () => {
  it('points each group at the replacements with the same hyper-parameters, and refuses once there is state', () => {
    const a = new nn.Parameter(torch.ones([2]));
    const b = new nn.Parameter(torch.ones([3]));
    const opt = new torch.optim.SGD([{ params: [a] }, { params: [b], lr: 0.5 }], { lr: 0.1 });
    const a2 = sh.leafView(torch.zeros([2]), true);
    const b2 = sh.leafView(torch.zeros([3]), true);
    backend.optimizers.replaceParams!(opt, (p) => (p === a ? a2 : b2));
    expect(opt.paramGroups.map((g) => g.params)).toEqual([[a2], [b2]]);
    expect(opt.paramGroups.map((g) => g.lr)).toEqual([0.1, 0.5]);
    sh.setGrad(a2, torch.ones([2]));
    sh.setGrad(b2, torch.ones([3]));
    sh.setGrad(a, torch.ones([2]));
    opt.step();
    expect(values(a2)!.map((v) => +v.toFixed(6))).toEqual([-0.1, -0.1]);
    expect(values(b2)).toEqual([-0.5, -0.5, -0.5]);
    expect(values(a)).toEqual([1, 1]); // the original is no longer stepped
    const adam = new torch.optim.Adam([a], { lr: 0.1 });
    adam.step();
    expect(() => backend.optimizers.replaceParams!(adam, () => a2)).toThrow(/already has state/);
  });
});
