/**
 * `accelerate checkpoint import-python`: Python Accelerate trains a small MLP with AdamW and a
 * linear warm-up LambdaLR for 4 steps and calls save_state; the folder is converted and
 * `loadState` restores it in TS; the next 3 steps give the losses Python's own resume from
 * its save_state gives (and the same torch RNG draw). Skipped with a printed reason without a
 * Python that has torch, safetensors and accelerate.
 */
import { describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Accelerator, AcceleratorState, DataLoader, type CheckpointManifest } from '@accelerate/core';
import { importCheckpointFromPython } from '@accelerate/cli';
import * as torch from '@accelerate/backend-libtorch';
import { ROOT, cleanEnv, startAccelerate } from './helpers.js';

const VENV = join(ROOT, '.venv-py/bin/python');
const python = process.env.ACCELERATE_TS_PYTHON || (existsSync(VENV) ? VENV : undefined);
const usable = python !== undefined && spawnSync(python, ['-c', 'import torch, safetensors, accelerate'], { encoding: 'utf8' }).status === 0;

const SAVED_STEPS = 4;
const MORE_STEPS = 3;
const hyper = { lr: 0.05, warmup: 3, total: 12 };

const PY = String.raw`
import json, sys, torch
from accelerate import Accelerator
d = json.loads(sys.argv[1])
acc = Accelerator(cpu=True)
torch.manual_seed(0)
X = torch.randn(4 * 8, 6); Y = torch.randn(4 * 8, 2)
torch.manual_seed(1 if d["mode"] == "train" else 7)  # the resumed model starts from other weights
model = torch.nn.Sequential(torch.nn.Linear(6, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))
if d.get("opt", "adamw") == "sgd":
    opt = torch.optim.SGD(model.parameters(), lr=d["lr"], momentum=0.9, weight_decay=0.001)
else:
    opt = torch.optim.AdamW(model.parameters(), lr=d["lr"], weight_decay=0.01)
warm, total = d["warmup"], d["total"]
sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: s / max(1, warm) if s < warm else max(0.0, (total - s) / max(1, total - warm)))
class Counter:
    def __init__(self): self.count = 0
    def state_dict(self): return {"count": self.count, "name": "counter"}
    def load_state_dict(self, s): self.count = s["count"]
counter = Counter()
model, opt, sched = acc.prepare(model, opt, sched)
acc.register_for_checkpointing(counter)
def step(i):
    with acc.accumulate(model):
        loss = torch.nn.functional.mse_loss(model(X[4 * i:4 * i + 4]), Y[4 * i:4 * i + 4])
        acc.backward(loss); opt.step(); sched.step(); opt.zero_grad()
    counter.count += 1
    return loss.item()
if d["mode"] == "train":
    losses = [step(i) for i in range(d["saved"])]
    acc.save_state(d["dir"], safe_serialization=d.get("safe", True))
    print(json.dumps({"X": X.flatten().tolist(), "Y": Y.flatten().tolist(), "losses": losses}))
else:
    acc.load_state(d["dir"])
    out = {"step": acc.step, "count": counter.count, "lr": sched.get_last_lr()[0], "rng": torch.randn(3).tolist()}
    out["losses"] = [step(d["saved"] + k) for k in range(d["more"])]
    out["after"] = {k: v.flatten().tolist() for k, v in model.state_dict().items()}
    print(json.dumps(out))
`;

function runPy(args: Record<string, unknown>) {
  const r = spawnSync(python!, ['-c', PY, JSON.stringify({ ...hyper, saved: SAVED_STEPS, more: MORE_STEPS, ...args })], { encoding: 'utf8', maxBuffer: 64 * 1024 * 1024 });
  expect(r.status, r.stderr).toBe(0);
  return JSON.parse(r.stdout.trim().split('\n').pop()!);
}

describe('accelerate checkpoint import-python', () => {
  it('Python save_state -> import -> loadState: the next 3 TS losses match Python resuming from its own save_state', async (ctx) => {
    if (!usable) {
      console.log(`[checkpoint import-python] skipped: ${python ? `${python} cannot import torch, safetensors and accelerate` : 'no ACCELERATE_TS_PYTHON and no .venv-py'}`);
      ctx.skip();
      return;
    }
    const pyDir = join(mkdtempSync(join(tmpdir(), 'import-python-')), 'py_ckpt');
    const trained = runPy({ mode: 'train', dir: pyDir });
    const resumed = runPy({ mode: 'resume', dir: pyDir });
    expect(readdirSync(pyDir).sort()).toEqual(['custom_checkpoint_0.pkl', 'model.safetensors', 'optimizer.bin', 'random_states_0.pkl', 'scheduler.bin']);

    const r = await importCheckpointFromPython(pyDir, { python });
    expect(r.out).toBe(`${pyDir}-ts`);
    expect(r.written).toEqual([
      'custom_checkpoint_0.json',
      'model.safetensors',
      'optimizer.json',
      'optimizer.safetensors',
      'random_states_0.json',
      'random_states_0.safetensors',
      'scheduler.json',
    ]);
    expect(r.skipped.join('\n')).toMatch(/random_states_0\.pkl: random_state, numpy_random_seed/);
    const manifest = JSON.parse(readFileSync(join(r.out, 'manifest.json'), 'utf8')) as CheckpointManifest;
    expect(manifest.step).toBe(SAVED_STEPS);
    expect(manifest.importedFrom?.dir).toBe(pyDir);
    expect(readdirSync(pyDir).sort()).toContain('optimizer.bin'); // the source is left as it is

    await AcceleratorState.resetState();
    torch.manualSeed(123); // other initial weights: everything must come from the checkpoint
    const { nn, optim } = torch;
    const acc = new Accelerator({ backend: torch.libtorch(), configFile: false, env: {} });
    const model = new nn.Sequential(new nn.Linear(6, 8), new nn.ReLU(), new nn.Linear(8, 2));
    const opt = new optim.AdamW(model.parameters(), { lr: hyper.lr, weightDecay: 0.01 });
    const sched = optim.getLinearScheduleWithWarmup(opt, hyper.warmup, hyper.total);
    const indices = Array.from({ length: 32 }, (_, i) => i);
    const [m, o, s, loader] = await acc.prepare(model, opt, sched, new DataLoader(indices, { batchSize: 4, collateFn: (b: number[]) => b }));
    const counter = { count: 0, stateDict() { return { count: this.count }; }, loadStateDict(st: { count: number }) { this.count = st.count; } };
    acc.registerForCheckpointing(counter);

    const res = await acc.loadState(r.out);
    expect(res.warnings.join('\n')).toMatch(/holds no position for data loader\(s\) 0 .*start from the beginning.*skipFirstBatches/);
    expect(acc.step).toBe(resumed.step);
    expect(counter.count).toBe(resumed.count);
    expect(s.getLastLr()[0]).toBeCloseTo(resumed.lr, 12);
    const rng = Array.from(torch.randn([3]).dataSync() as Float32Array);
    for (let i = 0; i < 3; i++) expect(Math.abs(rng[i]! - resumed.rng[i])).toBeLessThan(1e-6);

    const X = trained.X as number[];
    const Y = trained.Y as number[];
    const losses: number[] = [];
    let k = 0;
    for await (const batch of acc.skipFirstBatches(loader, SAVED_STEPS)) {
      if (k++ === MORE_STEPS) break;
      const x = torch.tensor(batch.map((i) => X.slice(6 * i, 6 * i + 6)));
      const y = torch.tensor(batch.map((i) => Y.slice(2 * i, 2 * i + 2)));
      await acc.accumulate(m, () => {
        const loss = nn.functional.mseLoss(m.forward(x), y);
        acc.backward(loss);
        o.step();
        s.step();
        o.zeroGrad();
        losses.push(loss.item());
      });
    }
    console.log(`[checkpoint import-python] TS losses ${losses.map((l) => l.toFixed(7)).join(', ')}; Python resume ${resumed.losses.map((l: number) => l.toFixed(7)).join(', ')}; max |diff| ${Math.max(...losses.map((l, i) => Math.abs(l - resumed.losses[i]))).toExponential(2)}`);
    expect(losses.length).toBe(MORE_STEPS);
    for (let i = 0; i < MORE_STEPS; i++) expect(Math.abs(losses[i]! - resumed.losses[i])).toBeLessThan(1e-5);
    const after = acc.unwrapModel(m).stateDict() as Record<string, torch.Tensor>;
    for (const [name, v] of Object.entries(resumed.after as Record<string, number[]>)) {
      const got = Array.from(after[name]!.dataSync() as Float32Array);
      for (let i = 0; i < v.length; i++) expect(Math.abs(got[i]! - v[i]!)).toBeLessThan(1e-5);
    }
  }, 180_000);

  it('SGD with momentum and pytorch_model.bin (safe_serialization=False): hyper-parameters and schedule come from the checkpoint', async (ctx) => {
    if (!usable) {
      console.log(`[checkpoint import-python] skipped: ${python ? `${python} cannot import torch, safetensors and accelerate` : 'no ACCELERATE_TS_PYTHON and no .venv-py'}`);
      ctx.skip();
      return;
    }
    const pyDir = join(mkdtempSync(join(tmpdir(), 'import-python-sgd-')), 'py_ckpt');
    const trained = runPy({ mode: 'train', dir: pyDir, opt: 'sgd', safe: false });
    const resumed = runPy({ mode: 'resume', dir: pyDir, opt: 'sgd' });
    expect(readdirSync(pyDir)).toContain('pytorch_model.bin');
    const out = join(mkdtempSync(join(tmpdir(), 'import-python-out-')), 'nested', 'ts_ckpt');
    // Through the real command this time.
    const run = await startAccelerate(['checkpoint', 'import-python', pyDir, out, '--python', python!], { env: cleanEnv(), timeoutMs: 60_000 }).done;
    expect(run.code, run.stderr).toBe(0);
    expect(run.stdout).toContain(`Wrote ${out}: `);
    expect(run.stdout).toMatch(/model\.safetensors.*manifest\.json/);
    expect(run.stdout).toMatch(/In TypeScript: await accelerator\.loadState\(.*skipFirstBatches/s);
    const opt0 = JSON.parse(readFileSync(join(out, 'optimizer.json'), 'utf8')).value;
    expect(Object.keys(opt0.state['0'])).toEqual(['momentum_buffer']); // torch's SGD keeps no step

    await AcceleratorState.resetState();
    torch.manualSeed(5);
    const { nn, optim } = torch;
    const acc = new Accelerator({ backend: torch.libtorch(), configFile: false, env: {} });
    const model = new nn.Sequential(new nn.Linear(6, 8), new nn.ReLU(), new nn.Linear(8, 2));
    // Built with other hyper-parameters than Python's: lr, momentum, weight decay and base_lrs come from the checkpoint.
    const opt = new optim.SGD(model.parameters(), { lr: 0.5, momentum: 0.1, weightDecay: 0 });
    const sched = optim.getLinearScheduleWithWarmup(opt, hyper.warmup, hyper.total);
    const [m, o, s] = await acc.prepare(model, opt, sched);
    const counter = { count: 0, stateDict() { return { count: this.count }; }, loadStateDict(st: { count: number }) { this.count = st.count; } };
    acc.registerForCheckpointing(counter);
    await acc.loadState(out);
    expect(s.getLastLr()[0]).toBeCloseTo(resumed.lr, 12);
    const X = trained.X as number[];
    const Y = trained.Y as number[];
    const losses: number[] = [];
    for (let k = 0; k < MORE_STEPS; k++) {
      const rows = [0, 1, 2, 3].map((j) => 4 * (SAVED_STEPS + k) + j);
      const x = torch.tensor(rows.map((i) => X.slice(6 * i, 6 * i + 6)));
      const y = torch.tensor(rows.map((i) => Y.slice(2 * i, 2 * i + 2)));
      await acc.accumulate(m, () => {
        const loss = nn.functional.mseLoss(m.forward(x), y);
        acc.backward(loss);
        o.step();
        s.step();
        o.zeroGrad();
        losses.push(loss.item());
      });
    }
    console.log(`[checkpoint import-python, SGD] TS losses ${losses.map((l) => l.toFixed(7)).join(', ')}; Python resume ${resumed.losses.map((l: number) => l.toFixed(7)).join(', ')}; max |diff| ${Math.max(...losses.map((l, i) => Math.abs(l - resumed.losses[i]))).toExponential(2)}`);
    for (let i = 0; i < MORE_STEPS; i++) expect(Math.abs(losses[i]! - resumed.losses[i])).toBeLessThan(1e-5);
  }, 180_000);

  it('the CLI refuses what is not a Python save_state folder, and never overwrites; loadState of a Python folder names the command', async () => {
    const root = mkdtempSync(join(tmpdir(), 'import-python-cli-'));
    const env = cleanEnv({ ACCELERATE_TS_PYTHON: '/nonexistent/python' });
    let run = await startAccelerate(['checkpoint', 'import-python', join(root, 'missing')], { env }).done;
    expect(run.code).not.toBe(0);
    expect(run.stderr).toMatch(/missing is not a folder; pass the folder Python Accelerate's save_state wrote/);
    mkdirSync(join(root, 'ts'));
    writeFileSync(join(root, 'ts', 'manifest.json'), '{}');
    run = await startAccelerate(['checkpoint', 'import-python', join(root, 'ts')], { env }).done;
    expect(run.stderr).toMatch(/already an accelerate-ts checkpoint: load it with accelerator\.loadState/);
    mkdirSync(join(root, 'py'));
    writeFileSync(join(root, 'py', 'optimizer.bin'), 'x');
    run = await startAccelerate(['checkpoint', 'import-python', join(root, 'py')], { env }).done;
    expect(run.stderr).toMatch(/cannot run \/nonexistent\/python .*pass --python/);
    expect(existsSync(join(root, 'py-ts'))).toBe(false);
    mkdirSync(join(root, 'py-ts'));
    run = await startAccelerate(['checkpoint', 'import-python', join(root, 'py')], { env }).done;
    expect(run.stderr).toMatch(/py-ts already exists; remove it or pass another --out/);

    await AcceleratorState.resetState();
    const acc = new Accelerator({ backend: torch.libtorch(), configFile: false, env: {} });
    await acc.prepare(new torch.nn.Linear(2, 2));
    await expect(acc.loadState(join(root, 'py'))).rejects.toThrow(/accelerate checkpoint import-python .*py` writes .*py-ts, and loadState\(.*py-ts"\) resumes/);
  }, 60_000);
});
