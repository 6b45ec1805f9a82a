/**
 * All-reduce benchmark: gloo over loopback, 2 processes, float32 sum.
 *
 *   node --import tsx bench/allreduce.ts          (BENCH_REPS=3 by default)
 *
 * Measures, for 1M, 10M and 25M floats, the time of one all-reduce and its algorithm
 * bandwidth (bytes / time) in
 *   (a) backend-libtorch's GlooProcessGroup (`await pg.allReduce(t).wait()`),
 *   (b) Python `torch.distributed.all_reduce` with the gloo backend, using
 *       /usr/bin/python3's torch (Debian's 1.13, the libtorch the addon is built against),
 * plus the latency of a 1K-float all-reduce and the cost of issuing one, with hang
 * diagnosis on and off (ACCELERATE_C10D_DIAG=0), to show what recording collective
 * positions costs, and the latency of a 1K-float broadcast and allGather and the time of
 * a 10M-float broadcast (these carry a shape header with the data, see c10d.cc).
 * BENCH_PYTHON=none skips the Python side.
 * Both sides use 2 gloo threads and loopback. Runs are interleaved BENCH_REPS times and
 * the best run kept, as the machine may be shared. Writes bench/results/allreduce.json.
 */
import { spawn, spawnSync } from 'node:child_process';
import { mkdirSync, writeFileSync, readFileSync } from 'node:fs';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { findFreePort } from '@accelerate/core/internal';

const SELF = fileURLToPath(import.meta.url);
const ROOT = fileURLToPath(new URL('..', import.meta.url));
const REPS = Number(process.env.BENCH_REPS ?? 3);
const SIZES = [1_000_000, 10_000_000, 25_000_000];
const ITERS: Record<number, number> = { 1_000_000: 40, 10_000_000: 15, 25_000_000: 10 };
const SMALL = 1024;
const SMALL_ITERS = 500;
const PYTHON = process.env.BENCH_PYTHON ?? '/usr/bin/python3';
const ENV = { OMP_NUM_THREADS: '1', OPENBLAS_NUM_THREADS: '1', MKL_NUM_THREADS: '1' };

type Timings = Record<string, number>; // label -> median ms per all-reduce

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
}

// ---- one rank of the Node measurement ------------------------------------------------
async function worker(): Promise<void> {
  const torch = await import('../packages/backend-libtorch/src/index.js');
  const rank = Number(process.env.RANK);
  const pg = await torch.GlooProcessGroup.init({ rank, worldSize: 2, masterAddr: '127.0.0.1', masterPort: Number(process.env.MASTER_PORT), timeoutMs: 120_000 });
  const out: Timings = {};
  type Op = 'allReduce' | 'broadcast' | 'allGather';
  const time = async (n: number, iters: number, op: Op = 'allReduce') => {
    const t = torch.ones([n]);
    const run = async () => {
      if (op === 'broadcast') await pg.broadcast(t, 0).wait();
      else if (op === 'allGather') for (const g of await pg.allGather(t).wait()) (g as { dispose(): void }).dispose();
      else await pg.allReduce(t).wait();
    };
    for (let i = 0; i < 3; i++) await run();
    const ms: number[] = [];
    for (let i = 0; i < iters; i++) {
      await pg.barrier().wait();
      const t0 = process.hrtime.bigint();
      await run();
      ms.push(Number(process.hrtime.bigint() - t0) / 1e6);
    }
    t.dispose();
    return median(ms);
  };
  if (process.env.SMALL_ONLY !== '1') for (const n of SIZES) out[String(n)] = await time(n, ITERS[n]!);
  out[String(SMALL)] = await time(SMALL, SMALL_ITERS);
  out.broadcastSmall = await time(SMALL, SMALL_ITERS, 'broadcast');
  out.allGatherSmall = await time(SMALL, SMALL_ITERS, 'allGather');
  if (process.env.SMALL_ONLY !== '1') out.broadcast10M = await time(10_000_000, ITERS[10_000_000]!, 'broadcast');
  // Issue cost alone (sequence number, position record, gloo enqueue): 2000 back-to-back
  // issues of a 1-float all-reduce, waited for afterwards.
  const one = torch.ones([1]);
  await pg.barrier().wait();
  const t0 = process.hrtime.bigint();
  const works = Array.from({ length: 2000 }, () => pg.allReduce(one));
  out.issue = Number(process.hrtime.bigint() - t0) / 1e6 / 2000;
  await Promise.all(works.map((w) => w.wait()));
  await pg.barrier().wait();
  if (rank === 0) console.log(JSON.stringify(out));
  process.exit(0);
}

// ---- Python torch.distributed -------------------------------------------------------
const PY = `
import os, sys, time, json, statistics, torch, torch.distributed as dist
rank = int(os.environ["RANK"])
dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{os.environ['MASTER_PORT']}", rank=rank, world_size=2)
sizes = json.loads(os.environ["SIZES"])
out = {}
for n, iters in sizes:
    t = torch.ones(n)
    for _ in range(3): dist.all_reduce(t)
    ms = []
    for _ in range(iters):
        dist.barrier()
        t0 = time.perf_counter()
        dist.all_reduce(t)
        ms.append((time.perf_counter() - t0) * 1e3)
    out[str(n)] = statistics.median_low(ms)
dist.barrier()
if rank == 0: print(json.dumps(out))
`;


async function runPair(cmd: string, args: string[], env: Record<string, string>): Promise<Timings> {
  const port = await findFreePort('127.0.0.1');
  const outs = await Promise.all(
    [0, 1].map(
      (rank) =>
        new Promise<string>((resolve, reject) => {
          const p = spawn(cmd, args, { cwd: ROOT, env: { ...process.env, ...ENV, ...env, RANK: String(rank), MASTER_PORT: String(port) }, stdio: ['ignore', 'pipe', 'pipe'] });
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

const best = (runs: Timings[], key: string) => Math.min(...runs.map((r) => r[key]!));

async function main(): Promise<void> {
  const pyFile = join(tmpdir(), `allreduce-bench-${process.pid}.py`);
  writeFileSync(pyFile, PY);
  const pyVersion = spawnSync(PYTHON, ['-c', 'import torch; print(torch.__version__)'], { encoding: 'utf8' });
  const havePython = PYTHON !== 'none' && pyVersion.status === 0;
  const node: Timings[] = [];
  const nodeNoDiag: Timings[] = [];
  const python: Timings[] = [];
  const pySizes = JSON.stringify([...SIZES.map((n) => [n, ITERS[n]]), [SMALL, SMALL_ITERS]]);
  for (let rep = 0; rep < REPS; rep++) {
    node.push(await runPair(process.execPath, ['--import', 'tsx', SELF, '--worker'], {}));
    nodeNoDiag.push(await runPair(process.execPath, ['--import', 'tsx', SELF, '--worker'], { ACCELERATE_C10D_DIAG: '0', SMALL_ONLY: '1' }));
    if (havePython) python.push(await runPair(PYTHON, [pyFile], { SIZES: pySizes, GLOO_SOCKET_IFNAME: 'lo' }));
    process.stderr.write(`rep ${rep + 1}/${REPS} done\n`);
  }
  const rows = SIZES.map((n) => {
    const bytes = n * 4;
    const ms = best(node, String(n));
    const row: Record<string, unknown> = { floats: n, bytes, node: { ms: round(ms), GBps: round(bytes / ms / 1e6) } };
    if (havePython) {
      const pms = best(python, String(n));
      row.python = { ms: round(pms), GBps: round(bytes / pms / 1e6) };
      row.ratio = round(pms / ms); // node bandwidth / python bandwidth
    }
    return row;
  });
  const small = {
    floats: SMALL,
    nodeDiagOnUs: round(best(node, String(SMALL)) * 1e3),
    nodeDiagOffUs: round(best(nodeNoDiag, String(SMALL)) * 1e3),
    issueDiagOnUs: round(best(node, 'issue') * 1e3),
    issueDiagOffUs: round(best(nodeNoDiag, 'issue') * 1e3),
    pythonUs: havePython ? round(best(python, String(SMALL)) * 1e3) : null,
    broadcastUs: round(best(node, 'broadcastSmall') * 1e3),
    allGatherUs: round(best(node, 'allGatherSmall') * 1e3),
    broadcast10MMs: round(best(node, 'broadcast10M')),
  };
  const torchVersion = JSON.parse(readFileSync(join(ROOT, 'packages/backend-libtorch/build/libtorch.json'), 'utf8')).version ?? null;
  const result = {
    what: 'gloo all-reduce (sum, float32), 2 processes on loopback, 2 gloo threads each; ms = median per all-reduce of the best run; GBps = bytes / time',
    date: new Date().toISOString(),
    machine: { cpus: cpus().length, model: cpus()[0]?.model, loadavg: loadavg().map(round) },
    addonLibtorch: torchVersion,
    python: havePython ? { executable: PYTHON, torch: pyVersion.stdout.trim() } : null,
    reps: REPS,
    sizes: rows,
    smallLatency: small,
  };
  mkdirSync(join(ROOT, 'bench/results'), { recursive: true });
  writeFileSync(join(ROOT, 'bench/results/allreduce.json'), JSON.stringify(result, null, 2) + '\n');
  for (const r of rows) console.log(JSON.stringify(r));
  console.log(JSON.stringify(small));
}

function round(x: number): number {
  return Math.round(x * 1000) / 1000;
}

if (process.argv.includes('--worker')) await worker();
else await main();
