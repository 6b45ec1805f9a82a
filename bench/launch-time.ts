/**
 * Launch-to-first-step benchmark: wall time from starting `accelerate launch
 * --num_processes 2` until every rank has finished its first optimizer step
 * (a Linear(4, 1) prepared by the Accelerator, one forward/backward/SGD step).
 *
 *   node --import tsx bench/launch-time.ts            (BENCH_REPS=5)
 *
 * Variants, interleaved and each repeated BENCH_REPS times (medians reported):
 *   - `ts`:        accelerate-ts, the rank script in TypeScript (run through tsx),
 *   - `mjs`:       accelerate-ts, the same rank script as plain JavaScript,
 *   - `pyAccelerate`: Python `accelerate launch --multi_gpu --num_processes 2` (MULTI_CPU over gloo)
 *                  with the same script written with torch + accelerate,
 *   - `torchrun`:  `torchrun --standalone --nproc_per_node 2` with raw torch DDP,
 * the Python ones with ACCELERATE_TS_PYTHON (or .venv-py/bin/python; skipped with a
 * reason when absent). Every rank prints its wall-clock time after the step; the time
 * to first step is the latest rank's minus the moment the launcher was spawned.
 * Ratios are baseline / ours, so > 1 means accelerate-ts reaches its first step sooner.
 * Writes bench/results/launch-time.json.
 */
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const SELF = fileURLToPath(import.meta.url);
const ROOT = fileURLToPath(new URL('..', import.meta.url));
const BIN = join(ROOT, 'packages/cli/dist/bin.js');
const REPS = Number(process.env.BENCH_REPS ?? 5);
const TIMEOUT_MS = 120_000;

/** The rank's part: what a user's smallest training script does up to its first step. */
async function rank(): Promise<void> {
  const torch = await import('@accelerate/backend-libtorch');
  const { Accelerator } = await import('@accelerate/core');
  const acc = new Accelerator({ cpu: true });
  const model = new torch.nn.Linear(4, 1);
  const [m, opt] = await acc.prepare(model, new torch.optim.SGD(model.parameters(), { lr: 0.1 }));
  const loss = torch.nn.functional.mseLoss(m.forward(torch.randn([8, 4])), torch.randn([8, 1]));
  await acc.backward(loss);
  opt.step();
  opt.zeroGrad();
  console.log(`FIRST_STEP ${acc.processIndex} ${(performance.timeOrigin + performance.now()).toFixed(3)} ${acc.distributedType} ${acc.numProcesses}`);
}

const MJS = `import * as torch from '@accelerate/backend-libtorch';
import { Accelerator } from '@accelerate/core';
const acc = new Accelerator({ cpu: true });
const model = new torch.nn.Linear(4, 1);
const [m, opt] = await acc.prepare(model, new torch.optim.SGD(model.parameters(), { lr: 0.1 }));
const loss = torch.nn.functional.mseLoss(m.forward(torch.randn([8, 4])), torch.randn([8, 1]));
await acc.backward(loss);
opt.step();
opt.zeroGrad();
console.log(\`FIRST_STEP \${acc.processIndex} \${(performance.timeOrigin + performance.now()).toFixed(3)} \${acc.distributedType} \${acc.numProcesses}\`);
`;

const PY_ACCELERATE = `import time
import torch
from accelerate import Accelerator
acc = Accelerator(cpu=True)
model = torch.nn.Linear(4, 1)
opt = torch.optim.SGD(model.parameters(), lr=0.1)
model, opt = acc.prepare(model, opt)
loss = torch.nn.functional.mse_loss(model(torch.randn(8, 4)), torch.randn(8, 1))
acc.backward(loss)
opt.step()
opt.zero_grad()
print(f"FIRST_STEP {acc.process_index} {time.time() * 1000:.3f} {acc.distributed_type} {acc.num_processes}", flush=True)
`;

const PY_TORCHRUN = `import os, time
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel as DDP
dist.init_process_group("gloo")
model = DDP(torch.nn.Linear(4, 1))
opt = torch.optim.SGD(model.parameters(), lr=0.1)
loss = torch.nn.functional.mse_loss(model(torch.randn(8, 4)), torch.randn(8, 1))
loss.backward()
opt.step()
opt.zero_grad()
print(f"FIRST_STEP {dist.get_rank()} {time.time() * 1000:.3f} MULTI_CPU {dist.get_world_size()}", flush=True)
dist.destroy_process_group()
`;

interface Run {
  /** Spawn of the launcher to the last rank's first step. */
  firstStepMs: number;
  /** Spawn to the launcher's exit. */
  exitMs: number;
  /** Each rank's time to its first step. */
  ranksMs: number[];
  exitCode: number | null;
}

/** Environment without launcher / Accelerate variables and with an empty HF_HOME, as a fresh shell. */
function cleanEnv(): Record<string, string> {
  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries(process.env)) {
    if (v === undefined) continue;
    if (/^(ACCELERATE_|RANK$|WORLD_SIZE$|LOCAL_RANK$|LOCAL_WORLD_SIZE$|MASTER_ADDR$|MASTER_PORT$|OMP_NUM_THREADS$|VITEST|NODE_OPTIONS$)/.test(k)) continue;
    env[k] = v;
  }
  env.HF_HOME = mkdtempSync(join(tmpdir(), 'launch-bench-hf-'));
  return env;
}

function timeLaunch(cmd: string, args: string[], cwd = ROOT): Promise<Run> {
  return new Promise((resolve, reject) => {
    const t0 = performance.timeOrigin + performance.now();
    const child = spawn(cmd, args, { cwd, env: cleanEnv(), stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (d) => (out += d));
    child.stderr.on('data', (d) => (err += d));
    const timer = setTimeout(() => child.kill('SIGKILL'), TIMEOUT_MS);
    child.on('close', (code) => {
      clearTimeout(timer);
      const exitMs = performance.timeOrigin + performance.now() - t0;
      const stamps = [...out.matchAll(/FIRST_STEP (\d+) ([\d.]+) (\S+) (\d+)/g)];
      // The first step is what is timed: a crash at teardown (seen with torch 2.13's gloo at
      // process exit) is recorded, not fatal.
      if (stamps.length !== 2 || !stamps.every((m) => /MULTI_CPU/.test(m[3]!) && m[4] === '2')) {
        reject(new Error(`${cmd} ${args.join(' ')} exited ${code} with ${stamps.length} first steps:\n${out.slice(-1500)}\n${err.slice(-1500)}`));
        return;
      }
      const ranksMs = stamps.sort((a, b) => Number(a[1]) - Number(b[1])).map((m) => Number(m[2]) - t0);
      resolve({ firstStepMs: Math.max(...ranksMs), exitMs, ranksMs, exitCode: code });
    });
  });
}

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
};
const round = (x: number) => Math.round(x * 10) / 10;

async function main(): Promise<void> {
  if (!existsSync(BIN)) throw new Error(`${BIN} is missing: run \`npm run build\` first`);
  const dir = mkdtempSync(join(tmpdir(), 'launch-bench-'));
  // The .mjs rank must resolve @accelerate/* from this repository.
  const mjs = join(ROOT, 'bench', `.launch-time-rank-${process.pid}.mjs`);
  writeFileSync(mjs, MJS);
  const pyAcc = join(dir, 'first_step_accelerate.py');
  const pyDdp = join(dir, 'first_step_torchrun.py');
  writeFileSync(pyAcc, PY_ACCELERATE);
  writeFileSync(pyDdp, PY_TORCHRUN);

  const python = process.env.ACCELERATE_TS_PYTHON ?? join(ROOT, '.venv-py/bin/python');
  const probe = existsSync(python) ? spawnSync(python, ['-c', 'import torch, accelerate; print(torch.__version__, accelerate.__version__)'], { encoding: 'utf8' }) : null;
  const pythonReason = !probe ? `no Python at ${python} (set ACCELERATE_TS_PYTHON)` : probe.status !== 0 ? `${python} lacks torch or accelerate` : null;
  const bin = dirname(python);
  const launchArgs = ['--num_processes', '2', '--num_machines', '1', '--mixed_precision', 'no'];
  const variants: Array<{ name: string; cmd: string; args: string[] }> = [
    { name: 'ts', cmd: process.execPath, args: [BIN, 'launch', ...launchArgs, SELF, '--rank'] },
    { name: 'mjs', cmd: process.execPath, args: [BIN, 'launch', ...launchArgs, mjs] },
  ];
  if (!pythonReason) {
    variants.push({ name: 'pyAccelerate', cmd: join(bin, 'accelerate'), args: ['launch', '--multi_gpu', ...launchArgs, '--dynamo_backend', 'no', pyAcc] });
    variants.push({ name: 'torchrun', cmd: join(bin, 'torchrun'), args: ['--standalone', '--nproc_per_node', '2', pyDdp] });
  } else {
    process.stderr.write(`Python baselines skipped: ${pythonReason}\n`);
  }

  const runs: Record<string, Run[]> = {};
  try {
    // One warm-up of each (file cache), then interleaved repetitions.
    for (const v of variants) await timeLaunch(v.cmd, v.args);
    for (let rep = 0; rep < REPS; rep++) {
      for (const v of variants) (runs[v.name] ??= []).push(await timeLaunch(v.cmd, v.args));
      process.stderr.write(`rep ${rep + 1}/${REPS} done\n`);
    }
  } finally {
    spawnSync('rm', ['-f', mjs]);
  }

  const summary: Record<string, { firstStepMs: number; exitMs: number; firstStepRunsMs: number[]; failedExits: number }> = {};
  for (const [name, rs] of Object.entries(runs)) {
    summary[name] = {
      firstStepMs: round(median(rs.map((r) => r.firstStepMs))),
      exitMs: round(median(rs.map((r) => r.exitMs))),
      firstStepRunsMs: rs.map((r) => round(r.firstStepMs)),
      failedExits: rs.filter((r) => r.exitCode !== 0).length,
    };
  }
  const ratio = (base: string, ours: string) => (summary[base] && summary[ours] ? Math.round((summary[base]!.firstStepMs / summary[ours]!.firstStepMs) * 1000) / 1000 : null);
  const result = {
    what: 'wall time from spawning the launcher (2 processes, CPU, gloo) to the first optimizer step on every rank; medians; ratio = baseline / ours (> 1: accelerate-ts is sooner)',
    date: new Date().toISOString(),
    machine: { cpus: cpus().length, model: cpus()[0]?.model, loadavg: loadavg().map((x) => Math.round(x * 100) / 100) },
    reps: REPS,
    python: pythonReason ? { skipped: pythonReason } : { python, versions: probe!.stdout.trim() },
    results: summary,
    ratios: {
      pyAccelerateVsTs: ratio('pyAccelerate', 'ts'),
      pyAccelerateVsMjs: ratio('pyAccelerate', 'mjs'),
      torchrunVsTs: ratio('torchrun', 'ts'),
      torchrunVsMjs: ratio('torchrun', 'mjs'),
    },
  };
  mkdirSync(join(ROOT, 'bench/results'), { recursive: true });
  writeFileSync(join(ROOT, 'bench/results/launch-time.json'), JSON.stringify(result, null, 2) + '\n');
  console.log(JSON.stringify(result, null, 2));
}

if (process.argv.includes('--rank')) await rank();
else await main();
