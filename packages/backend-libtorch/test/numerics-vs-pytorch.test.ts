// Interop: the same MLP, initial weights and batches trained for 50 AdamW steps here
// and in Python torch (Debian's python3-torch) must give the same losses to 1e-5.
import { describe, it, expect } from 'vitest';
import { spawnSync } from 'node:child_process';
import * as torch from '../src/index.js';

const { nn, optim } = torch;

function findPythonTorch(): { python: string } | { reason: string } {
  const candidates = process.env.PYTHON ? [process.env.PYTHON] : ['python3', '/usr/bin/python3'];
  const errors: string[] = [];
  for (const py of candidates) {
    const r = spawnSync(py, ['-c', 'import torch; print(torch.__version__)'], { encoding: 'utf8', timeout: 60_000 });
    if (r.status === 0) return { python: py };
    errors.push(`${py}: ${(r.stderr || r.error?.message || '').trim().split('\n').pop()}`);
  }
  return { reason: `python torch not importable (${errors.join('; ')})` };
}

// Deterministic data from a small LCG, shared with Python through JSON.
function lcg(seed: number) {
  let s = seed >>> 0;
  return () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 2 ** 32;
  };
}

const SIZES = [20, 32, 32, 5];
const BATCH = 16;
const STEPS = 50;

function makeData() {
  const r = lcg(1234);
  const layers = [];
  for (let i = 0; i < SIZES.length - 1; i++) {
    const fanIn = SIZES[i];
    const bound = 1 / Math.sqrt(fanIn);
    const w = Array.from({ length: SIZES[i + 1] * fanIn }, () => Math.fround((r() * 2 - 1) * bound));
    const b = Array.from({ length: SIZES[i + 1] }, () => Math.fround((r() * 2 - 1) * bound));
    layers.push({ w, b });
  }
  // Four batches cycled, so 50 steps visibly fit them.
  const distinct: Array<{ x: number[]; y: number[] }> = [];
  for (let s = 0; s < 4; s++) {
    const x = Array.from({ length: BATCH * SIZES[0] }, () => Math.fround(r() * 4 - 2));
    const y = Array.from({ length: BATCH }, () => Math.floor(r() * SIZES[SIZES.length - 1]));
    distinct.push({ x, y });
  }
  const batches = Array.from({ length: STEPS }, (_, i) => distinct[i % distinct.length]);
  return { sizes: SIZES, batch: BATCH, layers, batches, lr: 1e-2, weightDecay: 0.05 };
}

const PY = `
import json, sys, torch
torch.set_num_threads(1)
d = json.load(sys.stdin)
s = d['sizes']
layers = []
for i in range(len(s) - 1):
    lin = torch.nn.Linear(s[i], s[i + 1])
    with torch.no_grad():
        lin.weight.copy_(torch.tensor(d['layers'][i]['w'], dtype=torch.float32).reshape(s[i + 1], s[i]))
        lin.bias.copy_(torch.tensor(d['layers'][i]['b'], dtype=torch.float32))
    layers.append(lin)
    if i < len(s) - 2:
        layers.append(torch.nn.GELU() if i == 1 else torch.nn.ReLU())
model = torch.nn.Sequential(*layers)
opt = torch.optim.AdamW(model.parameters(), lr=d['lr'], weight_decay=d['weightDecay'])
losses = []
for b in d['batches']:
    x = torch.tensor(b['x'], dtype=torch.float32).reshape(d['batch'], s[0])
    y = torch.tensor(b['y'], dtype=torch.int64)
    loss = torch.nn.functional.cross_entropy(model(x), y)
    opt.zero_grad()
    loss.backward()
    opt.step()
    losses.append(loss.item())
print(json.dumps(losses))
`;

describe('numerics vs Python torch', () => {
  it('50 AdamW steps of an MLP give the same losses as python torch (1e-5)', (ctx) => {
    const found = findPythonTorch();
    if ('reason' in found) {
      console.log(`[numerics-vs-pytorch] skipped: ${found.reason}`);
      ctx.skip();
      return;
    }
    const data = makeData();
    const py = spawnSync(found.python, ['-c', PY], { input: JSON.stringify(data), encoding: 'utf8', timeout: 120_000 });
    expect(py.status, py.stderr).toBe(0);
    const expected = JSON.parse(py.stdout) as number[];

    const prevThreads = torch.getNumThreads();
    torch.setNumThreads(1);
    const layers: torch.nn.Module[] = [];
    for (let i = 0; i < SIZES.length - 1; i++) {
      const lin = new nn.Linear(SIZES[i], SIZES[i + 1]);
      lin.loadStateDict({
        weight: torch.tensor(data.layers[i].w, { shape: [SIZES[i + 1], SIZES[i]] }),
        bias: torch.tensor(data.layers[i].b),
      });
      layers.push(lin);
      if (i < SIZES.length - 2) layers.push(i === 1 ? new nn.GELU() : new nn.ReLU());
    }
    const model = new nn.Sequential(...layers);
    const opt = new optim.AdamW(model.parameters(), { lr: data.lr, weightDecay: data.weightDecay });
    const losses: number[] = [];
    for (const b of data.batches) {
      torch.tidy(() => {
        const x = torch.tensor(b.x, { shape: [BATCH, SIZES[0]] });
        const y = torch.tensor(b.y, { dtype: 'int64' });
        const loss = nn.functional.crossEntropy(model.forward(x), y);
        opt.zeroGrad();
        loss.backward();
        opt.step();
        losses.push(loss.item());
      });
    }
    torch.setNumThreads(prevThreads);
    expect(losses.length).toBe(STEPS);
    // Training must actually move the loss, or equal losses would prove little.
    expect(losses[STEPS - 1]).toBeLessThan(losses[0] - 0.1);
    const maxDiff = Math.max(...losses.map((l, i) => Math.abs(l - expected[i])));
    console.log(`[numerics-vs-pytorch] loss ${losses[0].toFixed(4)} -> ${losses[STEPS - 1].toFixed(4)}, max |diff| vs python torch = ${maxDiff.toExponential(2)}`);
    expect(maxDiff).toBeLessThan(1e-5);
  });
});

const PY_ENCODER = `
import json, sys, torch
torch.set_num_threads(1)
d = json.load(sys.stdin)
layer = torch.nn.TransformerEncoderLayer(d['dModel'], d['nhead'], dim_feedforward=d['ff'], dropout=0.0,
                                         batch_first=True, norm_first=d['normFirst'], activation=d['activation'])
sd = {k: torch.tensor(v['data'], dtype=torch.float32).reshape(v['shape']) for k, v in d['state'].items()}
layer.load_state_dict(sd, strict=True)
x = torch.tensor(d['x'], dtype=torch.float32).reshape(d['xShape'])
mask = torch.tensor(d['pad'], dtype=torch.bool).reshape(d['xShape'][0], d['xShape'][1])
layer.train()  # the reference math path (eval may take the fused fast path)
y = layer(x, src_key_padding_mask=mask)
print(json.dumps(y.detach().reshape(-1).tolist()))
`;

describe('TransformerEncoderLayer vs Python torch', () => {
  for (const [normFirst, activation] of [
    [false, 'relu'],
    [true, 'gelu'],
  ] as const) {
    it(`same outputs for the same weights (normFirst=${normFirst}, ${activation}, key padding mask)`, (ctx) => {
      const found = findPythonTorch();
      if ('reason' in found) {
        console.log(`[numerics-vs-pytorch] skipped: ${found.reason}`);
        ctx.skip();
        return;
      }
      torch.manualSeed(7);
      const layer = new nn.TransformerEncoderLayer(8, 2, { dimFeedforward: 16, dropout: 0, normFirst, activation });
      // non-trivial LayerNorm affine parameters
      for (const [, p] of layer.namedParameters()) if (p.ndim === 1) torch.noGrad(() => p.normal_(0.5, 0.2));
      const x = torch.randn([2, 5, 8]);
      const pad = [0, 0, 0, 1, 1, 0, 0, 0, 0, 1];
      const state = Object.fromEntries(
        Object.entries(layer.stateDict()).map(([k, t]) => [k, { shape: t.shape, data: Array.from(t.dataSync() as Float32Array) }]),
      );
      const input = { dModel: 8, nhead: 2, ff: 16, normFirst, activation, state, x: Array.from(x.dataSync() as Float32Array), xShape: [2, 5, 8], pad };
      const py = spawnSync(found.python, ['-c', PY_ENCODER], { input: JSON.stringify(input), encoding: 'utf8', timeout: 120_000 });
      expect(py.status, py.stderr).toBe(0);
      const expected = JSON.parse(py.stdout) as number[];
      const got = Array.from(layer.forward(x, { srcKeyPaddingMask: torch.tensor(pad.map(Boolean), { shape: [2, 5] }) }).dataSync() as Float32Array);
      expect(got.length).toBe(expected.length);
      const maxDiff = Math.max(...got.map((v, i) => Math.abs(v - expected[i])));
      expect(maxDiff).toBeLessThan(1e-5);
    });
  }
});
