#!/usr/bin/env node
// MLP 784-512-512-10, batch 128, AdamW: steps/s of this package vs Python torch on the
// same machine and threads. Usage: node bench/mlp.mjs [steps] (after `npm run build`).
// Writes bench/results.json (git-ignored) and prints the ratio.
import { spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import * as torch from '../dist/index.js';

const steps = Number(process.argv[2] ?? 200);
const threads = Number(process.env.BENCH_THREADS ?? 1);
torch.setNumThreads(threads);
const { nn, optim } = torch;

function bench(fused) {
  torch.manualSeed(0);
  const model = new nn.Sequential(new nn.Linear(784, 512), new nn.ReLU(), new nn.Linear(512, 512), new nn.ReLU(), new nn.Linear(512, 10));
  model.fused = fused;
  const opt = new optim.AdamW(model.parameters(), { lr: 1e-3 });
  const x = torch.randn([128, 784]);
  const y = torch.randint(0, 10, [128]);
  const step = () =>
    torch.tidy(() => {
      const loss = nn.functional.crossEntropy(model.forward(x), y);
      opt.zeroGrad();
      loss.backward();
      opt.step();
    });
  for (let i = 0; i < 20; i++) step();
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < steps; i++) step();
  return steps / (Number(process.hrtime.bigint() - t0) / 1e9);
}

const PY = `
import time, torch, sys
torch.set_num_threads(${threads}); torch.manual_seed(0)
m = torch.nn.Sequential(torch.nn.Linear(784,512), torch.nn.ReLU(), torch.nn.Linear(512,512), torch.nn.ReLU(), torch.nn.Linear(512,10))
opt = torch.optim.AdamW(m.parameters(), lr=1e-3)
x = torch.randn(128, 784); y = torch.randint(0, 10, (128,))
def step():
    loss = torch.nn.functional.cross_entropy(m(x), y); opt.zero_grad(); loss.backward(); opt.step()
for _ in range(20): step()
t = time.perf_counter()
for _ in range(${steps}): step()
print(${steps} / (time.perf_counter() - t))
`;

const ours = bench(true);
const unfused = bench(false);
let python = null;
for (const py of [process.env.PYTHON, 'python3', '/usr/bin/python3'].filter(Boolean)) {
  const r = spawnSync(py, ['-c', PY], { encoding: 'utf8' });
  if (r.status === 0) {
    python = Number(r.stdout.trim());
    break;
  }
}
const result = { libtorch: torch.version, threads, steps, stepsPerSec: { fusedSequential: ours, perLayer: unfused, python }, ratioVsPython: python ? ours / python : null };
writeFileSync(new URL('./results.json', import.meta.url), JSON.stringify(result, null, 2));
console.log(JSON.stringify(result));
