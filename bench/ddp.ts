/**
 * Data-parallel scaling benchmark: MLP 784-512-512-10, AdamW, 1 intra-op thread per process.
 *
 *   node --import tsx bench/ddp.ts                (BENCH_STEPS=300 BENCH_REPS=3)
 *
 * Steps/s and samples/s of
 *   - 1 process, batch 64 and batch 128 (no process group),
 *   - 2 processes with DDP (backend-libtorch's wrapDistributed over gloo), batch 64 per rank,
 * and the same three runs in Python torch (/usr/bin/python3, DistributedDataParallel over
 * gloo) on the same machine. Scaling = samples/s of the 2-process run / samples/s of one
 * process at the same per-process batch. On a 2-core machine the two ranks share the
 * cores with gloo's threads, so scaling below 2 is expected. Runs are interleaved and
 * the best of BENCH_REPS kept. Writes bench/results/ddp.json.
 */
import { spawn, spawnSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { findFreePort } from '@accelerate/core';

const SELF = fileURLToPath(import.meta.url);
const ROOT = fileURLToPath(new URL('..', import.meta.url));
const STEPS = Number(process.env.BENCH_STEPS ?? 300);
const WARMUP = 30;
const REPS = Number(process.env.BENCH_REPS ?? 3);
const PYTHON = process.env.BENCH_PYTHON ?? '/usr/bin/python3';
const ENV = { OMP_NUM_THREADS: '1', OPENBLAS_NUM_THREADS: '1', MKL_NUM_THREADS: '1' };

type Result = { stepsPerSec: number; commWaitMsPerStep?: number; buckets?: number };

// ---- one rank of the Node measurement ------------------------------------------------
async function worker(): Promise<void> {
  const torch = await import('../packages/backend-libtorch/src/index.js');
  const { nn, optim } = torch;
  const world = Number(process.env.WORLD);
  const batch = Number(process.env.BATCH);
  const rank = Number(process.env.RANK ?? 0);
  torch.setNumThreads(1);
  torch.manualSeed(0);
  let model: import('../packages/backend-libtorch/src/index.js').nn.Module = new nn.Sequential(new nn.Linear(784, 512), new nn.ReLU(), new nn.Linear(512, 512), new nn.ReLU(), new nn.Linear(512, 10));
  const backend = new torch.LibtorchBackend();
  let pg: Awaited<ReturnType<typeof torch.GlooProcessGroup.init>> | null = null;
  if (world > 1) {
    pg = await torch.GlooProcessGroup.init({ rank, worldSize: world, masterAddr: '127.0.0.1', masterPort: Number(process.env.MASTER_PORT), timeoutMs: 120_000 });
    model = backend.wrapDistributed(model, pg, {});
  }
  const opt = new optim.AdamW(model.parameters(), { lr: 1e-3 });
  const xs = Array.from({ length: 8 }, () => torch.randn([batch, 784]));
  const ys = Array.from({ length: 8 }, () => torch.randint(0, 10, [batch]));
  const step = (i: number) =>
    torch.tidy(() => {
      const loss = nn.functional.crossEntropy(model.forward(xs[i % 8]!), ys[i % 8]!);
      backend.backward(loss, { scale: 1 });
      opt.step();
      opt.zeroGrad();
    });
  for (let i = 0; i < WARMUP; i++) step(i);
  if (pg) await pg.barrier().wait();
  const wait0 = pg ? torch.ddpInfo(model).commWaitMs : 0;
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < STEPS; i++) step(i);
  const secs = Number(process.hrtime.bigint() - t0) / 1e9;
  const out: Result = { stepsPerSec: STEPS / secs };
  if (pg) {
    const info = torch.ddpInfo(model);
    out.commWaitMsPerStep = (info.commWaitMs - wait0) / STEPS;
    out.buckets = info.buckets.length;
    await pg.barrier().wait();
  }
  if (rank === 0) console.log(JSON.stringify(out));
  process.exit(0);
}

// ---- Python torch -----------------------------------------------------------------------
const PY = `
import os, time, json, torch, torch.nn as nn, torch.nn.functional as F
world = int(os.environ["WORLD"]); batch = int(os.environ["BATCH"]); rank = int(os.environ.get("RANK", "0"))
steps = int(os.environ["STEPS"]); warmup = int(os.environ["WARMUP"])
torch.set_num_threads(1)
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


async function run(cmd: string, args: string[], world: number, batch: number, extra: Record<string, string> = {}): Promise<Result> {
  const port = await findFreePort('127.0.0.1');
  const outs = await Promise.all(
    Array.from(
      { length: world },
      (_, rank) =>
        new Promise<string>((resolve, reject) => {
          const env = { ...process.env, ...ENV, ...extra, WORLD: String(world), BATCH: String(batch), RANK: String(rank), MASTER_PORT: String(port), STEPS: String(STEPS), WARMUP: String(WARMUP) };
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

const CONFIGS = [
  { name: '1proc-b64', world: 1, batch: 64 },
  { name: '1proc-b128', world: 1, batch: 128 },
  { name: '2proc-ddp-b64', world: 2, batch: 64 },
] as const;

async function main(): Promise<void> {
  const pyFile = join(tmpdir(), `ddp-bench-${process.pid}.py`);
  writeFileSync(pyFile, PY);
  const pyVersion = spawnSync(PYTHON, ['-c', 'import torch; print(torch.__version__)'], { encoding: 'utf8' });
  const havePython = pyVersion.status === 0;
  const node: Record<string, Result[]> = {};
  const python: Record<string, Result[]> = {};
  for (let rep = 0; rep < REPS; rep++) {
    for (const c of CONFIGS) {
      (node[c.name] ??= []).push(await run(process.execPath, ['--import', 'tsx', SELF, '--worker'], c.world, c.batch));
      if (havePython) (python[c.name] ??= []).push(await run(PYTHON, [pyFile], c.world, c.batch, { GLOO_SOCKET_IFNAME: 'lo' }));
    }
    process.stderr.write(`rep ${rep + 1}/${REPS} done\n`);
  }
  const summarise = (runs: Record<string, Result[]>) => {
    const out: Record<string, unknown> = {};
    for (const c of CONFIGS) {
      const bestRun = runs[c.name]!.reduce((a, b) => (b.stepsPerSec > a.stepsPerSec ? b : a));
      out[c.name] = { ...roundAll(bestRun), samplesPerSec: round(bestRun.stepsPerSec * c.batch * c.world) };
    }
    const s = (k: string) => (out[k] as { samplesPerSec: number }).samplesPerSec;
    out.scalingVs1procSameBatch = round(s('2proc-ddp-b64') / s('1proc-b64'));
    out.scalingVs1procSameGlobalBatch = round(s('2proc-ddp-b64') / s('1proc-b128'));
    return out;
  };
  const result = {
    what: 'MLP 784-512-512-10, AdamW, 1 intra-op thread per process; DDP over gloo on loopback; best of reps',
    date: new Date().toISOString(),
    machine: { cpus: cpus().length, model: cpus()[0]?.model, loadavg: loadavg().map(round) },
    steps: STEPS,
    reps: REPS,
    node: summarise(node),
    python: havePython ? { torch: pyVersion.stdout.trim(), ...summarise(python) } : null,
  };
  mkdirSync(join(ROOT, 'bench/results'), { recursive: true });
  writeFileSync(join(ROOT, 'bench/results/ddp.json'), JSON.stringify(result, null, 2) + '\n');
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
