/**
 * One rank of the accelerate-ts side of the FSDP benchmark and parity test: the same
 * loop as bench/python/fsdp_reference.py, through `Accelerator`. Run with torchrun's
 * variables (bench/fsdp-common.ts `runTs`, or `accelerate launch --num_processes 2`):
 *
 *   node --import tsx bench/fsdp-train.ts --model mlp|transformer --mode ddp|fsdp \
 *     [--sharding FULL_SHARD|SHARD_GRAD_OP|NO_SHARD] --init init.safetensors --data data.safetensors \
 *     --steps 50 --warmup 5 --lr 1e-4 [--optim adamw|sgd] --out out.json
 *
 * --mode ddp: the built-in strategy (new Accelerator() on 2 processes = DDP).
 * --mode fsdp: `import { fsdp } from '@accelerate/plugin-fsdp'` (the built package; else its
 * source packages/plugin-fsdp/src/index.ts under tsx) and
 *   new Accelerator({ plugins: [fsdp({ shardingStrategy, autoWrapPolicy, transformerLayerClsToWrap })] })
 * with the option names of the `fsdp` settings section (fsdp_sharding_strategy, …); the
 * transformer wraps each TransformerEncoderLayer (TRANSFORMER_BASED_WRAP), the MLP is one unit
 * (NO_WRAP), as the Python reference. When the plugin does not export `fsdp` yet, rank 0 writes
 * `{ skipped: "plugin not built (…)" }` to --out and every rank exits 0.
 *
 * Rank 0 writes --out (json: per-step global mean loss, steps/s of the timed steps) and the
 * final full parameters (`accelerator.getStateDict`, gathered) next to it as .safetensors.
 *
 * Memory (every rank, gathered into --out `memory.ranks`), from the backend's allocator counters
 * (`accelerator.backend.memory.info('cpu')`: bytes held by live tensor storages):
 *   baseline       after the data is loaded, before the model is built (after global.gc() and an
 *                  event-loop turn when node runs with --expose-gc, as runTs starts it)
 *   afterTraining  after the last step, gc'd the same way: parameters, their shards, gradients,
 *                  optimizer state and whatever the strategy keeps between steps
 *   stepPeak       peakAllocated during the last timed step (memory.resetPeak('cpu') right before it)
 *
 * FSDP_BENCH_PROFILE=1 (fsdp mode): times, over the timed steps, the plugin's unit operations (the
 * FlatUnit methods its hooks call: unshard, startGather, reshard, prepareGradients, startReduce,
 * finishReduce), the synchronous waits on the process group's collectives (allGatherInto,
 * reduceScatterInto, …: Work.waitSync) and the loop's phases (forward, backward, optimizer step,
 * zeroGrad), by wrapping those methods from this script (the plugin is not changed); rank 0's
 * totals go to --out `profile` (ms per step). Overlaps: a wait is inside the unit method that called it.
 */
import { writeFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import * as torch from '@accelerate/backend-libtorch';
import { Accelerator, parseSafetensors, writeSafetensors } from '@accelerate/core';
import { readFileSync } from 'node:fs';
import { buildModel, loadFsdpPlugin, type ModelName } from './fsdp-common.js';

const { values: a } = parseArgs({
  options: {
    model: { type: 'string' },
    mode: { type: 'string', default: 'ddp' },
    sharding: { type: 'string', default: 'FULL_SHARD' },
    init: { type: 'string' },
    data: { type: 'string' },
    steps: { type: 'string', default: '20' },
    warmup: { type: 'string', default: '3' },
    lr: { type: 'string', default: '1e-3' },
    optim: { type: 'string', default: 'adamw' },
    threads: { type: 'string', default: '1' },
    out: { type: 'string' },
  },
});
const modelName = a.model as ModelName;
const steps = Number(a.steps);
const warmup = Number(a.warmup);
const out = a.out!;
const paramsFile = out.replace(/\.json$/, '') + '.safetensors';
torch.setNumThreads(Number(a.threads));

const plugins: unknown[] = [];
if (a.mode === 'fsdp') {
  const found = await loadFsdpPlugin();
  if (!found.fsdp) {
    if (process.env.RANK === undefined || process.env.RANK === '0') writeFileSync(out, JSON.stringify({ side: 'ts', mode: 'fsdp', model: modelName, skipped: found.reason }));
    process.exit(0);
  }
  const wrap = modelName === 'transformer' ? { autoWrapPolicy: 'TRANSFORMER_BASED_WRAP', transformerLayerClsToWrap: 'TransformerEncoderLayer' } : { autoWrapPolicy: 'NO_WRAP' };
  plugins.push(found.fsdp({ shardingStrategy: a.sharding, ...wrap }));
}

const accelerator = new Accelerator({ backend: torch.libtorch(), configFile: false, cpu: true, plugins: plugins as never });
await accelerator.ready();
const rank = accelerator.processIndex;
const world = accelerator.numProcesses;

const mem = accelerator.backend.memory as { info(d: string): { allocated: number; peakAllocated?: number }; resetPeak?(d: string): void } | undefined;
const gcNow = async () => {
  (globalThis as { gc?: () => void }).gc?.();
  await new Promise((r) => setImmediate(r));
  (globalThis as { gc?: () => void }).gc?.();
};

const data = parseSafetensors(readFileSync(a.data!)).tensors();
const inputs = torch.keep(torch.fromTypedArray(data.inputs!.data as Float32Array, [...data.inputs!.shape], 'float32'));
const targets = torch.keep(torch.fromTypedArray(data.targets!.data as BigInt64Array, [...data.targets!.shape], 'int64'));
const [nBatches, G] = targets.shape as [number, number];
if (G % world !== 0) throw new Error(`global batch ${G} is not divisible by ${world} ranks`);
const b = G / world;
const xs = Array.from({ length: nBatches }, (_, i) => torch.keep(inputs.select(0, i).narrow(0, rank * b, b).contiguous()));
const ys = Array.from({ length: nBatches }, (_, i) => torch.keep(targets.select(0, i).narrow(0, rank * b, b).contiguous()));
await gcNow();
const baseline = mem?.info('cpu').allocated ?? NaN;

const model = buildModel(torch, modelName);
model.loadStateDict(parseSafetensors(readFileSync(a.init!)).tensors(), { strict: true });

const opt0 =
  a.optim === 'sgd'
    ? new torch.optim.SGD(model.parameters(), { lr: Number(a.lr), momentum: 0.9, weightDecay: 0.01 })
    : new torch.optim.AdamW(model.parameters(), { lr: Number(a.lr), betas: [0.9, 0.999], eps: 1e-8, weightDecay: 0.01 });
const [m, opt] = await accelerator.prepare(model, opt0);
const losses: torch.Tensor[] = [];

// ---- FSDP_BENCH_PROFILE=1: timing around the plugin's unit operations and collectives ----
const profiling = process.env.FSDP_BENCH_PROFILE === '1';
const prof = new Map<string, { ms: number; calls: number }>();
let profOn = false;
// During the last timed step: the bytes allocated after each timed operation (where the step's peak comes from).
let memTrace: Array<[string, number]> | undefined;
const timed = <R>(name: string, fn: () => R): R => {
  if (!profOn) return fn();
  const t = process.hrtime.bigint();
  try {
    return fn();
  } finally {
    const e = prof.get(name) ?? { ms: 0, calls: 0 };
    e.ms += Number(process.hrtime.bigint() - t) / 1e6;
    e.calls++;
    prof.set(name, e);
    if (memTrace && mem) memTrace.push([name, mem.info('cpu').allocated]);
  }
};
if (profiling && a.mode === 'fsdp') {
  const st = (accelerator.strategy as unknown as { stateOf(m: unknown): { units: Array<{ comm: { shardGroup?: Record<string, unknown> } }> } }).stateOf(m);
  const unitProto = Object.getPrototypeOf(st.units[0]) as Record<string, (...x: unknown[]) => unknown>;
  for (const k of ['unshard', 'startGather', 'reshard', 'prepareGradients', 'startReduce', 'finishReduce']) {
    const orig = unitProto[k]!;
    unitProto[k] = function (this: unknown, ...x: unknown[]) {
      return timed(`unit.${k}`, () => orig.apply(this, x));
    };
  }
  const group = st.units[0]!.comm.shardGroup;
  if (group) {
    for (const k of ['allGatherInto', 'allGather', 'reduceScatterInto', 'reduceScatter', 'allReduce']) {
      const orig = group[k] as ((...x: unknown[]) => { waitSync?: () => unknown }) | undefined;
      if (typeof orig !== 'function') continue;
      group[k] = (...x: unknown[]) => {
        const work = timed(`issue ${k}`, () => orig.apply(group, x));
        const w = work.waitSync;
        if (w) work.waitSync = () => timed(`wait ${k}`, () => w.call(work));
        return work;
      };
    }
  }
}

const step = (s: number) => {
  const i = s % nBatches;
  return accelerator.accumulate(m, () =>
    torch.tidy(() => {
      const loss = timed('phase forward+loss', () => torch.nn.functional.crossEntropy(m.forward(xs[i]!), ys[i]!));
      timed('phase backward', () => accelerator.backward(loss));
      timed('phase opt.step', () => opt.step());
      timed('phase opt.zeroGrad', () => opt.zeroGrad());
      losses.push(torch.keep(loss.detach()));
    }),
  );
};

for (let s = 0; s < warmup; s++) await step(s);
await accelerator.waitForEveryone();
profOn = profiling;
const t0 = process.hrtime.bigint();
let stepPeak = NaN;
let profMemTrace: Array<[string, number]> | undefined;
let beforePeakStep = NaN;
for (let s = warmup; s < warmup + steps; s++) {
  if (s === warmup + steps - 1 && mem?.resetPeak) {
    beforePeakStep = mem.info('cpu').allocated;
    mem.resetPeak('cpu');
    if (profiling) memTrace = [['step start', beforePeakStep]];
  }
  await step(s);
  if (s === warmup + steps - 1) stepPeak = mem?.info('cpu').peakAllocated ?? NaN;
  memTrace = memTrace && profOn ? (profMemTrace = memTrace, undefined) : undefined;
}
await accelerator.waitForEveryone();
const secs = Number(process.hrtime.bigint() - t0) / 1e9;
profOn = false;
await gcNow();
const afterTraining = mem?.info('cpu').allocated ?? NaN;
const memoryRanks = await accelerator.gatherObject({ rank, baseline, afterTraining, beforePeakStep, stepPeak });

// Global mean loss of each step: the mean over ranks (every rank has b rows).
const curve = (await accelerator.reduce(torch.stack(losses), 'mean')) as torch.Tensor;
const lossCurve = Array.from(curve.dataSync() as Float32Array);
const full = await accelerator.getStateDict(m);
if (accelerator.isMainProcess) {
  await writeSafetensors(paramsFile, full);
  writeFileSync(
    out,
    JSON.stringify({
      side: 'ts',
      mode: a.mode,
      model: modelName,
      sharding: a.mode === 'fsdp' ? a.sharding : undefined,
      optim: a.optim,
      world,
      steps,
      warmup,
      stepsPerSec: steps / secs,
      losses: lossCurve,
      params: paramsFile,
      torch: `libtorch ${torch.version}`,
      strategy: accelerator.distributedType,
      memory: { gcExposed: typeof (globalThis as { gc?: unknown }).gc === 'function', ranks: memoryRanks },
      profile: profiling
        ? Object.fromEntries([...prof].sort((x, y) => y[1].ms - x[1].ms).map(([k, v]) => [k, { msPerStep: Math.round((v.ms / steps) * 1000) / 1000, callsPerStep: v.calls / steps }]))
        : undefined,
      memTrace: profMemTrace,
    }),
  );
}
await accelerator.endTraining();
