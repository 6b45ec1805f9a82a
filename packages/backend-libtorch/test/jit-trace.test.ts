// torch.jit.trace of JS-defined modules: an MLP (fused Sequential forward) and a
// TransformerEncoderLayer-based model are traced, saved, loaded by Python's torch.jit.load
// (the reference venv, torch 2.x) and by jit.load here, and run on another input of the
// same shape: outputs and parameter names must match the JS module.
import { describe, it, expect } from 'vitest';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as torch from '../src/index.js';
import { referencePython, runPython } from './fixtures/python.js';

const { nn } = torch;

class MLP extends nn.Module {
  body = new nn.Sequential(new nn.Linear(12, 32), new nn.ReLU(), new nn.Linear(32, 32), new nn.ReLU());
  head = new nn.Linear(32, 5);
  forward(x: torch.Tensor): torch.Tensor {
    return this.head.forward(this.body.forward(x)).logSoftmax(-1);
  }
}

class Encoder extends nn.Module {
  proj = new nn.Linear(8, 16);
  layer = new nn.TransformerEncoderLayer(16, 4, { dimFeedforward: 32, batchFirst: true });
  norm = new nn.LayerNorm(16);
  head = new nn.Linear(16, 3);
  forward(x: torch.Tensor): [torch.Tensor, torch.Tensor] {
    const h = this.norm.forward(this.layer.forward(this.proj.forward(x)));
    return [this.head.forward(h.mean(1)), h];
  }
}

const LOAD_PY = `
import json, sys, torch
d = json.load(sys.stdin)
m = torch.jit.load(d['path'])
m.eval()
x = torch.tensor(d['x'], dtype=torch.float32).reshape(d['shape'])
with torch.no_grad():
    out = m(x)
outs = list(out) if isinstance(out, tuple) else [out]
print(json.dumps({
  'version': torch.__version__,
  'params': [n for n, p in m.named_parameters()],
  # Loaded script modules list parameters as plain tensors (as for Python-scripted ones).
  'isParam': all(p.requires_grad for _, p in m.named_parameters()),
  'outs': [o.reshape(-1).tolist() for o in outs],
}))
`;

function maxDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  expect(a.length).toBe(b.length);
  let d = 0;
  for (let i = 0; i < a.length; i++) d = Math.max(d, Math.abs(a[i] - b[i]));
  return d;
}

const flat = (t: torch.Tensor) => Array.from(t.dataSync() as Float32Array);
const asList = (o: unknown): torch.Tensor[] => (Array.isArray(o) ? o : [o]) as torch.Tensor[];

function roundTrip(name: string, model: torch.nn.Module, shape: number[]) {
  torch.manualSeed(1);
  model.eval();
  const example = torch.randn(shape);
  const traced = torch.jit.trace(model, example);

  // Same parameters (same tensors, same dotted names) as the JS module.
  expect(traced.namedParameters().map(([n]) => n)).toEqual(model.namedParameters().map(([n]) => n));
  const jsParams = model.parameters();
  traced.parameters().forEach((p, i) => expect(p.dataSync()).toEqual(jsParams[i].dataSync()));

  // Another input of the same shape.
  const x = torch.randn(shape);
  const want = torch.noGrad(() => asList(model.forward(x)).map(flat));
  const got = torch.noGrad(() => asList(traced.forward(x)).map(flat));
  expect(got.length).toBe(want.length);
  for (let i = 0; i < want.length; i++) expect(maxDiff(got[i], want[i])).toBeLessThanOrEqual(1e-6);

  const path = join(mkdtempSync(join(tmpdir(), `jit-trace-${name}-`)), 'model.pt');
  traced.save(path);

  // Back in TS with jit.load.
  const loaded = torch.jit.load(path);
  loaded.eval();
  expect(loaded.namedParameters().map(([n]) => n)).toEqual(model.namedParameters().map(([n]) => n));
  const again = torch.noGrad(() => asList(loaded.forward(x)).map(flat));
  for (let i = 0; i < want.length; i++) expect(maxDiff(again[i], want[i])).toBeLessThanOrEqual(1e-6);

  return { path, x: flat(x), want };
}

function checkPython(name: string, model: torch.nn.Module, r: ReturnType<typeof roundTrip>, shape: number[], ctx: { skip: () => void }) {
  const found = referencePython();
  if ('reason' in found) {
    console.log(`[jit-trace] ${name}: Python check skipped: ${found.reason}`);
    ctx.skip();
    return;
  }
  const py = runPython<{ version: string; params: string[]; isParam: boolean; outs: number[][] }>(found.python, LOAD_PY, { path: r.path, x: r.x, shape });
  expect(py.params).toEqual(model.namedParameters().map(([n]) => n));
  expect(py.isParam).toBe(true);
  expect(py.outs.length).toBe(r.want.length);
  const diffs = py.outs.map((o, i) => maxDiff(o, r.want[i]));
  console.log(`[jit-trace] ${name}: Python torch ${py.version} max |diff| ${diffs.map((d) => d.toExponential(2)).join(', ')}`);
  for (const d of diffs) expect(d).toBeLessThanOrEqual(1e-6);
}

describe('torch.jit.trace', () => {
  it('traces an MLP (fused Sequential) into a module that TS and Python torch.jit.load run with the same outputs', (ctx) => {
    torch.manualSeed(0);
    const model = new MLP();
    const r = roundTrip('mlp', model, [7, 12]);
    checkPython('mlp', model, r, [7, 12], ctx);
  });

  it('traces a TransformerEncoderLayer-based model with a tuple output', (ctx) => {
    torch.manualSeed(0);
    const model = new Encoder();
    const r = roundTrip('encoder', model, [2, 5, 8]);
    checkPython('encoder', model, r, [2, 5, 8], ctx);
  });

  it('shares parameters with the JS module and reports a forward that cannot be traced', () => {
    torch.manualSeed(0);
    const model = new MLP().eval();
    const traced = torch.jit.trace(model, torch.randn([2, 12]));
    const w = model.head.weight;
    torch.noGrad(() => w.mul_(0));
    expect(Array.from(traced.namedParameters().find(([n]) => n === 'head.weight')![1].dataSync() as Float32Array).every((v) => v === 0)).toBe(true);

    class Bad extends nn.Module {
      forward(): torch.Tensor {
        throw new Error('boom');
      }
    }
    expect(() => torch.jit.trace(new Bad(), torch.randn([2]))).toThrow(/jit.trace\(Bad\).*boom/);
  });
});
