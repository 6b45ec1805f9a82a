/**
 * Disk-offloaded inference: the ~1.5 GB fp32 checkpoint of
 * bench/big-model-load.ts (22 x Linear(4096, 4096)) loaded with
 * `loadCheckpointAndDispatch(deviceMap: 'auto', maxMemory: { cpu: '300MB' })`,
 * so a few layers stay in memory and the rest go to an offload folder and are
 * brought in by forward hooks, layer by layer. Against Python Accelerate's
 * `load_checkpoint_and_dispatch(device_map="auto", max_memory={"cpu": "300MB"})`.
 *
 *   node --import tsx bench/disk-offload.ts   (BENCH_REPS=3, BENCH_FORWARDS=5)
 *
 * Each side runs in its own process: load (writing the offload folder, not
 * timed as inference), one warm-up forward, then BENCH_FORWARDS forwards of a
 * [1, 4096] input ("one token"). Reported: per-forward time (median), peak RSS
 * above the process's start, and the device map's split. The offload files
 * are freshly written, so reads come from the page cache on both sides.
 * Writes bench/results/disk-offload.json.
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { bestOf, findPython, makeCheckpoint, PY_MODEL, runChild } from './big-model-fixture.js';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const LAYERS = 22;
const WIDTH = 4096;
const DIR = process.env.BENCH_DIR ?? '/tmp/accelerate-ts-bench/big-model';
const REPS = Number(process.env.BENCH_REPS ?? 3);
const FORWARDS = Number(process.env.BENCH_FORWARDS ?? 5);
const CPU_CAP = '300MB';

interface Measure {
  forwardSeconds: number[];
  medianForward: number;
  peakRss: number;
  rssBefore: number;
  peakAboveStart: number;
  onCpu: number;
  onDisk: number;
  outputSum: number;
  loadSeconds: number;
  version: string;
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

async function childTs(ckpt: string, offload: string): Promise<void> {
  const torch = await import('../packages/backend-libtorch/src/index.js');
  const bm = await import('../packages/big-modeling/src/index.js');
  const backend = new torch.LibtorchBackend();
  const rssBefore = process.memoryUsage().rss;
  const t0 = performance.now();
  const model = bm.initEmptyWeights(backend, () => new torch.nn.Sequential(...Array.from({ length: LAYERS }, () => new torch.nn.Linear(WIDTH, WIDTH))));
  await bm.loadCheckpointAndDispatch(backend, model, ckpt, { deviceMap: 'auto', maxMemory: { cpu: CPU_CAP }, offloadFolder: offload });
  const loadSeconds = (performance.now() - t0) / 1000;
  const map = bm.getDeviceMap(model)!;
  const x = torch.full([1, WIDTH], 0.01);
  const fwd = () => torch.noGrad(() => (model.forward(x) as InstanceType<typeof torch.Tensor>).sum().item());
  const outputSum = fwd();
  const times: number[] = [];
  for (let i = 0; i < FORWARDS; i++) {
    const t = performance.now();
    fwd();
    times.push((performance.now() - t) / 1000);
  }
  const peakRss = process.resourceUsage().maxRSS * 1024;
  const vals = Object.values(map);
  const m: Measure = {
    forwardSeconds: times,
    medianForward: median(times),
    peakRss,
    rssBefore,
    peakAboveStart: peakRss - rssBefore,
    onCpu: vals.filter((v) => v === 'cpu').length,
    onDisk: vals.filter((v) => v === 'disk').length,
    outputSum,
    loadSeconds,
    version: `accelerate-ts (${backend.version})`,
  };
  process.stdout.write(JSON.stringify(m) + '\n');
}

const PY_CHILD = (ckpt: string, offload: string) => `
import json, resource, time, psutil, os
import accelerate
rss_before = psutil.Process(os.getpid()).memory_info().rss
t0 = time.perf_counter()
${PY_MODEL(LAYERS, WIDTH)}
from accelerate import load_checkpoint_and_dispatch
model = load_checkpoint_and_dispatch(model, ${JSON.stringify(ckpt)}, device_map="auto", max_memory={"cpu": "${CPU_CAP}"}, offload_folder=${JSON.stringify(offload)})
load = time.perf_counter() - t0
x = torch.full((1, ${WIDTH}), 0.01)
with torch.no_grad():
    s = model(x).sum().item()
    times = []
    for _ in range(${FORWARDS}):
        t = time.perf_counter(); model(x).sum().item(); times.append(time.perf_counter() - t)
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
vals = list(model.hf_device_map.values())
print(json.dumps({"forwardSeconds": times, "medianForward": sorted(times)[len(times) // 2], "peakRss": peak, "rssBefore": rss_before, "peakAboveStart": peak - rss_before,
  "onCpu": sum(v == "cpu" for v in vals), "onDisk": sum(v == "disk" for v in vals), "outputSum": s, "loadSeconds": load, "version": f"accelerate {accelerate.__version__}, torch {torch.__version__}"}))
`;



async function main(): Promise<void> {
  if (process.argv[2] === 'child-ts') return childTs(process.argv[3], process.argv[4]);
  const fx = await makeCheckpoint(DIR, LAYERS, WIDTH, 6);
  console.log(`checkpoint: ${fx.dir}, ${(fx.bytes / 2 ** 30).toFixed(3)} GiB; cpu capped at ${CPU_CAP}`);
  const python = findPython(ROOT);
  if (!python) console.log('Python baseline skipped: no venv Python with accelerate, torch and psutil.');
  const self = fileURLToPath(import.meta.url);
  const ts: Measure[] = [];
  const py: Measure[] = [];
  for (let i = 0; i < REPS; i++) {
    const o1 = mkdtempSync('/tmp/accelerate-ts-bench/offload-ts-');
    ts.push(runChild<Measure>(process.execPath, ['--import', 'tsx', self, 'child-ts', fx.dir, o1]));
    rmSync(o1, { recursive: true, force: true });
    if (python) {
      const o2 = mkdtempSync('/tmp/accelerate-ts-bench/offload-py-');
      py.push(runChild<Measure>(python, ['-c', PY_CHILD(fx.dir, o2)]));
      rmSync(o2, { recursive: true, force: true });
    }
  }
  const best = (xs: Measure[]) => bestOf(xs, ['medianForward', 'peakAboveStart', 'peakRss', 'loadSeconds'], ['onCpu', 'onDisk', 'outputSum', 'version']);
  const a = best(ts)!;
  const b = best(py);
  const result = {
    bench: 'disk-offload',
    date: new Date().toISOString(),
    model: { layers: LAYERS, width: WIDTH, bytes: fx.bytes },
    cpuCap: CPU_CAP,
    forwards: FORWARDS,
    reps: REPS,
    accelerateTs: a,
    python: b ?? { skipped: 'no venv Python with accelerate' },
    ratios: {
      forwardTimeTsOverPython: b ? a.medianForward / b.medianForward : null,
      peakAboveStartTsOverPython: b ? a.peakAboveStart / b.peakAboveStart : null,
    },
    outputsAgree: b ? Math.abs(a.outputSum - b.outputSum) <= 1e-3 * Math.max(1, Math.abs(b.outputSum)) : null,
  };
  mkdirSync(join(ROOT, 'bench/results'), { recursive: true });
  writeFileSync(join(ROOT, 'bench/results/disk-offload.json'), JSON.stringify(result, null, 2) + '\n');
  const mib = (n: number) => `${(n / 2 ** 20).toFixed(0)} MiB`;
  const line = (label: string, m: NonNullable<typeof b>) =>
    `${label} ${m.onCpu} layers on cpu, ${m.onDisk} on disk; per forward ${(m.medianForward * 1000).toFixed(0)} ms; peak RSS above start ${mib(m.peakAboveStart)} (total ${mib(m.peakRss)}); load ${m.loadSeconds.toFixed(2)} s`;
  console.log(line('accelerate-ts:    ', a));
  if (b) {
    console.log(line('Python Accelerate:', b));
    console.log(`ratios ts/python: per-forward time ${result.ratios.forwardTimeTsOverPython!.toFixed(3)}, peak RSS above start ${result.ratios.peakAboveStartTsOverPython!.toFixed(3)}; outputs agree: ${result.outputsAgree}`);
  }
}

await main();
