/**
 * Soak benchmark: does memory stay flat over a long training run?
 *
 *   npm run bench:soak                    (after `npm run build`)
 *   BENCH_SOAK_STEPS=200000 BENCH_SOAK_WARMUP=5000 npm run bench:soak   (defaults: 100000, 5000)
 *
 * A small MLP (64-128-128-10, batch 32, AdamW, 1 thread) trains for BENCH_SOAK_STEPS
 * steps, each side in its own fresh process:
 *   (a) the raw addon, steps run back to back synchronously (the loop never yields to
 *       the event loop: anything Node defers to a setImmediate piles up here),
 *   (b) the same loop through `Accelerator` (prepare, accumulate, backward; awaited
 *       steps, which still only run microtasks),
 *   (c) baseline: Python torch running the same loop (the libtorch the addon was built
 *       against when a Python has it, else any Python torch).
 * RSS and glibc's malloc counters (`torch.mallocStats()`: bytes in use vs free inside
 * the heap, i.e. leak vs fragmentation) are sampled after the warm-up ("start"), every
 * tenth of the run and at the end. Reported: end/start RSS of each side (target: at most
 * 1.05, flat within 5%), the growth in bytes per step, and the ratio of our end/start to
 * Python's (the baseline: how much flatter or less flat than PyTorch itself).
 * ACCELERATE_TORCH_ADDON=<path> soaks another build of the addon (e.g. an older one).
 * Writes bench/results/soak.json (or $BENCH_OUT there) and exits 1 when a side of ours
 * grows by more than 5%.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { fileURLToPath } from 'node:url';

const HERE = fileURLToPath(new URL('.', import.meta.url));
const ROOT = fileURLToPath(new URL('..', import.meta.url));
const STEPS = Number(process.env.BENCH_SOAK_STEPS ?? 100_000);
const WARMUP = Number(process.env.BENCH_SOAK_WARMUP ?? 5_000);
const SAMPLES = 10;
const SIZES = [64, 128, 128, 10];
const BATCH = 32;
const NBATCHES = 8;
const TARGET = 1.05;

const THREAD_ENV = { OMP_NUM_THREADS: '1', OPENBLAS_NUM_THREADS: '1', MKL_NUM_THREADS: '1', OMP_WAIT_POLICY: 'PASSIVE' };

interface Sample {
  step: number;
  rss: number;
  mallocInUse?: number;
  mallocFree?: number;
}

interface ChildResult {
  version: string;
  samples: Sample[];
  msPerStep: number;
  finalLoss: number;
  liveHandles?: number[];
}

// ---------------------------------------------------------------------------------
// Node children.

async function child(mode: string): Promise<ChildResult> {
  const torch = await import('@accelerate/backend-libtorch');
  const { nn, optim } = torch;
  torch.setNumThreads(1);
  torch.manualSeed(0);
  const model = new nn.Sequential(new nn.Linear(SIZES[0], SIZES[1]), new nn.ReLU(), new nn.Linear(SIZES[1], SIZES[2]), new nn.ReLU(), new nn.Linear(SIZES[2], SIZES[3]));
  const optimizer = new optim.AdamW(model.parameters(), { lr: 1e-3 });
  const batches = Array.from({ length: NBATCHES }, () => ({ x: torch.keep(torch.randn([BATCH, SIZES[0]])), y: torch.keep(torch.randint(0, SIZES[3], [BATCH])) }));
  const samples: Sample[] = [];
  const liveHandles: number[] = [];
  const sample = (step: number) => {
    let m: ReturnType<typeof torch.mallocStats>;
    try {
      m = torch.mallocStats();
    } catch {
      m = undefined; // an older addon (ACCELERATE_TORCH_ADDON) without the counters
    }
    samples.push({ step, rss: process.memoryUsage().rss, mallocInUse: m?.inUseBytes, mallocFree: m?.freeBytes });
    liveHandles.push(torch.memoryStats().liveHandles);
  };
  const every = Math.max(1, Math.floor(STEPS / SAMPLES));
  let lastLoss = 0;
  let t0 = 0;

  if (mode === 'raw') {
    const step = (i: number) =>
      torch.tidy(() => {
        const { x, y } = batches[i % NBATCHES];
        const loss = nn.functional.crossEntropy(model.forward(x), y);
        loss.backward();
        optimizer.step();
        optimizer.zeroGrad();
        if (i === WARMUP + STEPS - 1) lastLoss = loss.item();
      });
    for (let i = 0; i < WARMUP; i++) step(i);
    sample(0);
    t0 = performance.now();
    for (let i = 0; i < STEPS; i++) {
      step(WARMUP + i);
      if ((i + 1) % every === 0 || i === STEPS - 1) sample(i + 1);
    }
  } else {
    const { Accelerator } = await import('@accelerate/core');
    const accelerator = new Accelerator({ backend: torch.libtorch(), configFile: false, env: {} });
    const [m, opt] = await accelerator.prepare(model, optimizer);
    const step = async (i: number) => {
      const { x, y } = batches[i % NBATCHES];
      await accelerator.accumulate(m, () =>
        torch.tidy(() => {
          const loss = nn.functional.crossEntropy(m.forward(x), y);
          accelerator.backward(loss);
          opt.step();
          opt.zeroGrad();
          if (i === WARMUP + STEPS - 1) lastLoss = loss.item();
        }),
      );
    };
    for (let i = 0; i < WARMUP; i++) await step(i);
    sample(0);
    t0 = performance.now();
    for (let i = 0; i < STEPS; i++) {
      await step(WARMUP + i);
      if ((i + 1) % every === 0 || i === STEPS - 1) sample(i + 1);
    }
  }
  return { version: `libtorch ${torch.version}`, samples, msPerStep: (performance.now() - t0) / STEPS, finalLoss: lastLoss, liveHandles };
}

// ---------------------------------------------------------------------------------
// Python baseline: the same loop in PyTorch.

const PY_TORCH = String.raw`
import json, os, sys, time
import torch
torch.set_num_threads(1)
torch.manual_seed(0)
STEPS, WARMUP, SAMPLES, BATCH, NB = ${STEPS}, ${WARMUP}, ${SAMPLES}, ${BATCH}, ${NBATCHES}
S = ${JSON.stringify(SIZES)}
PAGE = os.sysconf('SC_PAGE_SIZE')
def rss():
    with open('/proc/self/statm') as f:
        return int(f.read().split()[1]) * PAGE
model = torch.nn.Sequential(torch.nn.Linear(S[0], S[1]), torch.nn.ReLU(), torch.nn.Linear(S[1], S[2]), torch.nn.ReLU(), torch.nn.Linear(S[2], S[3]))
opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
batches = [(torch.randn(BATCH, S[0]), torch.randint(0, S[3], (BATCH,))) for _ in range(NB)]
def step(i):
    x, y = batches[i % NB]
    loss = torch.nn.functional.cross_entropy(model(x), y)
    loss.backward()
    opt.step()
    opt.zero_grad(set_to_none=True)
    return loss
for i in range(WARMUP): step(i)
samples = [{'step': 0, 'rss': rss()}]
every = max(1, STEPS // SAMPLES)
t0 = time.perf_counter()
for i in range(STEPS):
    loss = step(WARMUP + i)
    if (i + 1) % every == 0 or i == STEPS - 1:
        samples.append({'step': i + 1, 'rss': rss()})
ms = (time.perf_counter() - t0) * 1000 / STEPS
print(json.dumps({'version': 'torch ' + torch.__version__, 'samples': samples, 'msPerStep': ms, 'finalLoss': loss.item()}))
`;

function torchVersionOf(python: string): string | undefined {
  const r = spawnSync(python, ['-c', 'import torch; print(torch.__version__)'], { encoding: 'utf8', timeout: 120_000 });
  return r.status === 0 ? r.stdout.trim() : undefined;
}

// ---------------------------------------------------------------------------------
// Orchestration.

function run(cmd: string, args: string[], input?: string): ChildResult | { error: string } {
  const r = spawnSync(cmd, args, {
    cwd: ROOT,
    input,
    encoding: 'utf8',
    timeout: 3_600_000,
    maxBuffer: 16 * 2 ** 20,
    env: { ...process.env, ...THREAD_ENV, ACCELERATE_BENCH_CHILD: '1' },
  });
  if (r.status !== 0) return { error: `${cmd} ${args.join(' ')}: exit ${r.status}: ${(r.stderr || r.error?.message || '').trim().split('\n').slice(-3).join(' | ')}` };
  return JSON.parse(r.stdout.trim().split('\n').pop() ?? '') as ChildResult;
}

interface Summary {
  label: string;
  version: string;
  msPerStep: number;
  rssStart: number;
  rssEnd: number;
  /** end / start RSS. */
  rssRatio: number;
  rssBytesPerStep: number;
  mallocInUseBytesPerStep: number | null;
  mallocFreeBytesPerStep: number | null;
  samples: Sample[];
}

function summarize(label: string, r: ChildResult): Summary {
  const first = r.samples[0];
  const last = r.samples[r.samples.length - 1];
  const per = (a?: number, b?: number) => (a === undefined || b === undefined ? null : (b - a) / last.step);
  return {
    label,
    version: r.version,
    msPerStep: r.msPerStep,
    rssStart: first.rss,
    rssEnd: last.rss,
    rssRatio: last.rss / first.rss,
    rssBytesPerStep: (last.rss - first.rss) / last.step,
    mallocInUseBytesPerStep: per(first.mallocInUse, last.mallocInUse),
    mallocFreeBytesPerStep: per(first.mallocFree, last.mallocFree),
    samples: r.samples,
  };
}

async function main(): Promise<void> {
  const torchNative = await import('@accelerate/backend-libtorch');
  const addonVersion = torchNative.version;
  const mm = (v: string) => v.split('.').slice(0, 2).join('.');
  const venv = process.env.ACCELERATE_TS_PYTHON ?? (existsSync(`${ROOT}.venv-py/bin/python`) ? `${ROOT}.venv-py/bin/python` : undefined);
  const pythons = [...new Set([venv, '/usr/bin/python3', 'python3'].filter((p): p is string => !!p))].map((p) => ({ python: p, version: torchVersionOf(p) }));
  const python = pythons.find((p) => p.version && mm(p.version) === mm(addonVersion)) ?? pythons.find((p) => p.version);

  console.log(
    `Soak: MLP ${SIZES.join('-')}, batch ${BATCH}, AdamW, 1 thread; ${STEPS} steps after ${WARMUP} warm-up; ` +
      `${cpus().length} cores: ${cpus()[0]?.model ?? '?'}; addon: libtorch ${addonVersion}; baseline: ${python ? `${python.python} (torch ${python.version})` : 'no Python torch found'}`,
  );

  const self = fileURLToPath(import.meta.url);
  const sides: Array<{ key: string; label: string; ours: boolean; run: () => ChildResult | { error: string } }> = [
    { key: 'a', label: '(a) raw addon, synchronous loop', ours: true, run: () => run(process.execPath, ['--import', 'tsx', self, '--child', 'raw']) },
    { key: 'b', label: '(b) Accelerator + addon', ours: true, run: () => run(process.execPath, ['--import', 'tsx', self, '--child', 'accelerator']) },
  ];
  if (python) sides.push({ key: 'c', label: '(c) Python torch (baseline)', ours: false, run: () => run(python.python, ['-'], PY_TORCH) });

  const results: Record<string, Summary> = {};
  const errors: Record<string, string> = {};
  const mib = (b: number) => (b / 2 ** 20).toFixed(1);
  for (const s of sides) {
    const r = s.run();
    if ('error' in r) {
      errors[s.key] = r.error;
      console.log(`${s.label}: failed: ${r.error}`);
      continue;
    }
    const sum = summarize(s.label, r);
    results[s.key] = sum;
    const malloc =
      sum.mallocInUseBytesPerStep === null ? '' : `; malloc in use ${sum.mallocInUseBytesPerStep.toFixed(1)} B/step, free ${sum.mallocFreeBytesPerStep!.toFixed(1)} B/step`;
    console.log(
      `${s.label.padEnd(34)} RSS ${mib(sum.rssStart)} MiB -> ${mib(sum.rssEnd)} MiB: x${sum.rssRatio.toFixed(4)}, ${sum.rssBytesPerStep.toFixed(1)} B/step${malloc}; ` +
        `${sum.msPerStep.toFixed(3)} ms/step, ${r.version}` +
        (s.ours ? (sum.rssRatio <= TARGET ? ' (flat within 5%: met)' : ' (flat within 5%: NOT met)') : ''),
    );
  }
  const vsBaseline = Object.fromEntries(
    ['a', 'b'].filter((k) => results[k] && results.c).map((k) => [`${k}/c`, results[k].rssRatio / results.c.rssRatio]),
  );
  for (const [k, v] of Object.entries(vsBaseline)) {
    console.log(`${k} = ${v.toFixed(4)}: end/start RSS of ${results[k[0]].label.slice(4)} over Python torch's (1.0 = as flat as PyTorch)`);
  }
  const met = ['a', 'b'].every((k) => results[k] && results[k].rssRatio <= TARGET);

  const out = {
    date: new Date().toISOString(),
    machine: { cores: cpus().length, cpu: cpus()[0]?.model, node: process.version },
    config: { sizes: SIZES, batch: BATCH, optimizer: 'AdamW lr=1e-3', threads: 1, steps: STEPS, warmup: WARMUP, samples: SAMPLES },
    versions: { addon: `libtorch ${addonVersion}`, addonPath: process.env.ACCELERATE_TORCH_ADDON ?? 'packages/backend-libtorch/build/Release/torch_native.node', baseline: python ?? null },
    target: `end/start RSS <= ${TARGET} for (a) and (b)`,
    met,
    sides: results,
    ratiosVsBaseline: vsBaseline,
    errors,
  };
  const dir = `${HERE}results`;
  mkdirSync(dir, { recursive: true });
  const file = `${dir}/${process.env.BENCH_OUT ?? 'soak.json'}`;
  writeFileSync(file, `${JSON.stringify(out, null, 2)}\n`);
  console.log(`wrote ${file}`);
  if (!met) process.exitCode = 1;
}

const argv = process.argv.slice(2);
if (argv[0] === '--child') {
  child(argv[1]).then(
    (r) => console.log(JSON.stringify(r)),
    (e) => {
      console.error(e);
      process.exit(1);
    },
  );
} else {
  await main();
}
