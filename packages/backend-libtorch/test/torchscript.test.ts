// TorchScript interop: a module scripted and saved by Python's torch.jit.save is loaded
// with torch.jit.load, run, trained with this package's AdamW (same losses as Python),
// and saved back for Python to load.
import { describe, it, expect, beforeAll } from 'vitest';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as torch from '../src/index.js';
import { runPython, sameTorchPython } from './fixtures/python.js';

const { nn, optim } = torch;
const F = nn.functional;

// torch.jit.script reads the class source, so the script lives in a file.
const MAKE_PY = `
import json, sys, torch
from typing import Dict, List, Tuple
torch.manual_seed(0)
torch.set_num_threads(1)

class Net(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.body = torch.nn.Sequential(torch.nn.Linear(6, 16), torch.nn.ReLU())
        self.drop = torch.nn.Dropout(0.5)
        self.head = torch.nn.Linear(16, 3)
        self.register_buffer('offset', torch.full((3,), 0.25))

    def forward(self, x: torch.Tensor, scale: float = 1.0) -> Tuple[torch.Tensor, torch.Tensor]:
        y = self.head(self.drop(self.body(x))) * scale + self.offset
        return y, y.softmax(-1)

    @torch.jit.export
    def features(self, x: torch.Tensor, k: int) -> Dict[str, torch.Tensor]:
        h = self.body(x)
        return {'first': h[:, :k], 'norm': (h * h).sum(1)}

    @torch.jit.export
    def total(self, xs: List[torch.Tensor]) -> torch.Tensor:
        return torch.stack(xs).sum(0)

d = json.load(open(sys.argv[1]))
m = torch.jit.script(Net())
torch.jit.save(m, d['path'])

out = {'version': torch.__version__}
out['params'] = [[n, p.detach().reshape(-1).tolist()] for n, p in m.named_parameters()]
out['buffers'] = [n for n, _ in m.named_buffers()]
m.eval()
x = torch.tensor(d['x'], dtype=torch.float32).reshape(-1, 6)
y, p = m(x, 2.0)
out['y'] = y.reshape(-1).tolist()
out['p'] = p.reshape(-1).tolist()
f = m.features(x, 5)
out['first'] = f['first'].reshape(-1).tolist()

# 20 AdamW steps on a fresh load (eval: no dropout), as the JS side does.
t = torch.jit.load(d['path'])
t.eval()
opt = torch.optim.AdamW(t.parameters(), lr=0.05, weight_decay=0.01)
X = torch.tensor(d['X'], dtype=torch.float32).reshape(-1, 6)
Y = torch.tensor(d['Y'], dtype=torch.int64)
losses = []
for _ in range(20):
    loss = torch.nn.functional.cross_entropy(t(X)[0], Y)
    opt.zero_grad()
    loss.backward()
    opt.step()
    losses.append(loss.item())
out['losses'] = losses
print(json.dumps(out))
`;

const CHECK_PY = `
import json, sys, torch
d = json.load(sys.stdin)
m = torch.jit.load(d['path'])
m.eval()
x = torch.tensor(d['x'], dtype=torch.float32).reshape(-1, 6)
print(json.dumps({'y': m(x)[0].reshape(-1).tolist(), 'head': m.head.weight.detach().reshape(-1).tolist()}))
`;

function lcgFloats(n: number, seed: number): number[] {
  let s = seed >>> 0;
  return Array.from({ length: n }, () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return Math.fround((s / 2 ** 32) * 4 - 2);
  });
}

const x = lcgFloats(4 * 6, 11);
const X = lcgFloats(16 * 6, 12);
const Y = Array.from({ length: 16 }, (_, i) => (i * 7) % 3);

interface MadeByPython {
  version: string;
  params: Array<[string, number[]]>;
  buffers: string[];
  y: number[];
  p: number[];
  first: number[];
  losses: number[];
}

const maxDiff = (a: ArrayLike<number>, b: ArrayLike<number>) => {
  expect(a.length).toBe(b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
};
const floats = (t: torch.Tensor) => Array.from(t.dataSync() as Float32Array);

let skipReason: string | undefined;
let python = '';
let dir = '';
let made: MadeByPython;

beforeAll(() => {
  const found = sameTorchPython();
  if ('reason' in found) {
    skipReason = found.reason;
    return;
  }
  // TorchScript files load in the same or a newer libtorch, not reliably in an older one.
  const num = (v: string) => v.split('.').slice(0, 2).map(Number);
  const [pm, pn] = num(found.torchVersion);
  const [am, an] = num(torch.version);
  if (pm > am || (pm === am && pn > an)) {
    skipReason = `the only Python torch (${found.torchVersion} at ${found.python}) is newer than the addon's libtorch ${torch.version}`;
    return;
  }
  python = found.python;
  dir = mkdtempSync(join(tmpdir(), 'acc-torchscript-'));
  writeFileSync(join(dir, 'make.py'), MAKE_PY);
  writeFileSync(join(dir, 'input.json'), JSON.stringify({ path: join(dir, 'net.pt'), x, X, Y }));
  const r = spawnSync(python, [join(dir, 'make.py'), join(dir, 'input.json')], { encoding: 'utf8', timeout: 180_000 });
  if (r.status !== 0) throw new Error(`${python} make.py failed: ${r.stderr}`);
  made = JSON.parse(r.stdout) as MadeByPython;
}, 180_000);

function skipIfNoPython(ctx: { skip: () => void }): boolean {
  if (!skipReason) return false;
  console.log(`[torchscript] skipped: ${skipReason}`);
  ctx.skip();
  return true;
}

describe('torch.jit.load of a module saved by Python', () => {
  it('exposes parameters and buffers under Python names with Python values, and the methods with their schema', (ctx) => {
    if (skipIfNoPython(ctx)) return;
    const m = torch.jit.load(join(dir, 'net.pt'));
    expect(m).toBeInstanceOf(nn.Module);
    const named = m.namedParameters();
    expect(named.map(([n]) => n)).toEqual(made.params.map(([n]) => n));
    named.forEach(([n, p], i) => {
      expect(p).toBeInstanceOf(nn.Parameter);
      expect(p.requiresGrad).toBe(true);
      expect(p.isLeaf).toBe(true);
      expect(p.dataSync(), n).toEqual(Float32Array.from(made.params[i][1]));
    });
    expect(m.namedBuffers().map(([n]) => n)).toEqual(made.buffers);
    expect(Object.keys(m.stateDict()).sort()).toEqual([...made.params.map(([n]) => n), ...made.buffers].sort());
    expect(m.methodNames().sort()).toEqual(['features', 'forward', 'total']);
    expect(m.schema()).toMatch(/^forward\(.*Tensor x, float scale=1\.?\) -> \(\(Tensor, Tensor\)\)$/);
  });

  it('forward and exported methods give Python’s results (tuple out, float default, int arg, Dict and List)', (ctx) => {
    if (skipIfNoPython(ctx)) return;
    const m = torch.jit.load(join(dir, 'net.pt'));
    m.eval();
    const xt = torch.tensor(x, { shape: [4, 6] });
    const [y, p] = m.forward(xt, 2) as [torch.Tensor, torch.Tensor];
    expect(y.shape).toEqual([4, 3]);
    expect(maxDiff(floats(y), made.y)).toBeLessThan(1e-6);
    expect(maxDiff(floats(p), made.p)).toBeLessThan(1e-6);
    // the float argument's default (1.0) applies when it is left out
    const [y1] = m.forward(xt) as [torch.Tensor];
    expect(maxDiff(floats(y1.sub(0.25).mul(2).add(0.25)), made.y)).toBeLessThan(1e-5);
    const f = m.runMethod('features', xt, 5) as { first: torch.Tensor; norm: torch.Tensor };
    expect(Object.keys(f).sort()).toEqual(['first', 'norm']);
    expect(maxDiff(floats(f.first), made.first)).toBeLessThan(1e-6);
    const total = m.runMethod('total', [torch.ones([2]), torch.full([2], 3)]) as torch.Tensor;
    expect(total.tolist()).toEqual([4, 4]);
  });

  it('train() turns dropout on inside the compiled code, eval() off; a parent module’s eval() reaches it', (ctx) => {
    if (skipIfNoPython(ctx)) return;
    const m = torch.jit.load(join(dir, 'net.pt'));
    const xt = torch.tensor(x, { shape: [4, 6] });
    m.train();
    torch.manualSeed(1);
    const a = floats((m.forward(xt, 2) as torch.Tensor[])[0]);
    const b = floats((m.forward(xt, 2) as torch.Tensor[])[0]);
    expect(maxDiff(a, b)).toBeGreaterThan(1e-3); // dropout masks differ between calls
    class Wrapper extends nn.Module {
      inner = m;
      forward(t: torch.Tensor) {
        return (this.inner.forward(t, 2) as torch.Tensor[])[0];
      }
    }
    const w = new Wrapper();
    w.eval();
    expect(maxDiff(floats(w.forward(xt)), made.y)).toBeLessThan(1e-6);
    w.train();
    expect(maxDiff(floats(w.forward(xt)), made.y)).toBeGreaterThan(1e-3);
  });

  it('trains with this package’s AdamW: 20 steps give Python’s losses (1e-5); save() writes a module Python loads with the trained weights', (ctx) => {
    if (skipIfNoPython(ctx)) return;
    const prevThreads = torch.getNumThreads();
    torch.setNumThreads(1);
    try {
      const m = torch.jit.load(join(dir, 'net.pt'));
      m.eval();
      const opt = new optim.AdamW(m.parameters(), { lr: 0.05, weightDecay: 0.01 });
      const Xt = torch.tensor(X, { shape: [16, 6] });
      const Yt = torch.tensor(Y, { dtype: 'int64' });
      const losses: number[] = [];
      for (let i = 0; i < 20; i++) {
        torch.tidy(() => {
          const loss = F.crossEntropy((m.forward(Xt) as torch.Tensor[])[0], Yt);
          opt.zeroGrad();
          loss.backward();
          for (const p of m.parameters()) expect(p.grad).not.toBeNull();
          opt.step();
          losses.push(loss.item());
        });
      }
      expect(losses[19]).toBeLessThan(losses[0] - 0.2);
      expect(maxDiff(losses, made.losses)).toBeLessThan(1e-5);

      const out = join(dir, 'trained.pt');
      m.save(out);
      const check = runPython<{ y: number[]; head: number[] }>(python, CHECK_PY, { path: out, x });
      const head = m.namedParameters().find(([n]) => n === 'head.weight')![1];
      expect(Float32Array.from(check.head)).toEqual(head.dataSync());
      const ours = floats((m.forward(torch.tensor(x, { shape: [4, 6] })) as torch.Tensor[])[0]);
      expect(maxDiff(ours, check.y)).toBeLessThan(1e-6);
      // and the trained weights are not the initial ones
      expect(maxDiff(check.y, made.y)).toBeGreaterThan(1e-3);
    } finally {
      torch.setNumThreads(prevThreads);
    }
  });

  it('wrong arguments become JS TypeErrors naming the argument; a missing file fails with its path', (ctx) => {
    if (skipIfNoPython(ctx)) return;
    const m = torch.jit.load(join(dir, 'net.pt'));
    expect(() => m.forward('not a tensor')).toThrow(/forward\(\): argument 'x': expected Tensor, got a string/);
    expect(() => m.runMethod('features', torch.ones([2, 6]), 1.5)).toThrow(/argument 'k': expected int/);
    expect(() => m.runMethod('nope')).toThrow(/no method 'nope'/);
    expect(() => m.forward(torch.ones([2, 5]))).toThrow(/shapes cannot be multiplied|size mismatch|mat1 and mat2/);
    expect(() => torch.jit.load(join(dir, 'missing.pt'))).toThrow(/jit\.load: no file at .*missing\.pt/);
    // the module still works after the errors
    expect((m.forward(torch.ones([1, 6])) as torch.Tensor[])[0].shape).toEqual([1, 3]);
  });
});
