import { describe, it, expect } from 'vitest';
import * as torch from '../src/index.js';

const { optim } = torch;
const flat = (t: torch.Tensor) => Array.from(t.dataSync() as ArrayLike<number>, Number);

// Loss sum(c ⊙ p²) has gradient 2 c p: a fixed, parameter-dependent gradient.
const C = [0.5, -1, 2, 0.25];
function grads(p: torch.Tensor) {
  p.grad = null;
  p.mul(p).mul(torch.tensor(C)).sum().backward();
}
const refGrad = (p: number[]) => p.map((v, i) => 2 * C[i] * v);

function runSteps(opt: torch.optim.Optimizer, p: torch.Tensor, n: number) {
  for (let i = 0; i < n; i++) {
    grads(p);
    opt.step();
  }
}

describe('optimizers match torch.optim update rules', () => {
  const p0 = [1, -2, 0.5, 3];

  it('SGD with momentum, dampening and weight decay; Nesterov', () => {
    for (const nesterov of [false, true]) {
      const p = new torch.nn.Parameter(torch.tensor(p0, { dtype: 'float64' }));
      const o = { lr: 0.1, momentum: 0.9, dampening: nesterov ? 0 : 0.1, weightDecay: 0.01, nesterov };
      runSteps(new optim.SGD([p], o), p, 5);
      let x = [...p0];
      let buf: number[] | null = null;
      for (let s = 0; s < 5; s++) {
        const d = refGrad(x).map((g, i) => g + o.weightDecay * x[i]);
        buf = buf === null ? [...d] : buf.map((b, i) => o.momentum * b + (1 - o.dampening) * d[i]);
        const upd = nesterov ? d.map((g, i) => g + o.momentum * buf![i]) : buf;
        x = x.map((v, i) => v - o.lr * upd[i]);
      }
      flat(p).forEach((v, i) => expect(v).toBeCloseTo(x[i], 12));
    }
  });

  it('Adam (L2) and AdamW (decoupled) with bias correction', () => {
    for (const kind of ['adam', 'adamw'] as const) {
      const p = new torch.nn.Parameter(torch.tensor(p0, { dtype: 'float64' }));
      const o = { lr: 0.05, betas: [0.8, 0.95] as [number, number], eps: 1e-6, weightDecay: 0.1 };
      runSteps(kind === 'adam' ? new optim.Adam([p], o) : new optim.AdamW([p], o), p, 6);
      let x = [...p0];
      let m = x.map(() => 0);
      let v = x.map(() => 0);
      for (let t = 1; t <= 6; t++) {
        let g = refGrad(x);
        if (kind === 'adamw') x = x.map((xi) => xi * (1 - o.lr * o.weightDecay));
        else g = g.map((gi, i) => gi + o.weightDecay * x[i]);
        m = m.map((mi, i) => o.betas[0] * mi + (1 - o.betas[0]) * g[i]);
        v = v.map((vi, i) => o.betas[1] * vi + (1 - o.betas[1]) * g[i] * g[i]);
        const bc1 = 1 - o.betas[0] ** t;
        const bc2 = 1 - o.betas[1] ** t;
        x = x.map((xi, i) => xi - (o.lr / bc1) * (m[i] / (Math.sqrt(v[i]) / Math.sqrt(bc2) + o.eps)));
      }
      flat(p).forEach((val, i) => expect(val).toBeCloseTo(x[i], 12));
    }
  });

  it('param groups carry their own options; parameters without grad are skipped', () => {
    const a = new torch.nn.Parameter(torch.tensor([1.0]));
    const b = new torch.nn.Parameter(torch.tensor([1.0]));
    const c = new torch.nn.Parameter(torch.tensor([1.0]));
    const opt = new optim.SGD([{ params: [a] }, { params: [b, c], lr: 0.5 }], { lr: 0.1 });
    a.mul(1).sum().backward();
    b.mul(1).sum().backward();
    opt.step();
    expect(flat(a)[0]).toBeCloseTo(0.9, 6);
    expect(flat(b)[0]).toBeCloseTo(0.5, 6);
    expect(flat(c)[0]).toBe(1);
    opt.zeroGrad();
    expect(a.grad).toBeNull();
    a.mul(2).sum().backward();
    opt.zeroGrad(false);
    expect(flat(a.grad!)).toEqual([0]);
    expect(() => new optim.SGD([a, a.mul(2)])).toThrow(/non-leaf/);
    expect(() => new optim.Adam([a], { betas: [1.5, 0.9] })).toThrow(/beta parameter at index 0/);
  });

  it('stateDict/loadStateDict resumes training exactly', () => {
    const mk = () => new torch.nn.Parameter(torch.tensor([1, -2, 0.5, 3], { dtype: 'float64' }));
    const p1 = mk();
    const o1 = new optim.AdamW([p1], { lr: 0.05 });
    runSteps(o1, p1, 3);
    const sd = o1.stateDict();
    expect(Object.keys(sd.state[0]).sort()).toEqual(['exp_avg', 'exp_avg_sq', 'step']);
    expect(sd.state[0].step).toBe(3);
    expect(sd.param_groups[0]).toMatchObject({ lr: 0.05, weight_decay: 0.01, betas: [0.9, 0.999], params: [0] });
    const p2 = mk();
    torch.noGrad(() => p2.copy_(p1));
    const o2 = new optim.AdamW([p2], { lr: 0.9 });
    o2.loadStateDict(sd);
    expect(o2.paramGroups[0].lr).toBe(0.05);
    runSteps(o1, p1, 2);
    runSteps(o2, p2, 2);
    expect(flat(p2)).toEqual(flat(p1));
  });
});

describe('lr schedulers', () => {
  const mkOpt = () => new optim.SGD([new torch.nn.Parameter(torch.ones([1]))], { lr: 1 });
  const lrs = (opt: torch.optim.Optimizer, s: torch.optim.LRScheduler, n: number) => {
    const out: number[] = [];
    for (let i = 0; i < n; i++) {
      out.push(opt.paramGroups[0].lr);
      opt.step();
      s.step();
    }
    return out;
  };

  it('LambdaLR and StepLR', () => {
    const o1 = mkOpt();
    expect(lrs(o1, new optim.LambdaLR(o1, (e) => 0.5 ** e), 4)).toEqual([1, 0.5, 0.25, 0.125]);
    const o2 = mkOpt();
    const got = lrs(o2, new optim.StepLR(o2, 2, 0.1), 5);
    [1, 1, 0.1, 0.1, 0.01].forEach((v, i) => expect(got[i]).toBeCloseTo(v, 12));
  });

  it('warmup + linear and warmup + cosine (HF schedules)', () => {
    const o1 = mkOpt();
    expect(lrs(o1, optim.getLinearScheduleWithWarmup(o1, 2, 6), 7)).toEqual([0, 0.5, 1, 0.75, 0.5, 0.25, 0]);
    const o2 = mkOpt();
    const cos = lrs(o2, optim.getCosineScheduleWithWarmup(o2, 2, 6), 7);
    const expected = [0, 0.5, ...[0, 1, 2, 3, 4].map((k) => 0.5 * (1 + Math.cos((Math.PI * k) / 4)))];
    cos.forEach((v, i) => expect(v).toBeCloseTo(expected[i], 12));
  });

  it('scheduler stateDict restores the epoch and lr', () => {
    const o = mkOpt();
    const s = new optim.StepLR(o, 1, 0.5);
    s.step();
    s.step();
    const st = s.stateDict();
    const o2 = mkOpt();
    const s2 = new optim.StepLR(o2, 1, 0.5);
    s2.loadStateDict(st);
    expect(s2.lastEpoch).toBe(2);
    expect(o2.paramGroups[0].lr).toBe(0.25);
    expect(s2.getLastLr()).toEqual([0.25]);
  });
});

describe('stateDict param_groups', () => {
  it("carry each optimizer's own options only, under torch.optim's names (SGD has no betas, AdamW no momentum)", () => {
    const lin = new torch.nn.Linear(2, 2);
    const keys = (o: torch.optim.Optimizer) => Object.keys(o.stateDict().param_groups[0]).sort();
    expect(keys(new torch.optim.SGD(lin.parameters(), { lr: 0.1, momentum: 0.9 }))).toEqual(['dampening', 'lr', 'maximize', 'momentum', 'nesterov', 'params', 'weight_decay']);
    expect(keys(new torch.optim.AdamW(lin.parameters()))).toEqual(['amsgrad', 'betas', 'eps', 'lr', 'maximize', 'params', 'weight_decay']);
    expect(keys(new torch.optim.Adam(lin.parameters()))).toEqual(['amsgrad', 'betas', 'eps', 'lr', 'maximize', 'params', 'weight_decay']);
  });
});
