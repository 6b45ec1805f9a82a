/**
 * Big-model loading: `loadCheckpointAndDispatch` of a ~1.5 GB fp32 checkpoint
 * (22 x Linear(4096, 4096), 4 shards + index, generated under /tmp with core's
 * safetensors writer) into a model built under `initEmptyWeights`, against
 * Python Accelerate's `init_empty_weights` + `load_checkpoint_and_dispatch`
 * on the same files (the venv: $ACCELERATE_TS_PYTHON or .venv-py).
 *
 *   node --import tsx bench/big-model-load.ts        (BENCH_REPS=3 by default)
 *
 * Each measurement is its own process (clean peak RSS from getrusage): wall
 * time of model construction + load + dispatch, peak RSS, and peak RSS above
 * the process's RSS just before loading ("load peak"). The files are read
 * once first so both sides read from the page cache. Both sides then run one
 * forward of the same input and report its sum (checked to agree).
 * Goals: load peak <= 1.25 x the model's size, time <= Python's.
 * Writes bench/results/big-model-load.json.
 */
import { mkdirSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { bestOf, findPython, makeCheckpoint, PY_MODEL, runChild } from './big-model-fixture.js';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const LAYERS = 22;
const WIDTH = 4096;
const DIR = process.env.BENCH_DIR ?? '/tmp/accelerate-ts-bench/big-model';
const REPS = Number(process.env.BENCH_REPS ?? 3);

interface Measure {
  seconds: number;
  peakRss: number;
  rssBefore: number;
  loadPeak: number;
  /** Peak RSS after one forward (every weight page touched), minus rssBefore. */
  forwardPeak: number;
  forwardSeconds: number;
  outputSum: number;
  version: string;
}

async function childTs(ckpt: string, mmap: boolean): Promise<void> {
  const torch = await import('../packages/backend-libtorch/src/index.js');
  const bm = await import('../packages/big-modeling/src/index.js');
  const backend = new torch.LibtorchBackend();
  const rssBefore = process.memoryUsage().rss;
  const t0 = performance.now();
  const model = bm.initEmptyWeights(backend, () => new torch.nn.Sequential(...Array.from({ length: LAYERS }, () => new torch.nn.Linear(WIDTH, WIDTH))));
  await bm.loadCheckpointAndDispatch(backend, model, ckpt, { deviceMap: { '': 'cpu' }, mmap });
  const seconds = (performance.now() - t0) / 1000;
  const peakRss = process.resourceUsage().maxRSS * 1024;
  const x = torch.full([1, WIDTH], 0.01);
  const t1 = performance.now();
  const outputSum = torch.noGrad(() => (model.forward(x) as InstanceType<typeof torch.Tensor>).sum().item());
  const forwardSeconds = (performance.now() - t1) / 1000;
  const forwardPeak = process.resourceUsage().maxRSS * 1024 - rssBefore;
  const m: Measure = {
    seconds,
    peakRss,
    rssBefore,
    loadPeak: peakRss - rssBefore,
    forwardPeak,
    forwardSeconds,
    outputSum,
    version: `accelerate-ts (${backend.version}), ${mmap ? 'mmap' : 'copy (mmap: false)'}`,
  };
  process.stdout.write(JSON.stringify(m) + '\n');
}

const PY_CHILD = (ckpt: string) => `
import json, resource, time, psutil, os
import accelerate
rss_before = psutil.Process(os.getpid()).memory_info().rss
t0 = time.perf_counter()
${PY_MODEL(LAYERS, WIDTH)}
from accelerate import load_checkpoint_and_dispatch
model = load_checkpoint_and_dispatch(model, ${JSON.stringify(ckpt)}, device_map={"": "cpu"})
seconds = time.perf_counter() - t0
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
t1 = time.perf_counter()
with torch.no_grad():
    s = model(torch.full((1, ${WIDTH}), 0.01)).sum().item()
fs = time.perf_counter() - t1
fpeak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - rss_before
print(json.dumps({"seconds": seconds, "peakRss": peak, "rssBefore": rss_before, "loadPeak": peak - rss_before, "forwardPeak": fpeak, "forwardSeconds": fs, "outputSum": s, "version": f"accelerate {accelerate.__version__}, torch {torch.__version__}"}))
`;



function warmCache(dir: string): void {
  for (const f of readdirSync(dir)) readFileSync(join(dir, f));
}

async function main(): Promise<void> {
  if (process.argv[2] === 'child-ts') return childTs(process.argv[3], process.argv[4] !== 'copy');
  const fx = await makeCheckpoint(DIR, LAYERS, WIDTH, 6);
  console.log(`checkpoint: ${fx.dir}, ${(fx.bytes / 2 ** 30).toFixed(3)} GiB (${fx.bytes} bytes), ${LAYERS} x Linear(${WIDTH}, ${WIDTH}) in 4 shards`);
  warmCache(fx.dir);
  const python = findPython(ROOT);
  if (!python) console.log('Python baseline skipped: no venv Python with accelerate, torch and psutil ($ACCELERATE_TS_PYTHON or .venv-py).');
  const self = fileURLToPath(import.meta.url);
  const ts: Measure[] = [];
  const tsCopy: Measure[] = [];
  const py: Measure[] = [];
  for (let i = 0; i < REPS; i++) {
    ts.push(runChild<Measure>(process.execPath, ['--import', 'tsx', self, 'child-ts', fx.dir, 'mmap']));
    tsCopy.push(runChild<Measure>(process.execPath, ['--import', 'tsx', self, 'child-ts', fx.dir, 'copy']));
    if (python) py.push(runChild<Measure>(python, ['-c', PY_CHILD(fx.dir)]));
  }
  const best = (xs: Measure[]) => bestOf(xs, ['seconds', 'peakRss', 'loadPeak', 'forwardPeak', 'forwardSeconds'], ['outputSum', 'version']);
  const a = best(ts)!;
  const c = best(tsCopy)!;
  const b = best(py);
  const result = {
    bench: 'big-model-load',
    date: new Date().toISOString(),
    model: { layers: LAYERS, width: WIDTH, bytes: fx.bytes, shards: 4 },
    reps: REPS,
    accelerateTs: a,
    accelerateTsCopy: c,
    python: b ?? { skipped: 'no venv Python with accelerate' },
    ratios: {
      forwardPeakOverModelSize: a.forwardPeak / fx.bytes,
      copyForwardPeakOverModelSize: c.forwardPeak / fx.bytes,
      pythonForwardPeakOverModelSize: b ? b.forwardPeak / fx.bytes : null,
      timeTsOverPython: b ? a.seconds / b.seconds : null,
      copyTimeTsOverPython: b ? c.seconds / b.seconds : null,
      forwardPeakTsOverPython: b ? a.forwardPeak / b.forwardPeak : null,
    },
    outputsAgree: b ? Math.abs(a.outputSum - b.outputSum) <= 1e-3 * Math.max(1, Math.abs(b.outputSum)) && a.outputSum === c.outputSum : a.outputSum === c.outputSum,
    goals: { peakAtMost125xModel: a.forwardPeak <= 1.25 * fx.bytes, timeAtMostPython: b ? a.seconds <= b.seconds : null },
  };
  mkdirSync(join(ROOT, 'bench/results'), { recursive: true });
  writeFileSync(join(ROOT, 'bench/results/big-model-load.json'), JSON.stringify(result, null, 2) + '\n');
  const gib = (n: number) => `${(n / 2 ** 30).toFixed(3)} GiB`;
  const line = (label: string, m: NonNullable<typeof b>) =>
    `${label} load ${m.seconds.toFixed(2)} s (peak above start ${gib(m.loadPeak)}), forward ${m.forwardSeconds.toFixed(2)} s, peak above start after forward ${gib(m.forwardPeak)} = ${(m.forwardPeak / fx.bytes).toFixed(3)} x model`;
  console.log(line('accelerate-ts (mmap):', a));
  console.log(line('accelerate-ts (copy):', c));
  if (b) {
    console.log(line('Python Accelerate:   ', b));
    console.log(`ratios ts/python: load time ${result.ratios.timeTsOverPython!.toFixed(3)} (copy mode ${result.ratios.copyTimeTsOverPython!.toFixed(3)}), peak after forward ${result.ratios.forwardPeakTsOverPython!.toFixed(3)}; outputs agree: ${result.outputsAgree}`);
  }
}

await main();
