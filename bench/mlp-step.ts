/**
 * MLP training-step benchmark: 784-512-512-10, batch 128, AdamW, fixed threads.
 *
 *   npm run bench                         (after `npm run build`)
 *   BENCH_THREADS=2 BENCH_STEPS=1000 BENCH_REPS=3 npm run bench   (defaults: 1, 400, 5)
 *
 * Steps/s of the same loop (forward, cross-entropy, backward, AdamW step, zero grad
 * over 8 pre-made batches cycled) in:
 *   (a) the raw addon (`@accelerate/backend-libtorch` alone),
 *   (b) the same loop through `Accelerator` (prepare, accumulate, backward); b/a is
 *       taken from runs where both loops alternate in one process (load drifts cancel),
 *   (c) Python torch on the same libtorch version as the addon when one exists
 *       (Debian's python3-torch 1.13 for a Debian build, the venv's 2.x for a 2.x build),
 *   (d) Python Accelerate's loop (the venv: torch 2.x + accelerate),
 * plus, for context, (e) Python torch of the venv and (f) the Accelerator loop fed by a
 * prepared DataLoader (collation and host-to-tensor copies included).
 * (s) A small model, where per-step overhead shows (MLP 64-256-4, batch 128, AdamW), with the
 * data path a user writes on each side: the raw loop builds each batch from per-sample rows
 * ({ x: Float32Array(64), y: class }) into one Float32Array/BigInt64Array; the Accelerator loop
 * iterates prepare(new DataLoader(rows, { batchSize: 128 })). Blocks of BENCH_SMALL_BLOCK steps
 * alternate in one process for BENCH_SMALL_ROUNDS rounds; the ratio is the median of the
 * per-round ratios over all repetitions (target >= 0.97), also given by CPU time per step.
 * Each measurement runs in its own process with the same thread settings, repeated
 * BENCH_REPS times interleaved (A/B/A/B), best and median kept (the machine may be
 * shared). Every side zeroes gradients with set_to_none=True (our default, and
 * Python's since 2.0; Python 1.13's default zeroed in place). Each child also reports
 * CPU time (user + system, all threads) and minor page faults per step: ratios of
 * median CPU time per step are printed next to the steps/s ratios, as they stay put
 * when other jobs take the cores and wall-clock rates swing by ±20%. The
 * OPENBLAS_CORETYPE the addon picks for this CPU (see native.ts) is passed to every
 * side, so Debian's python3-torch runs the same OpenBLAS kernels. RSS of the
 * Accelerator loop after 5,000 steps must be at most 5% above RSS after 500 (no leak).
 * ACCELERATE_TORCH_ADDON=<path> benchmarks another build of the addon (e.g. against
 * the venv's libtorch 2.x, which makes (c) and (d) the same libtorch).
 * Writes bench/results/mlp-step.json (or $BENCH_OUT there) and prints the ratios.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';
import { fileURLToPath } from 'node:url';

const HERE = fileURLToPath(new URL('.', import.meta.url));
const ROOT = fileURLToPath(new URL('..', import.meta.url));
const THREADS = Number(process.env.BENCH_THREADS ?? 1);
const STEPS = Number(process.env.BENCH_STEPS ?? 400);
const WARMUP = 50;
const REPS = Number(process.env.BENCH_REPS ?? 5);
const RSS_STEPS = [500, 5000];
const SIZES = [784, 512, 512, 10];
const BATCH = 128;
const NBATCHES = 8;
/** The small model of the paired per-step-overhead comparison, with its data path (see `small-paired`). */
const SMALL_SIZES = [64, 256, 4];
const SMALL_ROWS = 128 * 16;
const SMALL_ROUNDS = Number(process.env.BENCH_SMALL_ROUNDS ?? 30);
const SMALL_BLOCK = Number(process.env.BENCH_SMALL_BLOCK ?? 50);

/** Thread settings every measured process gets (OpenMP, OpenBLAS and MKL pools). */
const THREAD_ENV = {
  OMP_NUM_THREADS: String(THREADS),
  OPENBLAS_NUM_THREADS: String(THREADS),
  MKL_NUM_THREADS: String(THREADS),
  OMP_WAIT_POLICY: 'PASSIVE',
};

interface ChildResult {
  stepsPerSec: number;
  /** CPU time (user + system) per timed step: insensitive to other jobs taking the cores. */
  cpuMsPerStep?: number;
  /** Minor page faults per timed step (fresh memory from the kernel costs one per 4 KiB). */
  faultsPerStep?: number;
  threads: number;
  version: string;
  rss?: Record<string, number>;
  finalLoss: number;
  /** Paired mode: the raw loop's rate measured in the same process, alternating blocks. */
  rawStepsPerSec?: number;
  /** Small-model paired mode: per-round ratios (Accelerator/raw steps/s; raw/Accelerator CPU time). */
  small?: { ratios: number[]; cpuRatios: number[]; rawCpuMsPerStep: number; rawFinalLoss: number };
}

// ---------------------------------------------------------------------------------
// Children: one measured loop each.

/** Starts timing a block of steps: wall clock, CPU time and page faults. */
function meter(): (steps: number) => Pick<ChildResult, 'stepsPerSec' | 'cpuMsPerStep' | 'faultsPerStep'> {
  const t0 = performance.now();
  const r0 = process.resourceUsage();
  return (steps) => {
    const r1 = process.resourceUsage();
    return {
      stepsPerSec: steps / ((performance.now() - t0) / 1000),
      cpuMsPerStep: (r1.userCPUTime + r1.systemCPUTime - r0.userCPUTime - r0.systemCPUTime) / 1000 / steps,
      faultsPerStep: (r1.minorPageFault - r0.minorPageFault) / steps,
    };
  };
}

async function child(mode: string, steps: number): Promise<ChildResult> {
  const torch = await import('@accelerate/backend-libtorch');
  const { nn, optim } = torch;
  torch.setNumThreads(THREADS);
  torch.manualSeed(0);
  const model = new nn.Sequential(new nn.Linear(784, 512), new nn.ReLU(), new nn.Linear(512, 512), new nn.ReLU(), new nn.Linear(512, 10));
  const optimizer = new optim.AdamW(model.parameters(), { lr: 1e-3 });
  const batches = Array.from({ length: NBATCHES }, () => ({ x: torch.keep(torch.randn([BATCH, 784])), y: torch.keep(torch.randint(0, 10, [BATCH])) }));
  const rss: Record<string, number> = {};
  let lastLoss = 0;

  if (mode === 'raw') {
    const step = (i: number) =>
      torch.tidy(() => {
        const { x, y } = batches[i % NBATCHES];
        const loss = nn.functional.crossEntropy(model.forward(x), y);
        loss.backward();
        optimizer.step();
        optimizer.zeroGrad();
        if (i === steps + WARMUP - 1) lastLoss = loss.item();
      });
    for (let i = 0; i < WARMUP; i++) step(i);
    const done = meter();
    for (let i = WARMUP; i < WARMUP + steps; i++) step(i);
    return { ...done(steps), threads: torch.getNumThreads(), version: `libtorch ${torch.version}`, finalLoss: lastLoss };
  }

  const { Accelerator, DataLoader, HostTensor } = await import('@accelerate/core');
  const accelerator = new Accelerator({ backend: torch.libtorch(), configFile: false, env: {} });
  if (mode === 'accelerator' || mode === 'accelerator-rss') {
    const [m, opt] = await accelerator.prepare(model, optimizer);
    const step = async (i: number) => {
      const { x, y } = batches[i % NBATCHES];
      await accelerator.accumulate(m, () =>
        torch.tidy(() => {
          const loss = nn.functional.crossEntropy(m.forward(x), y);
          accelerator.backward(loss);
          opt.step();
          opt.zeroGrad();
          if (i === steps + WARMUP - 1) lastLoss = loss.item();
        }),
      );
    };
    for (let i = 0; i < WARMUP; i++) await step(i);
    const done = meter();
    for (let i = WARMUP; i < WARMUP + steps; i++) {
      await step(i);
      if (RSS_STEPS.includes(i + 1 - WARMUP)) rss[String(i + 1 - WARMUP)] = process.memoryUsage().rss;
    }
    return { ...done(steps), threads: torch.getNumThreads(), version: `libtorch ${torch.version}`, rss, finalLoss: lastLoss };
  }

  if (mode === 'paired') {
    // The raw loop and the Accelerator loop in one process, alternating blocks of
    // steps, so machine load drifts hit both alike: the fairest b/a.
    torch.manualSeed(0);
    const rawModel = new nn.Sequential(new nn.Linear(784, 512), new nn.ReLU(), new nn.Linear(512, 512), new nn.ReLU(), new nn.Linear(512, 10));
    const rawOpt = new optim.AdamW(rawModel.parameters(), { lr: 1e-3 });
    const [m, opt] = await accelerator.prepare(model, optimizer);
    const rawStep = (i: number) =>
      torch.tidy(() => {
        const { x, y } = batches[i % NBATCHES];
        const loss = nn.functional.crossEntropy(rawModel.forward(x), y);
        loss.backward();
        rawOpt.step();
        rawOpt.zeroGrad();
      });
    const accStep = (i: number) =>
      accelerator.accumulate(m, () =>
        torch.tidy(() => {
          const { x, y } = batches[i % NBATCHES];
          const loss = nn.functional.crossEntropy(m.forward(x), y);
          accelerator.backward(loss);
          opt.step();
          opt.zeroGrad();
          lastLoss = loss.item();
        }),
      );
    for (let i = 0; i < WARMUP; i++) {
      rawStep(i);
      await accStep(i);
    }
    const BLOCK = 20;
    let tRaw = 0;
    let tAcc = 0;
    for (let done = 0; done < steps; done += BLOCK) {
      let t = performance.now();
      for (let k = 0; k < BLOCK; k++) rawStep(done + k);
      tRaw += performance.now() - t;
      t = performance.now();
      for (let k = 0; k < BLOCK; k++) await accStep(done + k);
      tAcc += performance.now() - t;
    }
    const n = Math.ceil(steps / BLOCK) * BLOCK;
    return { stepsPerSec: n / (tAcc / 1000), rawStepsPerSec: n / (tRaw / 1000), threads: torch.getNumThreads(), version: `libtorch ${torch.version}`, finalLoss: lastLoss };
  }

  if (mode === 'small-paired') {
    // The small model (64-256-4, batch 128), where per-step overhead shows, with the data path a
    // user writes: raw builds each batch from per-sample rows itself; the Accelerator iterates
    // prepare(new DataLoader(rows, { batchSize })). Blocks alternate in this one process.
    const [nIn, nHid, nOut] = SMALL_SIZES;
    let seed = 12345;
    const rand = () => ((seed = (Math.imul(seed, 1664525) + 1013904223) >>> 0) / 2 ** 32);
    const rows = Array.from({ length: SMALL_ROWS }, () => ({ x: Float32Array.from({ length: nIn }, () => rand() * 2 - 1), y: Math.floor(rand() * nOut) }));
    const make = () => {
      torch.manualSeed(0);
      const net = new nn.Sequential(new nn.Linear(nIn, nHid), new nn.ReLU(), new nn.Linear(nHid, nOut));
      return { net, opt: new optim.AdamW(net.parameters(), { lr: 1e-3 }) };
    };
    const raw = make();
    let next = 0;
    let rawLoss = 0;
    const rawStep = () => {
      if (next + BATCH > rows.length) next = 0;
      const xs = new Float32Array(BATCH * nIn);
      const ys = new BigInt64Array(BATCH);
      for (let r = 0; r < BATCH; r++) {
        xs.set(rows[next + r].x, r * nIn);
        ys[r] = BigInt(rows[next + r].y);
      }
      next += BATCH;
      const x = torch.fromTypedArray(xs, [BATCH, nIn]);
      const y = torch.fromTypedArray(ys, [BATCH]);
      torch.tidy(() => {
        const loss = nn.functional.crossEntropy(raw.net.forward(x), y);
        loss.backward();
        raw.opt.step();
        raw.opt.zeroGrad();
        rawLoss = loss.item();
      });
      x.dispose();
      y.dispose();
    };
    const acc = make();
    type B = { x: InstanceType<typeof torch.Tensor>; y: InstanceType<typeof torch.Tensor> };
    const [m, opt, loader] = await accelerator.prepare(acc.net, acc.opt, new DataLoader<(typeof rows)[number], B>(rows, { batchSize: BATCH }));
    let it = loader[Symbol.asyncIterator]();
    const accStep = async () => {
      let r = await it.next();
      if (r.done) {
        it = loader[Symbol.asyncIterator]();
        r = await it.next();
      }
      const b = r.value as B;
      await accelerator.accumulate(m, () =>
        torch.tidy(() => {
          const loss = nn.functional.crossEntropy(m.forward(b.x), b.y);
          accelerator.backward(loss);
          opt.step();
          opt.zeroGrad();
          lastLoss = loss.item();
        }),
      );
      torch.dispose(b);
    };
    for (let i = 0; i < WARMUP; i++) {
      rawStep();
      await accStep();
    }
    const rawRate: number[] = [];
    const accRate: number[] = [];
    const rawCpu: number[] = [];
    const accCpu: number[] = [];
    const block = async (f: () => unknown, rates: number[], cpuMs: number[]) => {
      const c0 = process.cpuUsage();
      const t0 = performance.now();
      for (let k = 0; k < SMALL_BLOCK; k++) await f();
      rates.push(SMALL_BLOCK / ((performance.now() - t0) / 1000));
      const c = process.cpuUsage(c0);
      cpuMs.push((c.user + c.system) / 1000 / SMALL_BLOCK);
    };
    for (let r = 0; r < SMALL_ROUNDS; r++) {
      // Alternate which loop goes first in a round.
      if (r % 2 === 0) {
        await block(rawStep, rawRate, rawCpu);
        await block(accStep, accRate, accCpu);
      } else {
        await block(accStep, accRate, accCpu);
        await block(rawStep, rawRate, rawCpu);
      }
    }
    const med = (xs: number[]) => [...xs].sort((p, q) => p - q)[Math.floor(xs.length / 2)];
    return {
      stepsPerSec: med(accRate),
      rawStepsPerSec: med(rawRate),
      cpuMsPerStep: med(accCpu),
      threads: torch.getNumThreads(),
      version: `libtorch ${torch.version}`,
      finalLoss: lastLoss,
      small: {
        ratios: accRate.map((v, i) => v / rawRate[i]),
        cpuRatios: rawCpu.map((v, i) => v / accCpu[i]),
        rawCpuMsPerStep: med(rawCpu),
        rawFinalLoss: rawLoss,
      },
    };
  }

  if (mode === 'accelerator-dataloader') {
    // The same digits-shaped data as host samples, collated and moved by the prepared loader.
    const host = batches.flatMap(({ x, y }) => {
      const xs = x.dataSync() as Float32Array;
      const ys = y.dataSync() as BigInt64Array;
      return Array.from({ length: BATCH }, (_, r) => ({ x: new HostTensor(xs.slice(r * 784, (r + 1) * 784), [784], 'float32'), y: ys[r] }));
    });
    type B = { x: InstanceType<typeof torch.Tensor>; y: InstanceType<typeof torch.Tensor> };
    const [m, opt, loader] = await accelerator.prepare(model, optimizer, new DataLoader<(typeof host)[number], B>(host, { batchSize: BATCH }));
    let i = 0;
    let done = meter();
    while (i < WARMUP + steps) {
      for await (const b of loader) {
        if (i === WARMUP) done = meter();
        await accelerator.accumulate(m, () =>
          torch.tidy(() => {
            const loss = nn.functional.crossEntropy(m.forward(b.x), b.y);
            accelerator.backward(loss);
            opt.step();
            opt.zeroGrad();
            lastLoss = loss.item();
          }),
        );
        torch.dispose(b);
        if (++i === WARMUP + steps) break;
      }
    }
    return { ...done(steps), threads: torch.getNumThreads(), version: `libtorch ${torch.version}`, finalLoss: lastLoss };
  }
  throw new Error(`unknown child mode ${mode}`);
}

// ---------------------------------------------------------------------------------
// Python references.

const PY_COMMON = `
import json, os, resource, sys, time, torch
def meter():
    t, c, f = time.perf_counter(), time.process_time(), resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    def done(steps):
        return {'stepsPerSec': steps / (time.perf_counter() - t), 'cpuMsPerStep': (time.process_time() - c) * 1000 / steps,
                'faultsPerStep': (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f) / steps}
    return done
T = ${THREADS}; STEPS = ${STEPS}; WARMUP = ${WARMUP}
torch.set_num_threads(T); torch.manual_seed(0)
model = torch.nn.Sequential(torch.nn.Linear(784, 512), torch.nn.ReLU(), torch.nn.Linear(512, 512), torch.nn.ReLU(), torch.nn.Linear(512, 10))
opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
batches = [(torch.randn(${BATCH}, 784), torch.randint(0, 10, (${BATCH},))) for _ in range(${NBATCHES})]
`;

const PY_TORCH = `${PY_COMMON}
def step(i):
    x, y = batches[i % len(batches)]
    loss = torch.nn.functional.cross_entropy(model(x), y)
    loss.backward()
    opt.step()
    opt.zero_grad(set_to_none=True)
    return loss
for i in range(WARMUP): step(i)
done = meter()
for i in range(WARMUP, WARMUP + STEPS): loss = step(i)
print(json.dumps({**done(STEPS), 'threads': torch.get_num_threads(), 'version': 'torch ' + torch.__version__, 'finalLoss': loss.item()}))
`;

const PY_ACCELERATE = `${PY_COMMON}
import accelerate
from accelerate import Accelerator
acc = Accelerator(cpu=True)
model, opt = acc.prepare(model, opt)
def step(i):
    x, y = batches[i % len(batches)]
    with acc.accumulate(model):
        loss = torch.nn.functional.cross_entropy(model(x), y)
        acc.backward(loss)
        opt.step()
        opt.zero_grad(set_to_none=True)
    return loss
for i in range(WARMUP): step(i)
done = meter()
for i in range(WARMUP, WARMUP + STEPS): loss = step(i)
print(json.dumps({**done(STEPS), 'threads': torch.get_num_threads(), 'version': 'torch ' + torch.__version__ + ', accelerate ' + accelerate.__version__, 'finalLoss': loss.item()}))
`;

function torchVersionOf(python: string): string | undefined {
  const r = spawnSync(python, ['-c', 'import torch; print(torch.__version__)'], { encoding: 'utf8', timeout: 120_000 });
  return r.status === 0 ? r.stdout.trim() : undefined;
}

// ---------------------------------------------------------------------------------
// Orchestration.

function medianOf(xs: number[]): number {
  return [...xs].sort((p, q) => p - q)[Math.floor(xs.length / 2)];
}

function run(cmd: string, args: string[], input?: string): ChildResult | { error: string } {
  const r = spawnSync(cmd, args, {
    cwd: ROOT,
    input,
    encoding: 'utf8',
    timeout: 600_000,
    env: { ...process.env, ...THREAD_ENV, ACCELERATE_BENCH_CHILD: '1' },
  });
  if (r.status !== 0) return { error: `${cmd} ${args.join(' ')}: exit ${r.status}: ${(r.stderr || r.error?.message || '').trim().split('\n').slice(-3).join(' | ')}` };
  const line = r.stdout.trim().split('\n').pop() ?? '';
  return JSON.parse(line) as ChildResult;
}

const nodeChild = (mode: string, steps = STEPS) => run(process.execPath, ['--import', 'tsx', fileURLToPath(import.meta.url), '--child', mode, String(steps)]);

async function main(): Promise<void> {
  const torchNative = await import('@accelerate/backend-libtorch');
  const addonVersion = torchNative.version;
  const mm = (v: string) => v.split('.').slice(0, 2).join('.');
  const venv = process.env.ACCELERATE_TS_PYTHON ?? (existsSync(`${ROOT}.venv-py/bin/python`) ? `${ROOT}.venv-py/bin/python` : undefined);
  const pythons = [...new Set([venv, '/usr/bin/python3', 'python3'].filter((p): p is string => !!p))].map((p) => ({ python: p, version: torchVersionOf(p) }));
  const same = pythons.find((p) => p.version && mm(p.version) === mm(addonVersion));
  const venvTorch = pythons.find((p) => p.python === venv && p.version);

  console.log(
    `MLP ${SIZES.join('-')}, batch ${BATCH}, AdamW; ${THREADS} thread(s) (${Object.entries(THREAD_ENV).map(([k, v]) => `${k}=${v}`).join(' ')}); ` +
      `${STEPS} timed steps after ${WARMUP} warm-up, best of ${REPS}; ${cpus().length} cores: ${cpus()[0]?.model ?? '?'}`,
  );
  // Loading the addon named the OpenBLAS kernels for this CPU (native.ts); every child,
  // Python's included, inherits the same OPENBLAS_CORETYPE (MKL builds ignore it).
  console.log(`OPENBLAS_CORETYPE=${process.env.OPENBLAS_CORETYPE ?? '(unset)'} for every side`);
  console.log(`addon: libtorch ${addonVersion}; same-libtorch Python: ${same ? `${same.python} (torch ${same.version})` : 'none'}; venv: ${venvTorch ? `${venv} (torch ${venvTorch.version})` : 'none'}`);

  // BENCH_ONLY=small runs the small-model comparison alone (quick look; writes $BENCH_OUT, or only the small
  // section of it when it holds a full run).
  const only = process.env.BENCH_ONLY;
  const configs: Array<{ key: string; label: string; run: () => ChildResult | { error: string } }> = [
    { key: 'a', label: '(a) raw addon', run: () => nodeChild('raw') },
    { key: 'b', label: '(b) Accelerator + addon', run: () => nodeChild('accelerator') },
  ];
  if (same) configs.push({ key: 'c', label: `(c) Python torch, same libtorch`, run: () => run(same.python, ['-'], PY_TORCH) });
  if (venvTorch) configs.push({ key: 'd', label: '(d) Python Accelerate (venv)', run: () => run(venv!, ['-'], PY_ACCELERATE) });
  if (venvTorch && venvTorch !== same) configs.push({ key: 'e', label: '(e) Python torch (venv)', run: () => run(venv!, ['-'], PY_TORCH) });
  configs.push({ key: 'f', label: '(f) Accelerator + prepared DataLoader', run: () => nodeChild('accelerator-dataloader') });
  configs.push({ key: 'p', label: '(b) paired with (a) in one process', run: () => nodeChild('paired') });
  if (only === 'small') configs.splice(0, configs.length);
  configs.push({ key: 's', label: `(s) small ${SMALL_SIZES.join('-')}: Accelerator + DataLoader, paired`, run: () => nodeChild('small-paired') });
  const small: { ratios: number[]; cpuRatios: number[]; runRatios: number[]; runCpuRatios: number[]; raw: number[]; acc: number[]; rawCpu: number[]; accCpu: number[]; sameLoss: boolean[] } = {
    ratios: [],
    cpuRatios: [],
    runRatios: [],
    runCpuRatios: [],
    raw: [],
    acc: [],
    rawCpu: [],
    accCpu: [],
    sameLoss: [],
  };
  const loadBefore = loadavg();

  const best: Record<string, ChildResult> = {};
  const all: Record<string, number[]> = {};
  const cpu: Record<string, number[]> = {};
  const faults: Record<string, number[]> = {};
  const errors: Record<string, string> = {};
  for (let rep = 0; rep < REPS; rep++) {
    for (const c of configs) {
      const r = c.run();
      if ('error' in r) {
        errors[c.key] = r.error;
        continue;
      }
      (all[c.key] ??= []).push(r.stepsPerSec);
      if (r.cpuMsPerStep !== undefined) (cpu[c.key] ??= []).push(r.cpuMsPerStep);
      if (r.faultsPerStep !== undefined) (faults[c.key] ??= []).push(r.faultsPerStep);
      if (r.small) {
        small.ratios.push(...r.small.ratios);
        small.cpuRatios.push(...r.small.cpuRatios);
        small.runRatios.push(medianOf(r.small.ratios));
        small.runCpuRatios.push(medianOf(r.small.cpuRatios));
        small.raw.push(r.rawStepsPerSec!);
        small.acc.push(r.stepsPerSec);
        small.rawCpu.push(r.small.rawCpuMsPerStep);
        small.accCpu.push(r.cpuMsPerStep!);
        small.sameLoss.push(r.finalLoss === r.small.rawFinalLoss);
      }
      if (r.rawStepsPerSec && !r.small) (all.pa ??= []).push(r.rawStepsPerSec);
      if (r.rawStepsPerSec && !r.small) (all.pairedRatio ??= []).push(r.stepsPerSec / r.rawStepsPerSec);
      if (!best[c.key] || r.stepsPerSec > best[c.key].stepsPerSec) best[c.key] = r;
    }
  }
  const rssRun = only === 'small' ? { error: 'skipped (BENCH_ONLY=small)' } : nodeChild('accelerator-rss', RSS_STEPS[1]);
  const rss = 'error' in rssRun ? undefined : rssRun.rss;
  if ('error' in rssRun) errors.rss = rssRun.error;

  const median = (xs: number[]) => [...xs].sort((p, q) => p - q)[Math.floor(xs.length / 2)];
  for (const c of configs) {
    const b = best[c.key];
    const runs = (all[c.key] ?? []).map((v) => v.toFixed(1)).join(', ');
    const faultNote = faults[c.key]?.length ? `, ${median(faults[c.key]).toFixed(0)} page faults/step` : '';
    const cpuNote = cpu[c.key]?.length ? `; CPU ${median(cpu[c.key]).toFixed(2)} ms/step${faultNote} (medians)` : '';
    console.log(b ? `${c.label.padEnd(42)} ${b.stepsPerSec.toFixed(1).padStart(7)} steps/s best, ${median(all[c.key]).toFixed(1).padStart(6)} median  [${runs}]  ${b.version}, ${b.threads} thread(s)${cpuNote}` : `${c.label}: failed: ${errors[c.key]}`);
  }
  // Ratio of CPU time per step (y's over x's: > 1 means x needs less CPU per step), from
  // medians; unlike wall-clock rates it does not move when other jobs share the cores.
  const cpuRatio = (x: string, y: string) => (cpu[x]?.length && cpu[y]?.length ? median(cpu[y]) / median(cpu[x]) : null);
  const medianRatio = (x: string, y: string) => (all[x]?.length && all[y]?.length ? median(all[x]) / median(all[y]) : null);
  const ratio = (x: string, y: string) => (best[x] && best[y] ? best[x].stepsPerSec / best[y].stepsPerSec : null);
  if (all.pairedRatio) {
    const pr = all.pairedRatio;
    console.log(
      `${'(a) paired with (b) in one process'.padEnd(42)} ${Math.max(...all.pa).toFixed(1).padStart(7)} steps/s best, ${median(all.pa).toFixed(1).padStart(6)} median; ` +
        `b/a per paired run [${pr.map((v) => v.toFixed(3)).join(', ')}]`,
    );
  }
  const pairedBA = all.pairedRatio ? median(all.pairedRatio) : null;
  const smallBA = small.ratios.length ? median(small.ratios) : null;
  const smallCpu = small.cpuRatios.length ? median(small.cpuRatios) : null;
  if (smallBA !== null) {
    console.log(
      `small MLP ${SMALL_SIZES.join('-')}, batch ${BATCH}, AdamW: Accelerator (DataLoader of rows + prepare) / raw (batches built by hand) = ${smallBA.toFixed(3)} ` +
        `median of ${small.ratios.length} paired rounds (${smallCpu!.toFixed(3)} by CPU time per step; target >= 0.97${smallBA >= 0.97 ? ', met' : ', NOT met'}); ` +
        `steps/s medians ${median(small.acc).toFixed(0)} vs ${median(small.raw).toFixed(0)}; same losses: ${small.sameLoss.every(Boolean)}; ` +
        `per-run medians wall [${small.runRatios.map((v) => v.toFixed(3)).join(', ')}] CPU [${small.runCpuRatios.map((v) => v.toFixed(3)).join(', ')}]; ` +
        `loadavg ${loadBefore.map((v) => v.toFixed(2)).join(' ')} -> ${loadavg().map((v) => v.toFixed(2)).join(' ')}`,
    );
  }
  const targets = [
    { name: 'b/a', value: pairedBA ?? ratio('b', 'a'), target: 0.97, note: 'Accelerator vs raw addon (median of paired in-process runs; separate-process runs are in (a), (b))' },
    { name: 'b/c', value: ratio('b', 'c'), target: 1.0, note: `vs Python torch on the same libtorch (${same ? `torch ${same.version}` : 'absent'})` },
    { name: 'b/d', value: ratio('b', 'd'), target: 1.05, note: `vs Python Accelerate (venv torch ${venvTorch?.version ?? 'absent'}${venvTorch && same !== venvTorch ? ': a different libtorch than the addon' : ''})` },
  ];
  for (const t of targets) {
    const [x, y] = t.name.split('/');
    const med = t.name === 'b/a' && pairedBA !== null ? pairedBA : medianRatio(x, y);
    const how = t.name === 'b/a' && pairedBA !== null ? `paired in-process median (separate processes: ${ratio('b', 'a')?.toFixed(3) ?? 'n/a'} best-of)` : `best-of, ${med === null ? 'n/a' : med.toFixed(3)} median`;
    const cr = cpuRatio(x, y);
    console.log(
      `${t.name} = ${t.value === null ? 'n/a' : t.value.toFixed(3)} ${how}${cr === null ? '' : `, ${cr.toFixed(3)} by CPU time per step`} ` +
        `(target >= ${t.target}${t.value === null ? '' : t.value >= t.target ? ', met' : ', NOT met'}) — ${t.note}`,
    );
  }
  const rssGrowth = rss ? rss[String(RSS_STEPS[1])] / rss[String(RSS_STEPS[0])] - 1 : null;
  if (rss) {
    console.log(
      `RSS through Accelerator: ${(rss[String(RSS_STEPS[0])] / 2 ** 20).toFixed(1)} MiB after ${RSS_STEPS[0]} steps, ` +
        `${(rss[String(RSS_STEPS[1])] / 2 ** 20).toFixed(1)} MiB after ${RSS_STEPS[1]}: ${(rssGrowth! * 100).toFixed(2)}% (target: at most +5%${rssGrowth! <= 0.05 ? ', met' : ', NOT met'})`,
    );
  }
  for (const [k, e] of Object.entries(errors)) console.log(`error in ${k}: ${e}`);

  const result = {
    date: new Date().toISOString(),
    machine: { cores: cpus().length, cpu: cpus()[0]?.model, node: process.version, sharedWithOtherJobs: 'possibly: numbers are best-of-N' },
    config: { sizes: SIZES, batch: BATCH, optimizer: 'AdamW lr=1e-3', threads: THREADS, threadEnv: THREAD_ENV, openblasCoreType: process.env.OPENBLAS_CORETYPE ?? null, steps: STEPS, warmup: WARMUP, reps: REPS },
    versions: { addon: `libtorch ${addonVersion}`, addonPath: process.env.ACCELERATE_TORCH_ADDON ?? 'packages/backend-libtorch/build/Release/torch_native.node', sameLibtorchPython: same ?? null, venv: venvTorch ?? null },
    stepsPerSec: Object.fromEntries(
      configs.map((c) => [
        c.key,
        best[c.key]
          ? {
              label: c.label,
              best: best[c.key].stepsPerSec,
              median: median(all[c.key]),
              runs: all[c.key],
              cpuMsPerStepRuns: cpu[c.key] ?? null,
              faultsPerStepRuns: faults[c.key] ?? null,
              version: best[c.key].version,
            }
          : null,
      ]),
    ),
    paired: all.pairedRatio ? { rawRuns: all.pa, acceleratorRuns: all.p, ratios: all.pairedRatio } : null,
    small: smallBA === null
      ? null
      : {
          config: { sizes: SMALL_SIZES, batch: BATCH, rows: SMALL_ROWS, optimizer: 'AdamW lr=1e-3', rounds: SMALL_ROUNDS, block: SMALL_BLOCK, data: 'DataLoader(rows of { x: Float32Array(64), y: number }) + prepare vs batches built by hand' },
          date: new Date().toISOString(),
          loadavg: { before: loadBefore, after: loadavg() },
          acceleratorOverRaw: smallBA,
          acceleratorOverRawByCpuTime: smallCpu,
          target: 0.97,
          met: smallBA >= 0.97,
          perRunMedians: { wall: small.runRatios, cpu: small.runCpuRatios },
          ratios: small.ratios,
          cpuRatios: small.cpuRatios,
          stepsPerSecMedians: { raw: small.raw, accelerator: small.acc },
          cpuMsPerStepMedians: { raw: small.rawCpu, accelerator: small.accCpu },
          sameLosses: small.sameLoss.every(Boolean),
        },
    ratios: Object.fromEntries(
      targets.map((t) => {
        const [x, y] = t.name.split('/');
        return [
          t.name,
          {
            value: t.value,
            median: t.name === 'b/a' && pairedBA !== null ? pairedBA : medianRatio(x, y),
            byCpuTime: cpuRatio(x, y),
            target: t.target,
            met: t.value === null ? null : t.value >= t.target,
            note: t.note,
          },
        ];
      }),
    ),
    rss: rss ? { steps: RSS_STEPS, bytes: rss, growth: rssGrowth, target: 'growth <= 0.05', met: rssGrowth! <= 0.05 } : null,
    errors,
  };
  const out = process.env.BENCH_OUT ?? 'mlp-step.json';
  const path = `${HERE}results/${out}`;
  mkdirSync(`${HERE}results`, { recursive: true });
  // BENCH_ONLY=small over an existing full result: replace its small section only (the others keep their run).
  const previous = only === 'small' && existsSync(path) ? (JSON.parse(readFileSync(path, 'utf8')) as Record<string, unknown>) : undefined;
  const written = previous && previous.stepsPerSec && Object.values(previous.stepsPerSec as object).some((v) => v !== null) ? { ...previous, small: result.small } : result;
  writeFileSync(path, `${JSON.stringify(written, null, 2)}\n`);
  console.log(`wrote bench/results/${out}${written === result ? '' : ' (small section only)'}`);
}

const childAt = process.argv.indexOf('--child');
if (childAt >= 0) {
  const mode = process.argv[childAt + 1];
  const steps = Number(process.argv[childAt + 2] ?? STEPS);
  child(mode, steps)
    .then((r) => console.log(JSON.stringify(r)))
    .catch((e: unknown) => {
      console.error(e instanceof Error ? e.stack : e);
      process.exit(1);
    });
} else {
  main().catch((e: unknown) => {
    console.error(e instanceof Error ? e.stack : e);
    process.exit(1);
  });
}
