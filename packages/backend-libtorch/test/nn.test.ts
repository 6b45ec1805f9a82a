import { describe, it, expect } from 'vitest';
import { HostTensor } from '@accelerate/core';
import * as torch from '../src/index.js';

const { nn } = torch;
const F = nn.functional;
const flat = (t: torch.Tensor) => Array.from(t.dataSync() as ArrayLike<number>, Number);

class Net extends nn.Module {
  fc1 = new nn.Linear(4, 6);
  act = new nn.ReLU();
  fc2 = new nn.Linear(6, 2, { bias: false });
  scale: torch.nn.Parameter;
  constructor() {
    super();
    this.scale = this.registerParameter('scale', new nn.Parameter(torch.ones([1])));
    this.registerBuffer('steps', torch.zeros([], { dtype: 'int64' }));
    this.registerBuffer('cache', torch.zeros([2]), false);
  }
  forward(x: torch.Tensor): torch.Tensor {
    return this.fc2.forward(this.act.forward(this.fc1.forward(x))).mul(this.scale);
  }
}

describe('nn.Module', () => {
  it('finds parameters, buffers and submodules by dotted name', () => {
    const net = new Net();
    expect(net.namedParameters().map(([n, p]) => [n, p.shape])).toEqual([
      ['scale', [1]],
      ['fc1.weight', [6, 4]],
      ['fc1.bias', [6]],
      ['fc2.weight', [2, 6]],
    ]);
    expect(Object.keys(net.stateDict()).sort()).toEqual(['fc1.bias', 'fc1.weight', 'fc2.weight', 'scale', 'steps']);
    expect(net.namedModules().map(([n]) => n)).toEqual(['', 'fc1', 'act', 'fc2']);
    expect(net.parameters().every((p) => p.requiresGrad && p.isLeaf)).toBe(true);
  });

  it('parameters survive tidy scopes and a forward/backward fills their grads', () => {
    const net = torch.tidy(() => new Net());
    const out = net.forward(torch.ones([3, 4]));
    expect(out.shape).toEqual([3, 2]);
    out.sum().backward();
    for (const [n, p] of net.namedParameters()) expect(p.grad?.shape, n).toEqual(p.shape);
    net.zeroGrad();
    expect(net.parameters().every((p) => p.grad === null)).toBe(true);
  });

  it('stateDict / loadStateDict round-trip, strict key checks and shape checks', () => {
    torch.manualSeed(0);
    const a = new Net();
    const b = new Net();
    const x = torch.randn([5, 4]);
    expect(a.forward(x).equal(b.forward(x))).toBe(false);
    b.loadStateDict(a.stateDict());
    expect(a.forward(x).equal(b.forward(x))).toBe(true);
    const sd = a.stateDict();
    delete sd['fc2.weight'];
    sd['extra'] = torch.ones([1]);
    expect(() => b.loadStateDict(sd)).toThrow(/missing keys \[fc2\.weight\].*unexpected keys \[extra\]/);
    expect(b.loadStateDict(sd, { strict: false })).toEqual({ missingKeys: ['fc2.weight'], unexpectedKeys: ['extra'] });
    expect(() => b.loadStateDict({ ...a.stateDict(), scale: torch.ones([2]) })).toThrow(/size mismatch for scale/);
    // core HostTensors load too
    const w = new HostTensor(new Float32Array(24).fill(0.5), [6, 4], 'float32');
    b.loadStateDict({ 'fc1.weight': w }, { strict: false });
    expect(flat(b.fc1.weight)).toEqual(new Array(24).fill(0.5));
  });

  it('stateDict tensors share storage with the parameters', () => {
    const lin = new nn.Linear(2, 2);
    const w = lin.stateDict().weight;
    torch.noGrad(() => lin.weight.fill_(3));
    expect(flat(w)).toEqual([3, 3, 3, 3]);
  });

  it('train/eval switch dropout and batch-norm behaviour', () => {
    const drop = new nn.Dropout(0.5);
    const x = torch.ones([1000]);
    torch.manualSeed(3);
    const y = flat(drop.forward(x));
    expect(new Set(y)).toEqual(new Set([0, 2]));
    drop.eval();
    expect(flat(drop.forward(x))).toEqual(flat(x));
    const bn = new nn.BatchNorm2d(2);
    const inp = torch.arange(16, undefined, 1, { dtype: 'float32' }).reshape(2, 2, 2, 2);
    const out = bn.forward(inp);
    // batch statistics: each channel normalised to mean 0
    expect(Math.abs(out.mean([0, 2, 3]).index(0).item())).toBeLessThan(1e-6);
    expect(bn.numBatchesTracked.item()).toBe(1);
    // running mean moved 10% towards the channel mean (channel 0 values: 0-3, 8-11 -> mean 5.5)
    expect(bn.runningMean.index(0).item()).toBeCloseTo(0.55, 5);
    bn.eval();
    const before = bn.runningMean.index(0).item();
    bn.forward(inp);
    expect(bn.runningMean.index(0).item()).toBe(before);
    expect(bn.numBatchesTracked.item()).toBe(1);
  });

  it('to(dtype) casts parameters in place, keeping their identity', () => {
    const net = new Net();
    const p = net.fc1.weight;
    net.to('float64');
    expect(net.fc1.weight).toBe(p);
    expect(p.dtype).toBe('float64');
    expect((net as unknown as { steps: torch.Tensor }).steps.dtype).toBe('int64');
    expect(net.forward(torch.ones([1, 4], { dtype: 'float64' })).dtype).toBe('float64');
  });

  it('forward pre- and post-hooks run, can replace args/output, and can be removed', () => {
    const lin = new nn.Linear(2, 2);
    const calls: string[] = [];
    const pre = lin.registerForwardPreHook((_m, args) => {
      calls.push('pre');
      return [(args[0] as torch.Tensor).mul(0)];
    });
    const post = lin.registerForwardHook((_m, _args, out) => {
      calls.push('post');
      return (out as torch.Tensor).add(100);
    });
    const y = lin.forward(torch.ones([1, 2]));
    expect(calls).toEqual(['pre', 'post']);
    // input zeroed -> output = bias + 100
    expect(flat(y)).toEqual(flat(lin.bias!.add(100)));
    pre.remove();
    post.remove();
    expect(lin.forward(torch.ones([1, 2])).allclose(F.linear(torch.ones([1, 2]), lin.weight, lin.bias))).toBe(true);
  });
});

describe('layers', () => {
  it('Linear computes x Wᵀ + b', () => {
    const lin = new nn.Linear(3, 2);
    const x = torch.tensor([[1, 2, 3]]);
    const W = lin.weight.tolist() as number[][];
    const b = flat(lin.bias!);
    const expected = W.map((row, j) => row[0] * 1 + row[1] * 2 + row[2] * 3 + b[j]);
    const got = flat(lin.forward(x));
    got.forEach((v, i) => expect(v).toBeCloseTo(expected[i], 5));
    // PyTorch's default init bound 1/sqrt(fan_in)
    expect(Math.max(...flat(lin.weight.abs()))).toBeLessThanOrEqual(1 / Math.sqrt(3));
  });

  it('Conv2d, MaxPool2d, LayerNorm, Embedding, activations produce the expected shapes/values', () => {
    const conv = new nn.Conv2d(1, 4, 3, { padding: 1 });
    const img = torch.randn([2, 1, 8, 8]);
    expect(conv.forward(img).shape).toEqual([2, 4, 8, 8]);
    expect(new nn.MaxPool2d(2).forward(img).shape).toEqual([2, 1, 4, 4]);
    const mp = new nn.MaxPool2d(2).forward(torch.arange(16, undefined, 1, { dtype: 'float32' }).reshape(1, 1, 4, 4));
    expect(mp.tolist()).toEqual([[[[5, 7], [13, 15]]]]);
    const ln = new nn.LayerNorm(4).forward(torch.tensor([[1, 2, 3, 4]]));
    expect(Math.abs(ln.mean().item())).toBeLessThan(1e-6);
    expect(ln.var(undefined, false).item()).toBeCloseTo(1, 3);
    const emb = new nn.Embedding(10, 3, { paddingIdx: 0 });
    const e = emb.forward(torch.tensor([[0, 5]], { dtype: 'int64' }));
    expect(e.shape).toEqual([1, 2, 3]);
    expect(flat(e.index(0, 0))).toEqual([0, 0, 0]);
    expect(flat(e.index(0, 1))).toEqual(flat(emb.weight.index(5)));
    const v = torch.tensor([-1, 0, 2]);
    expect(flat(new nn.ReLU().forward(v))).toEqual([0, 0, 2]);
    expect(flat(new nn.Tanh().forward(v))).toEqual(flat(v).map((z) => Math.fround(Math.tanh(z))));
    const s = flat(new nn.Softmax(0).forward(v));
    const ex = [-1, 0, 2].map(Math.exp);
    s.forEach((p, i) => expect(p).toBeCloseTo(ex[i] / ex.reduce((a, b) => a + b), 6));
    expect(flat(new nn.SiLU().forward(v))[2]).toBeCloseTo(2 / (1 + Math.exp(-2)), 6);
    expect(flat(new nn.GELU().forward(v))[2]).toBeCloseTo(1.9544997, 6);
  });

  it('fused Sequential gives the same outputs and gradients as layer-by-layer', () => {
    torch.manualSeed(5);
    const seq = new nn.Sequential(new nn.Linear(6, 8), new nn.GELU(), new nn.LayerNorm(8), new nn.Linear(8, 3), new nn.LogSoftmax(1));
    const x = torch.randn([4, 6]);
    seq.fused = false;
    const a = seq.forward(x);
    a.sum().backward();
    const gradsA = seq.parameters().map((p) => flat(p.grad!));
    seq.zeroGrad();
    seq.fused = true;
    const b = seq.forward(x);
    b.sum().backward();
    expect(b.equal(a)).toBe(true);
    expect(seq.parameters().map((p) => flat(p.grad!))).toEqual(gradsA);
    expect(seq.at(0)).toBeInstanceOf(nn.Linear);
    expect(seq.length).toBe(5);
  });
});

describe('nn.functional losses', () => {
  const logits = torch.tensor([[2, 0.5, -1], [0.1, 0.2, 3]]);
  const target = torch.tensor([0, 2], { dtype: 'int64' });
  const rows = logits.tolist() as number[][];
  const lse = (r: number[]) => Math.log(r.reduce((a, v) => a + Math.exp(v), 0));

  it('crossEntropy and nllLoss(logSoftmax) match the formula', () => {
    const expected = (rows[0].map((v) => v - lse(rows[0]))[0] + rows[1].map((v) => v - lse(rows[1]))[2]) / -2;
    expect(F.crossEntropy(logits, target).item()).toBeCloseTo(expected, 5);
    expect(F.nllLoss(F.logSoftmax(logits, 1), target).item()).toBeCloseTo(expected, 5);
    expect(F.crossEntropy(logits, target, { reduction: 'sum' }).item()).toBeCloseTo(expected * 2, 5);
    expect(F.crossEntropy(logits, torch.tensor([0, -100], { dtype: 'int64' })).item()).toBeCloseTo(lse(rows[0]) - rows[0][0], 5);
  });

  it('mseLoss, l1Loss and binaryCrossEntropyWithLogits match the formulas', () => {
    const p = [0.5, -1, 2];
    const t = [1, 0, 1];
    const P = torch.tensor(p);
    const T = torch.tensor(t);
    expect(F.mseLoss(P, T).item()).toBeCloseTo(p.reduce((a, v, i) => a + (v - t[i]) ** 2, 0) / 3, 6);
    expect(F.l1Loss(P, T).item()).toBeCloseTo(p.reduce((a, v, i) => a + Math.abs(v - t[i]), 0) / 3, 6);
    const sig = (z: number) => 1 / (1 + Math.exp(-z));
    const bce = -p.reduce((a, z, i) => a + t[i] * Math.log(sig(z)) + (1 - t[i]) * Math.log(1 - sig(z)), 0) / 3;
    expect(F.binaryCrossEntropyWithLogits(P, T).item()).toBeCloseTo(bce, 6);
  });

  it('init functions respect their bounds', () => {
    const w = torch.empty([200, 100]);
    nn.init.xavierUniform_(w);
    const bound = Math.sqrt(6 / 300);
    expect(Math.max(...flat(w.abs()))).toBeLessThanOrEqual(bound);
    nn.init.constant_(w, 0.25);
    expect(new Set(flat(w))).toEqual(new Set([0.25]));
    nn.init.kaimingNormal_(w, 0, 'fan_in', 'relu');
    expect(w.std().item()).toBeCloseTo(Math.sqrt(2 / 100), 2);
  });
});
