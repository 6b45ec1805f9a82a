/**
 * Data-parallel scaling benchmark: MLP 784-512-512-10, AdamW, 1 intra-op thread per process.
 *
 *   npm run bench:ddp                     (BENCH_STEPS=300 BENCH_REPS=3)
 *
 * Steps/s and samples/s of
 *   - 1 process, batch 64 and batch 128 (no process group), raw addon, 1 intra-op thread;
 *     and batch 64 with 2 threads (1proc-b64-2threads: one process using both cores),
 *   - 2 processes with DDP over gloo, batch 64 per rank: the raw addon
 *     (backend-libtorch's dataParallel.wrap) and the same loop through `Accelerator`
 *     (prepare, accumulate, backward), ranks given torchrun's variables,
 * and, on the same machine, Python torch of the addon's libtorch version
 * (DistributedDataParallel over gloo) for the same raw runs, plus Python
 * Accelerate's 2-process CPU run (the venv: torch 2.x + accelerate). Scaling =
 * samples/s of the 2-process run / samples/s of one process at the same per-process
 * batch: `scalingVs1procSameBatch` against 1 thread (the second core idle),
 * `scalingVs1proc2threadsSameBatch` against 2 threads (the same cores: the fair one on a
 * 2-core machine, where the ranks share the cores with gloo's threads). `ddpVsPythonDdp2proc`
 * is our 2-process DDP over Python torch's. The OPENBLAS_CORETYPE the addon picks for this
 * CPU is passed to every side, so Debian's python3-torch runs the same kernels. Runs are
 * interleaved and the best of BENCH_REPS kept. ACCELERATE_TORCH_ADDON=<path> measures another
 * build of the addon; BENCH_BASELINE_ADDON=<path> adds that build's 2-process DDP to the same
 * run (`ddpVsBaselineAddon2proc`, before/after); BENCH_C10D_ADDON=<path> adds libtorch's own
 * c10d::Reducer driven from the addon (`ourReducerVsC10dReducer2proc`; see main()).
 * Writes bench/results/ddp.json (or $BENCH_OUT there) with ratios.
 */
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { findFreePort } from '@accelerate/core/internal';

const SELF = fileURLToPath(import.meta.url);
const ROOT = fileURLToPath(new URL('..', import.meta.url));
const STEPS = Number(process.env.BENCH_STEPS ?? 300);
const WARMUP = 30;
const REPS = Number(process.env.BENCH_REPS ?? 3);
const ENV = { OMP_NUM_THREADS: '1', OPENBLAS_NUM_THREADS: '1', MKL_NUM_THREADS: '1' };

type Result = { stepsPerSec: number; commWaitMsPerStep?: number; buckets?: number; version?: string };

// ---- one rank of the Node measurement ------------------------------------------------
async function worker(): Promise<void> {
  const torch = await import('../packages/backend-libtorch/src/index.js');
  const { nn, optim } = torch;
  const world = Number(process.env.WORLD);
  const batch = Number(process.env.BATCH);
  const rank = Number(process.env.RANK ?? 0);
  torch.setNumThreads(Number(process.env.THREADS ?? 1));
  torch.manualSeed(0);
  let model: import('../packages/backend-libtorch/src/index.js').nn.Module = new nn.Sequential(new nn.Linear(784, 512), new nn.ReLU(), new nn.Linear(512, 512), new nn.ReLU(), new nn.Linear(512, 10));
  let opt = new optim.AdamW(model.parameters(), { lr: 1e-3 });
  const xs = Array.from({ length: 8 }, () => torch.keep(torch.randn([batch, 784])));
  const ys = Array.from({ length: 8 }, () => torch.keep(torch.randint(0, 10, [batch])));
  let step: (i: number) => void | Promise<void>;
  let barrier = async (): Promise<void> => {};
  if (process.env.MODE === 'accelerator') {
    // What a user writes: torchrun's variables in the environment, prepare() wraps in DDP.
    const { Accelerator } = await import('@accelerate/core');
    const accelerator = new Accelerator({ backend: torch.libtorch(), configFile: false });
    const [m, o] = await accelerator.prepare(model, opt);
    model = m;
    opt = o;
    barrier = () => accelerator.waitForEveryone();
    step = (i) =>
      accelerator.accumulate(model, () =>
        torch.tidy(() => {
          const loss = nn.functional.crossEntropy(model.forward(xs[i % 8]!), ys[i % 8]!);
          accelerator.backward(loss);
          opt.step();
          opt.zeroGrad();
        }),
      );
  } else if (process.env.MODE === 'c10d') {
    // libtorch's own c10d::Reducer (Python DDP's) over the same gloo group, same bucket caps,
    // gradient_as_bucket_view on as ours; needs an addon built with ddpCreateC10d (see main()).
    const { native } = await import('../packages/backend-libtorch/src/native.js');
    const nat = native as unknown as { ddpCreateC10d?: (g: unknown, p: unknown[], cap: number, first: number, view: boolean) => { prepareForBackward(): void } };
    if (!nat.ddpCreateC10d) throw new Error('MODE=c10d: this addon has no ddpCreateC10d (build it with CPLUS_INCLUDE_PATH pointing at the context.h stub, see BENCH_C10D_ADDON)');
    const backend = new torch.LibtorchBackend();
    const pg = await torch.GlooProcessGroup.init({ rank, worldSize: world, masterAddr: '127.0.0.1', masterPort: Number(process.env.MASTER_PORT), timeoutMs: 120_000 });
    // Same seed on every rank: identical initial weights without a broadcast.
    const reducer = nat.ddpCreateC10d((pg as unknown as { _native: unknown })._native, model.parameters().map((p) => p._h), 25 << 20, 1 << 20, true);
    barrier = () => pg.barrier().wait();
    step = (i) =>
      torch.tidy(() => {
        reducer.prepareForBackward();
        const loss = nn.functional.crossEntropy(model.forward(xs[i % 8]!), ys[i % 8]!);
        backend.autograd.backward(loss, { scale: 1 });
        opt.step();
        opt.zeroGrad();
      });
  } else {
    const backend = new torch.LibtorchBackend();
    if (world > 1) {
      const pg = await torch.GlooProcessGroup.init({ rank, worldSize: world, masterAddr: '127.0.0.1', masterPort: Number(process.env.MASTER_PORT), timeoutMs: 120_000 });
      model = backend.dataParallel.wrap(model, pg, {});
      opt = new optim.AdamW(model.parameters(), { lr: 1e-3 });
      barrier = () => pg.barrier().wait();
    }
    step = (i) =>
      torch.tidy(() => {
        const loss = nn.functional.crossEntropy(model.forward(xs[i % 8]!), ys[i % 8]!);
        backend.autograd.backward(loss, { scale: 1 });
        opt.step();
        opt.zeroGrad();
      });
  }
  const distributed = world > 1 && process.env.MODE !== 'c10d';
  for (let i = 0; i < WARMUP; i++) await step(i);
  await barrier();
  const wait0 = distributed ? torch.ddpInfo(model).commWaitMs : 0;
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < STEPS; i++) await step(i);
  const secs = Number(process.hrtime.bigint() - t0) / 1e9;
  const out: Result = { stepsPerSec: STEPS / secs };
  if (distributed) {
    const info = torch.ddpInfo(model);
    out.commWaitMsPerStep = (info.commWaitMs - wait0) / STEPS;
    out.buckets = info.buckets.length;
    await barrier();
  }
  if (rank === 0) console.log(JSON.stringify(out));
  process.exit(0);
}

// ---- Python torch -----------------------------------------------------------------------
const PY = `
import os, time, json, torch, torch.nn as nn, torch.nn.functional as F
world = int(os.environ["WORLD"]); batch = int(os.environ["BATCH"]); rank = int(os.environ.get("RANK", "0"))
steps = int(os.environ["STEPS"]); warmup = int(os.environ["WARMUP"])
torch.set_num_threads(int(os.environ.get("THREADS", "1")))
torch.manual_seed(0)
model = nn.Sequential(nn.Linear(784, 512), nn.ReLU(), nn.Linear(512, 512), nn.ReLU(), nn.Linear(512, 10))
if world > 1:
    import torch.distributed as dist
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{os.environ['MASTER_PORT']}", rank=rank, world_size=world)
    model = nn.parallel.DistributedDataParallel(model)
opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
xs = [torch.randn(batch, 784) for _ in range(8)]; ys = [torch.randint(0, 10, (batch,)) for _ in range(8)]
def step(i):
    loss = F.cross_entropy(model(xs[i % 8]), ys[i % 8])
    loss.backward(); opt.step(); opt.zero_grad()
for i in range(warmup): step(i)
if world > 1: dist.barrier()
t0 = time.perf_counter()
for i in range(steps): step(i)
secs = time.perf_counter() - t0
if world > 1: dist.barrier()
if rank == 0: print(json.dumps({"stepsPerSec": steps / secs}))
`;


// Python Accelerate's loop on 2 ranks (torchrun's variables set by run()).
const PY_ACCELERATE = `
import os, time, json, torch, torch.nn as nn, torch.nn.functional as F
import accelerate
from accelerate import Accelerator
batch = int(os.environ["BATCH"]); steps = int(os.environ["STEPS"]); warmup = int(os.environ["WARMUP"])
torch.set_num_threads(1)
torch.manual_seed(0)
acc = Accelerator(cpu=True)
model = nn.Sequential(nn.Linear(784, 512), nn.ReLU(), nn.Linear(512, 512), nn.ReLU(), nn.Linear(512, 10))
opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
model, opt = acc.prepare(model, opt)
assert acc.num_processes == int(os.environ["WORLD_SIZE"]), acc.state
xs = [torch.randn(batch, 784) for _ in range(8)]; ys = [torch.randint(0, 10, (batch,)) for _ in range(8)]
def step(i):
    with acc.accumulate(model):
        loss = F.cross_entropy(model(xs[i % 8]), ys[i % 8])
        acc.backward(loss); opt.step(); opt.zero_grad(set_to_none=True)
for i in range(warmup): step(i)
acc.wait_for_everyone()
t0 = time.perf_counter()
for i in range(steps): step(i)
secs = time.perf_counter() - t0
acc.wait_for_everyone()
if acc.is_main_process: print(json.dumps({"stepsPerSec": steps / secs, "version": "torch " + torch.__version__ + ", accelerate " + accelerate.__version__}))
`;

function torchVersionOf(python: string): string | undefined {
  const r = spawnSync(python, ['-c', 'import torch; print(torch.__version__)'], { encoding: 'utf8', timeout: 120_000 });
  return r.status === 0 ? r.stdout.trim() : undefined;
}

async function run(cmd: string, args: string[], world: number, batch: number, extra: Record<string, string> = {}): Promise<Result> {
  const port = await findFreePort('127.0.0.1');
  const outs = await Promise.all(
    Array.from(
      { length: world },
      (_, rank) =>
        new Promise<string>((resolve, reject) => {
          // torchrun's variables too, so Accelerator (ours and Python's) joins the group as under a launcher.
          const env = { ...process.env, ...ENV, ...extra, WORLD: String(world), BATCH: String(batch), RANK: String(rank), LOCAL_RANK: String(rank), WORLD_SIZE: String(world), LOCAL_WORLD_SIZE: String(world), MASTER_ADDR: '127.0.0.1', MASTER_PORT: String(port), STEPS: String(STEPS), WARMUP: String(WARMUP) };
          const p = spawn(cmd, args, { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] });
          let so = '';
          let se = '';
          p.stdout.on('data', (d) => (so += d));
          p.stderr.on('data', (d) => (se += d));
          p.on('close', (code) => (code === 0 ? resolve(so) : reject(new Error(`${cmd} rank ${rank} exited ${code}: ${se.slice(-2000)}`))));
        }),
    ),
  );
  return JSON.parse(outs[0]!.trim().split('\n').pop()!);
}

// 1 intra-op thread per process (OMP/OpenBLAS/MKL = 1), except 1proc-b64-2threads: one
// process using both cores (libtorch intra-op 2, OpenBLAS/MKL 2, passive OpenMP waits),
// the fair single-process baseline on a 2-core machine.
const TWO_THREADS = { THREADS: '2', OMP_NUM_THREADS: '2', OPENBLAS_NUM_THREADS: '2', MKL_NUM_THREADS: '2', OMP_WAIT_POLICY: 'PASSIVE' };
const CONFIGS = [
  { name: '1proc-b64', world: 1, batch: 64, env: {} },
  { name: '1proc-b64-2threads', world: 1, batch: 64, env: TWO_THREADS },
  { name: '1proc-b128', world: 1, batch: 128, env: {} },
  { name: '2proc-ddp-b64', world: 2, batch: 64, env: {} },
] as const;

async function main(): Promise<void> {
  // Loading the addon sets OPENBLAS_CORETYPE for this CPU (native.ts); every child inherits it.
  const torch = await import('@accelerate/backend-libtorch');
  const mm = (v: string) => v.split('.').slice(0, 2).join('.');
  const venv = process.env.ACCELERATE_TS_PYTHON ?? (existsSync(join(ROOT, '.venv-py/bin/python')) ? join(ROOT, '.venv-py/bin/python') : undefined);
  const pythons = [...new Set([process.env.BENCH_PYTHON, venv, '/usr/bin/python3', 'python3'].filter((p): p is string => !!p))].map((p) => ({ python: p, version: torchVersionOf(p) }));
  const same = pythons.find((p) => p.version && mm(p.version) === mm(torch.version));
  const withAccelerate = venv && spawnSync(venv, ['-c', 'import accelerate'], { timeout: 120_000 }).status === 0 ? venv : undefined;
  console.log(`addon: libtorch ${torch.version}; OPENBLAS_CORETYPE=${process.env.OPENBLAS_CORETYPE ?? '(unset)'} for every side`);
  console.log(`Python torch ${same ? `${same.python} (torch ${same.version})` : 'none with the same libtorch: skipped'}; Python Accelerate ${withAccelerate ?? 'not installed: skipped'}`);

  const pyFile = join(tmpdir(), `ddp-bench-${process.pid}.py`);
  const pyAccFile = join(tmpdir(), `ddp-bench-acc-${process.pid}.py`);
  writeFileSync(pyFile, PY);
  writeFileSync(pyAccFile, PY_ACCELERATE);
  const node: Record<string, Result[]> = {};
  const python: Record<string, Result[]> = {};
  const nodeAccelerator: Result[] = [];
  // BENCH_BASELINE_ADDON=<path to another build of the addon>: its 2-process DDP, in the same run (before/after).
  const baselineAddon = process.env.BENCH_BASELINE_ADDON;
  const nodeBaseline: Result[] = [];
  // BENCH_C10D_ADDON=<addon built with ddpCreateC10d>: libtorch's c10d::Reducer in place of ours
  // (1.13: CPLUS_INCLUDE_PATH=<dir with a torch/csrc/distributed/autograd/context/context.h stub>
  // node scripts/build-native.mjs, since Debian ships reducer.hpp without that header).
  const c10dAddon = process.env.BENCH_C10D_ADDON;
  const nodeC10d: Result[] = [];
  const pythonAccelerate: Result[] = [];
  const nodeArgs = ['--import', 'tsx', SELF, '--worker'];
  for (let rep = 0; rep < REPS; rep++) {
    for (const c of CONFIGS) {
      (node[c.name] ??= []).push(await run(process.execPath, nodeArgs, c.world, c.batch, c.env));
      if (same) (python[c.name] ??= []).push(await run(same.python, [pyFile], c.world, c.batch, { ...c.env, GLOO_SOCKET_IFNAME: 'lo' }));
    }
    if (c10dAddon) nodeC10d.push(await run(process.execPath, nodeArgs, 2, 64, { ACCELERATE_TORCH_ADDON: c10dAddon, MODE: 'c10d' }));
    if (baselineAddon) nodeBaseline.push(await run(process.execPath, nodeArgs, 2, 64, { ACCELERATE_TORCH_ADDON: baselineAddon }));
    nodeAccelerator.push(await run(process.execPath, nodeArgs, 2, 64, { MODE: 'accelerator' }));
    if (withAccelerate) pythonAccelerate.push(await run(withAccelerate, [pyAccFile], 2, 64, { GLOO_SOCKET_IFNAME: 'lo' }));
    process.stderr.write(`rep ${rep + 1}/${REPS} done\n`);
  }
  const best = (runs: Result[]) => runs.reduce((a, b) => (b.stepsPerSec > a.stepsPerSec ? b : a));
  const summarise = (runs: Record<string, Result[]>) => {
    const out: Record<string, unknown> = {};
    for (const c of CONFIGS) {
      const bestRun = best(runs[c.name]!);
      out[c.name] = { ...roundAll(bestRun), samplesPerSec: round(bestRun.stepsPerSec * c.batch * c.world) };
    }
    const s = (k: string) => (out[k] as { samplesPerSec: number }).samplesPerSec;
    // samples/s of 2 ranks x batch 64 (1 thread each) over 1 process at batch 64 with 1 thread
    // (leaves the second core idle), and with 2 threads (uses both cores: the fair one).
    out.scalingVs1procSameBatch = round(s('2proc-ddp-b64') / s('1proc-b64'));
    out.scalingVs1proc2threadsSameBatch = round(s('2proc-ddp-b64') / s('1proc-b64-2threads'));
    out.scalingVs1procSameGlobalBatch = round(s('2proc-ddp-b64') / s('1proc-b128'));
    return out;
  };
  const nodeAcc = best(nodeAccelerator);
  const pyAcc = pythonAccelerate.length ? best(pythonAccelerate) : undefined;
  const ratios: Record<string, number> = { acceleratorVsRawAddon2proc: round(nodeAcc.stepsPerSec / best(node['2proc-ddp-b64']!).stepsPerSec) };
  if (same) for (const c of CONFIGS) ratios[`addonVsPythonTorch_${c.name}`] = round(best(node[c.name]!).stepsPerSec / best(python[c.name]!).stepsPerSec);
  if (same) ratios.ddpVsPythonDdp2proc = ratios['addonVsPythonTorch_2proc-ddp-b64']!;
  if (pyAcc) ratios.acceleratorVsPythonAccelerate2proc = round(nodeAcc.stepsPerSec / pyAcc.stepsPerSec);
  if (nodeC10d.length) ratios.ourReducerVsC10dReducer2proc = round(best(node['2proc-ddp-b64']!).stepsPerSec / best(nodeC10d).stepsPerSec);
  if (nodeBaseline.length) ratios.ddpVsBaselineAddon2proc = round(best(node['2proc-ddp-b64']!).stepsPerSec / best(nodeBaseline).stepsPerSec);
  const result = {
    what: 'MLP 784-512-512-10, AdamW, 1 intra-op thread per process (1proc-b64-2threads: 2); DDP over gloo on loopback (2 gloo threads per rank); best of reps; ratios > 1 mean Node is faster',
    date: new Date().toISOString(),
    machine: { cpus: cpus().length, model: cpus()[0]?.model, loadavg: loadavg().map(round) },
    steps: STEPS,
    reps: REPS,
    threads: { perRankIntraOp: 1, perRankOpenblas: 1, glooThreadsPerRank: torch.DEFAULT_GLOO_THREADS, oneProcTwoThreads: TWO_THREADS },
    openblasCoreType: process.env.OPENBLAS_CORETYPE ?? null,
    ratios,
    node: { libtorch: torch.version, ...summarise(node), accelerator2procDdpB64: { ...roundAll(nodeAcc), samplesPerSec: round(nodeAcc.stepsPerSec * 128) } },
    python: same ? { torch: same.version, python: same.python, ...summarise(python) } : null,
    pythonAccelerate2procDdpB64: pyAcc ? { ...roundAll(pyAcc), samplesPerSec: round(pyAcc.stepsPerSec * 128) } : null,
    c10dReducer2procDdpB64: nodeC10d.length ? { ...roundAll(best(nodeC10d)), samplesPerSec: round(best(nodeC10d).stepsPerSec * 128) } : null,
    baselineAddon2procDdpB64: nodeBaseline.length ? { addon: baselineAddon, ...roundAll(best(nodeBaseline)), samplesPerSec: round(best(nodeBaseline).stepsPerSec * 128) } : null,
  };
  const outFile = process.env.BENCH_OUT ?? join(ROOT, 'bench/results/ddp.json');
  mkdirSync(dirname(outFile), { recursive: true });
  writeFileSync(outFile, JSON.stringify(result, null, 2) + '\n');
  console.log(JSON.stringify(result, null, 2));
}

function round(x: number): number {
  return Math.round(x * 1000) / 1000;
}
function roundAll(r: Result): Result {
  return Object.fromEntries(Object.entries(r).map(([k, v]) => [k, typeof v === 'number' ? round(v) : v])) as Result;
}

if (process.argv.includes('--worker')) await worker();
else await main();
