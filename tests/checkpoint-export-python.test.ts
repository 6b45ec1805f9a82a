/**
 * `accelerate checkpoint export-python`: a checkpoint written by accelerate-ts (libtorch,
 * AdamW + a linear warm-up schedule) is converted, then Python Accelerate's `load_state`
 * restores it, and one more training step in Python lands on the weights the TS run
 * reaches with the same step. Skipped with a printed reason without a Python that has
 * torch, safetensors and accelerate.
 */
import { describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Accelerator, AcceleratorState } from '@accelerate/core';
import { exportCheckpointToPython } from '@accelerate/cli';
import * as torch from '@accelerate/backend-libtorch';
import { ROOT } from './helpers.js';

const VENV = join(ROOT, '.venv-py/bin/python');
const python = process.env.ACCELERATE_TS_PYTHON || (existsSync(VENV) ? VENV : undefined);
const usable = python !== undefined && spawnSync(python, ['-c', 'import torch, safetensors, accelerate'], { encoding: 'utf8' }).status === 0;

const PY = String.raw`
import json, sys, torch
from accelerate import Accelerator
from safetensors.torch import load_file
d = json.load(sys.stdin)
acc = Accelerator(cpu=True)
model = torch.nn.Sequential(torch.nn.Linear(6, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))
opt = torch.optim.AdamW(model.parameters(), lr=d["lr"], weight_decay=0.01)
warm, total = d["warmup"], d["total"]
sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: s / max(1, warm) if s < warm else max(0.0, (total - s) / max(1, total - warm)))
model, opt, sched = acc.prepare(model, opt, sched)
acc.load_state(d["dir"])
loaded = {k: v.flatten().tolist() for k, v in model.state_dict().items()}
x = torch.tensor(d["x"]).reshape(4, 6); y = torch.tensor(d["y"]).reshape(4, 2)
loss = torch.nn.functional.mse_loss(model(x), y)
acc.backward(loss); opt.step(); sched.step(); opt.zero_grad()
print(json.dumps({"loaded": loaded, "after": {k: v.flatten().tolist() for k, v in model.state_dict().items()},
                  "lr": sched.get_last_lr()[0], "step": acc.step, "loss": loss.item(),
                  "exp_avg0": opt.state_dict()["state"][0]["exp_avg"].flatten().tolist()}))
`;

describe('accelerate checkpoint export-python', () => {
  it('Python Accelerate load_state restores model, AdamW and the schedule; its next step matches the TS run', async (ctx) => {
    if (!usable) {
      console.log(`[checkpoint export-python] skipped: ${python ? `${python} cannot import torch, safetensors and accelerate` : 'no ACCELERATE_TS_PYTHON and no .venv-py'}`);
      ctx.skip();
      return;
    }
    await AcceleratorState.resetState();
    torch.manualSeed(1);
    const { nn, optim } = torch;
    const hyper = { lr: 0.05, warmup: 2, total: 10 };
    const acc = new Accelerator({ backend: torch.libtorch(), configFile: false, env: {} });
    const model = new nn.Sequential(new nn.Linear(6, 8), new nn.ReLU(), new nn.Linear(8, 2));
    const opt = new optim.AdamW(model.parameters(), { lr: hyper.lr, weightDecay: 0.01 });
    const sched = optim.getLinearScheduleWithWarmup(opt, hyper.warmup, hyper.total);
    const [m, o, s] = await acc.prepare(model, opt, sched);
    const batch = (i: number) => ({ x: torch.randn([4, 6]).add(i), y: torch.randn([4, 2]) });
    const step = async (b: { x: torch.Tensor; y: torch.Tensor }) => {
      let value = 0;
      await acc.accumulate(m, () => {
        const loss = nn.functional.mseLoss(m.forward(b.x), b.y);
        acc.backward(loss);
        o.step();
        s.step();
        o.zeroGrad();
        value = loss.item();
      });
      return value;
    };
    for (let i = 0; i < 3; i++) await step(batch(i));
    expect(acc.step).toBe(3);
    const dir = join(mkdtempSync(join(tmpdir(), 'export-python-')), 'ckpt');
    await acc.saveState(dir);
    const snapshot = () => Object.fromEntries(Object.entries(acc.unwrapModel(m).stateDict()).map(([k, v]) => [k, Array.from((v as torch.Tensor).dataSync() as Float32Array)]));
    const saved = snapshot();
    const next = batch(9);
    const tsLoss = await step(next);
    const tsAfter = snapshot();

    const r = exportCheckpointToPython(dir, { python });
    expect(r.out).toBe(`${dir}-python`);
    expect(r.written.sort()).toEqual(['optimizer.bin', 'random_states_0.pkl', 'scheduler.bin']);
    expect(r.copied).toEqual(['model.safetensors']);
    expect(readdirSync(dir)).toContain('manifest.json'); // the source is left as it is

    const out = spawnSync(python!, ['-c', PY], {
      input: JSON.stringify({ dir: r.out, ...hyper, x: Array.from(next.x.dataSync() as Float32Array), y: Array.from(next.y.dataSync() as Float32Array) }),
      encoding: 'utf8',
    });
    expect(out.status, out.stderr).toBe(0);
    const py = JSON.parse(out.stdout.trim().split('\n').pop()!);
    expect(py.loaded).toEqual(saved);
    expect(py.step).toBe(3);
    expect(py.loss).toBeCloseTo(tsLoss, 5);
    expect(py.lr).toBeCloseTo(s.getLastLr()[0]!, 10);
    for (const [k, v] of Object.entries(tsAfter)) {
      const got = py.after[k] as number[];
      expect(got.length).toBe(v.length);
      for (let i = 0; i < v.length; i++) expect(Math.abs(got[i]! - v[i]!)).toBeLessThan(1e-5);
    }
  }, 120_000);

  it('refuses a folder that is not a saveState checkpoint, naming it', () => {
    const empty = mkdtempSync(join(tmpdir(), 'not-ckpt-'));
    expect(() => exportCheckpointToPython(empty, { python: 'python3' })).toThrow(/has no manifest\.json, so it is not an accelerate-ts saveState folder/);
    expect(() => exportCheckpointToPython(join(empty, 'missing'))).toThrow(/is not a folder; pass the folder saveState wrote/);
  });
});
