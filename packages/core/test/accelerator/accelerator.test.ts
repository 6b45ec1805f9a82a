import { describe, it, expect, beforeEach, vi } from 'vitest';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { getLogger, setLogSink, type LogRecord } from '../../src/utils/logging.js';
import { Accelerator } from '../../src/accelerator/accelerator.js';
import { AcceleratorState } from '../../src/state/accelerator-state.js';
import { GradientState } from '../../src/state/gradient-state.js';
import { PartialState, StaleStateError } from '../../src/state/partial-state.js';
import { DataLoader } from '../../src/data/dataloader.js';
import { DataLoaderShard } from '../../src/data/loaders.js';
import { registerSeedHook, setSeed } from '../../src/accelerator/seed.js';
import { GradScalerKwargs, DistributedDataParallelKwargs, AutocastKwargs } from '../../src/accelerator/kwargs-handlers.js';
import type { Plugin } from '../../src/interfaces/plugin.js';
import {
  ReferenceBackend,
  RegressionDataset,
  RegressionModel,
  SGD,
  LambdaLR,
  RefTensor,
  mseLoss,
  activeAutocastPrecision,
  tensor,
  runBackward,
} from '../../src/testing/index.js';

const env = {}; // no launcher variables, no config file: a plain single process
const make = (opts: ConstructorParameters<typeof Accelerator>[0] = {}) =>
  new Accelerator({ backend: new ReferenceBackend(), configFile: false, env, ...opts });

type Batch = { x: RefTensor; y: RefTensor };

beforeEach(async () => {
  await AcceleratorState.resetState();
});

describe('Accelerator.prepare', () => {
  it('returns objects in order, wraps loaders, optimizers and schedulers, and passes unknown objects through', async () => {
    const acc = make();
    const model = new RegressionModel();
    const opt = new SGD(model.parameters(), { lr: 0.1 });
    const sched = new LambdaLR(opt, () => 1);
    const loader = new DataLoader(new RegressionDataset({ length: 8 }), { batchSize: 4 });
    const other = { hello: 'world' };
    const [m, o, l, s, x] = await acc.prepare(model, opt, loader, sched, other);
    expect(m).toBe(model);
    expect(o).not.toBe(opt);
    expect(l).toBeInstanceOf(DataLoaderShard);
    expect(s).not.toBe(sched);
    expect(x).toBe(other);
    expect(acc.models).toEqual([model]);
    expect(acc.optimizers).toHaveLength(1);
    expect(acc.dataloaders).toHaveLength(1);
    expect(acc.schedulers).toHaveLength(1);
    expect(acc.device).toBe('cpu');
    expect(acc.numProcesses).toBe(1);
    expect(acc.distributedType).toBe('NO');
  });

  it('moves collated host batches onto the backend as its tensors', async () => {
    const acc = make();
    const [l] = await acc.prepare(new DataLoader(new RegressionDataset({ length: 6 }), { batchSize: 4 }));
    const sizes: number[] = [];
    for await (const batch of l as unknown as AsyncIterable<Batch>) {
      expect(batch.x).toBeInstanceOf(RefTensor);
      sizes.push(batch.x.shape[0]);
    }
    expect(sizes).toEqual([4, 2]);
  });

  it('preparing the same objects again returns the first results, wrapped and tracked once, with a debug note', async () => {
    const records: LogRecord[] = [];
    const logger = getLogger('accelerate.accelerator');
    const level = logger.level;
    logger.level = 'debug';
    setLogSink((r) => void records.push(r));
    try {
      const acc = make({ mixedPrecision: 'bf16' });
      const model = new RegressionModel();
      const opt = new SGD(model.parameters(), { lr: 0.1 });
      const sched = new LambdaLR(opt, () => 1);
      const loader = new DataLoader(new RegressionDataset({ length: 8 }), { batchSize: 4 });
      const first = await acc.prepare(model, opt, sched, loader);
      const forward = first[0].forward;
      // The user's objects again, the prepared ones, and one at a time.
      const again = await acc.prepare(model, opt, sched, loader);
      const wrapped = await acc.prepare(...first);
      expect(again).toEqual(first);
      again.forEach((o, i) => expect(o).toBe(first[i]));
      wrapped.forEach((o, i) => expect(o).toBe(first[i]));
      expect(await acc.prepareOptimizer(opt)).toBe(first[1]);
      expect(await acc.prepareModel(model)).toBe(first[0]);
      expect(first[0].forward).toBe(forward); // the precision wrapper was not stacked
      expect([acc.models.length, acc.optimizers.length, acc.schedulers.length, acc.dataloaders.length]).toEqual([1, 1, 1, 1]);
      expect(records.filter((r) => r.level === 'debug').map((r) => r.message)).toContain(
        '[RANK 0] prepare(): this object was already prepared; returning the prepared optimizer instead of wrapping and tracking it again.',
      );
      // One optimizer step still steps once (a doubly tracked optimizer would be stepped by both wrappers).
      expect(acc.optimizers).toEqual([first[1]]);
    } finally {
      setLogSink(undefined);
      logger.level = level;
    }
  });

  it('re-preparing a prepared loader returns it unchanged', async () => {
    const acc = make();
    const [l] = await acc.prepare(new DataLoader([1, 2, 3], { batchSize: 2 }));
    const [again] = await acc.prepare(l);
    expect(again).toBe(l);
  });
});

/** Train RegressionModel through the Accelerator and by hand; return both final parameters. */
async function trainBoth(ga: number, batches: number, bs = 4) {
  const data = new RegressionDataset({ length: batches * bs, seed: 7 });
  const acc = make({ gradientAccumulationSteps: ga });
  const model = new RegressionModel({ a: 0.5, b: -0.5 });
  const opt = new SGD(model.parameters(), { lr: 0.05 });
  const [m, o, l] = await acc.prepare(model, opt, new DataLoader(data, { batchSize: bs }));
  const syncs: boolean[] = [];
  for await (const { x, y } of l as unknown as AsyncIterable<Batch>) {
    await acc.accumulate(m, () => {
      acc.backward(mseLoss(m.forward(x), y));
      syncs.push(acc.syncGradients);
      o.step();
      o.zeroGrad();
    });
  }
  // Reference: plain loop, loss divided by GA, step every GA batches and on the last batch.
  const ref = new RegressionModel({ a: 0.5, b: -0.5 });
  const refOpt = new SGD(ref.parameters(), { lr: 0.05 });
  for (let i = 0; i < batches; i++) {
    const xs = tensor(Array.from(data.x.slice(i * bs, (i + 1) * bs)));
    const ys = tensor(Array.from(data.y.slice(i * bs, (i + 1) * bs)));
    runBackward(mseLoss(ref.forward(xs), ys), 1 / ga);
    if ((i + 1) % ga === 0 || i === batches - 1) {
      refOpt.step();
      refOpt.zeroGrad();
    }
  }
  return { model: m as RegressionModel, ref, syncs };
}

describe('gradient accumulation', () => {
  it('[B33] [B36] GA=2 over 5 batches matches a hand-written accumulation loop exactly', async () => {
    const { model, ref, syncs } = await trainBoth(2, 5);
    expect(syncs).toEqual([false, true, false, true, true]);
    expect(model.a.toArray()).toEqual(ref.a.toArray());
    expect(model.b.toArray()).toEqual(ref.b.toArray());
  });

  it('[B36] backward with GA=n produces the gradients of loss / n', async () => {
    const acc = make({ gradientAccumulationSteps: 4 });
    await acc.ready();
    const model = new RegressionModel({ a: 1, b: 1 });
    const x = tensor([1, 2, 3]);
    const y = tensor([2, 3, 5]);
    acc.backward(mseLoss(model.forward(x), y));
    const ref = new RegressionModel({ a: 1, b: 1 });
    runBackward(mseLoss(ref.forward(x), y));
    expect(model.a.grad!.toArray()[0]).toBeCloseTo(ref.a.grad!.toArray()[0] / 4, 12);
    expect(model.b.grad!.toArray()[0]).toBeCloseTo(ref.b.grad!.toArray()[0] / 4, 12);
  });

  it('[B36] gradientAccumulationSteps and syncGradients setters are visible in GradientState', async () => {
    const acc = make();
    acc.gradientAccumulationSteps = 4;
    expect(new GradientState().numSteps).toBe(4);
    acc.syncGradients = false;
    expect(new GradientState().syncGradients).toBe(false);
  });

  it('[B36] noSync changes nothing on a single process', async () => {
    const acc = make();
    const model = new RegressionModel({ a: 1, b: 0 });
    const [m] = await acc.prepare(model);
    await acc.noSync(m, () => acc.backward(mseLoss(m.forward(tensor([1])), tensor([3]))));
    expect(model.a.grad!.toArray()).toEqual([-4]);
  });

  it('prepared optimizers skip step and zeroGrad while accumulating', async () => {
    const acc = make({ gradientAccumulationSteps: 3 });
    const model = new RegressionModel({ a: 1, b: 0 });
    const [m, o] = await acc.prepare(model, new SGD(model.parameters(), { lr: 1 }));
    const x = tensor([1]);
    const y = tensor([3]);
    const aAfter: number[] = [];
    for (let i = 0; i < 3; i++) {
      await acc.accumulate(m, () => {
        acc.backward(mseLoss(m.forward(x), y));
        o.step();
        o.zeroGrad();
      });
      aAfter.push(model.a.toArray()[0]);
    }
    // grad of (a*1+0-3)^2 / 3 at a=1 is -4/3 per micro-step; three accumulate to -4, applied once.
    expect(aAfter[0]).toBe(1);
    expect(aAfter[1]).toBe(1);
    expect(aAfter[2]).toBeCloseTo(5, 6);
  });
});

describe('schedulers', () => {
  it('[B37] one process: LambdaLR(1 - n/10) is at 0.9 after one optimizer step', async () => {
    const acc = make();
    const model = new RegressionModel();
    const opt = new SGD(model.parameters(), { lr: 1 });
    const [, o, s] = await acc.prepare(model, opt, new LambdaLR(opt, (n) => 1 - n / 10));
    o.step();
    s.step();
    expect(opt.paramGroups[0].lr).toBeCloseTo(0.9, 12);
  });

  it('[B38] linear decay over 10·GA iterations reaches 0 exactly at the end', async () => {
    for (const ga of [1, 2, 4]) {
      await AcceleratorState.resetState();
      const acc = make({ gradientAccumulationSteps: ga });
      const model = new RegressionModel();
      const opt = new SGD(model.parameters(), { lr: 1 });
      const [m, o, s] = await acc.prepare(model, opt, new LambdaLR(opt, (n) => Math.max(0, 1 - n / 10)));
      const lrs: number[] = [];
      for (let i = 0; i < 10 * ga; i++) {
        await acc.accumulate(m, () => {
          o.step();
          s.step();
          o.zeroGrad();
        });
        lrs.push(opt.paramGroups[0].lr);
      }
      expect(lrs[10 * ga - 2]).toBeGreaterThan(0);
      expect(lrs[10 * ga - 1]).toBe(0);
    }
  });

  it('[B37] a scheduler not tied to the optimizer steps on every call', async () => {
    const acc = make({ gradientAccumulationSteps: 2, stepSchedulerWithOptimizer: false });
    const model = new RegressionModel();
    const opt = new SGD(model.parameters(), { lr: 1 });
    const [m, , s] = await acc.prepare(model, opt, new LambdaLR(opt, (n) => 1 - n / 10));
    await acc.accumulate(m, () => s.step()); // not a sync step, still steps
    expect(opt.paramGroups[0].lr).toBeCloseTo(0.9, 12);
  });
});

describe('configuration and state', () => {
  it('reports every setting with its source', async () => {
    const acc = new Accelerator({
      backend: new ReferenceBackend(),
      configFile: false,
      env: { ACCELERATE_MIXED_PRECISION: 'bf16' },
      gradientAccumulationSteps: 3,
    });
    await acc.ready();
    expect(acc.config.mixedPrecision).toMatchObject({ value: 'bf16', source: 'env', detail: 'ACCELERATE_MIXED_PRECISION' });
    expect(acc.config.gradientAccumulationSteps).toMatchObject({ value: 3, source: 'constructor' });
    const report = acc.state.report();
    expect(report).toMatch(/mixed_?[pP]recision.*bf16.*env/);
    expect(report).toContain('num_processes: 1 (from a single process)');
    expect(report).toContain('backend: reference');
  });

  it('explains properties read before ready()', () => {
    const acc = make();
    expect(() => acc.device).toThrow(/await accelerator.ready\(\)/);
  });

  it('a second Accelerator in the same process works and shares the world (spec §13.4)', async () => {
    const backend = new ReferenceBackend();
    const a = new Accelerator({ backend, configFile: false, env });
    const b = new Accelerator({ backend, configFile: false, env, mixedPrecision: 'bf16' });
    await a.ready();
    await b.ready();
    expect(b.device).toBe(a.device);
    expect(a.mixedPrecision).toBe('no');
    expect(b.mixedPrecision).toBe('bf16');
  });

  it('a second Accelerator on another backend gets an error naming both', async () => {
    await make().ready();
    class OtherBackend extends ReferenceBackend {
      override readonly name = 'other';
    }
    await expect(new Accelerator({ backend: new OtherBackend(), configFile: false, env }).ready()).rejects.toThrow(
      /already runs on the "reference" backend; a second Accelerator asked for "other"/,
    );
  });

  it('[B57] using an Accelerator after resetState raises an error that explains the reset', async () => {
    const acc = make();
    await acc.ready();
    await AcceleratorState.resetState();
    await expect(acc.prepare(new RegressionModel())).rejects.toThrow(StaleStateError);
    await expect(acc.prepare(new RegressionModel())).rejects.toThrow(/`AcceleratorState` object has no attribute/);
    await expect(acc.prepare(new RegressionModel())).rejects.toThrow(/This happens if `AcceleratorState._reset_state\(\)`/);
    expect(PartialState.initialized).toBe(false);
  });

  it('rejects fp16 on the CPU with the fix', async () => {
    await expect(make({ mixedPrecision: 'fp16' }).ready()).rejects.toThrow(/fp16" needs a GPU.*Use "bf16" on the CPU/);
    await expect(make({ mixedPrecision: 'fp16' }).ready()).rejects.toThrow(/It was set by the Accelerator option mixedPrecision: "fp16"; pass "bf16" or "no" instead\./);
  });

  it('the fp16-on-CPU error says where fp16 came from and how to change it there', async () => {
    // A default config file written by `accelerate config` / `config default --mixed_precision fp16`.
    const dir = mkdtempSync(join(tmpdir(), 'fp16-origin-'));
    const file = join(dir, 'default_config.yaml');
    writeFileSync(file, 'compute_environment: LOCAL_MACHINE\ndistributed_type: NO\nmixed_precision: fp16\nnum_processes: 1\nuse_cpu: false\n');
    const fromFile = new Accelerator({ backend: new ReferenceBackend(), configFile: file, env });
    await expect(fromFile.ready()).rejects.toThrow(
      `It was set by the config file ${file} (mixed_precision); change that line to "mixed_precision: bf16" (or no), run \`accelerate config\` again, or launch with --mixed_precision bf16, or pass mixedPrecision: "bf16" to the Accelerator`,
    );
    await AcceleratorState.resetState();
    const fromEnv = new Accelerator({ backend: new ReferenceBackend(), configFile: false, env: { ACCELERATE_MIXED_PRECISION: 'fp16' } });
    await expect(fromEnv.ready()).rejects.toThrow(/It was set by the environment variable ACCELERATE_MIXED_PRECISION=fp16; unset it or set it to bf16/);
    // Under `accelerate launch --mixed_precision fp16`: the launcher exports the value with its origin.
    await AcceleratorState.resetState();
    const provenance = JSON.stringify({ ACCELERATE_MIXED_PRECISION: { value: 'fp16', source: 'launch flag', detail: '--mixed_precision' } });
    const fromFlag = new Accelerator({ backend: new ReferenceBackend(), configFile: false, env: { ACCELERATE_MIXED_PRECISION: 'fp16', ACCELERATE_CONFIG_PROVENANCE: provenance } });
    await expect(fromFlag.ready()).rejects.toThrow(
      /It was set by the launch flag --mixed_precision fp16 \(passed to this process as ACCELERATE_MIXED_PRECISION\); launch with --mixed_precision bf16 \(or no\) instead/,
    );
  });

  it('misspelt options are a TypeError naming the option and the nearest valid one (Python raises too)', () => {
    expect(() => make({ mixed_precision: 'bf16' } as never)).toThrow(TypeError);
    expect(() => make({ mixed_precision: 'bf16' } as never)).toThrow(
      /^new Accelerator\(\): unknown option "mixed_precision" \(did you mean "mixedPrecision"\?\); valid options: backend, mixedPrecision, /,
    );
    expect(() => make({ gradientAcumulationSteps: 2, colour: 'red' } as never)).toThrow(
      /unknown options "gradientAcumulationSteps" \(did you mean "gradientAccumulationSteps"\?\), "colour"; valid options/,
    );
    // Nested plain option objects too.
    expect(() => make({ projectConfig: { projectDir: '/tmp/x', totalLimt: 2 } } as never)).toThrow(
      /unknown option "projectConfig.totalLimt" \(did you mean "projectConfig.totalLimit"\?\); valid projectConfig options: projectDir, loggingDir, /,
    );
    expect(() => make({ dataloaderConfig: { evenBatch: false } } as never)).toThrow(/"dataloaderConfig.evenBatch" \(did you mean "dataloaderConfig.evenBatches"\?\)/);
    expect(() => make({ gradientAccumulationPlugin: { num_steps: 2 } } as never)).toThrow(/"gradientAccumulationPlugin.num_steps" \(did you mean "gradientAccumulationPlugin.numSteps"\?\)/);
    expect(() => make({ cpu: true, projectConfig: { projectDir: '/tmp/x' } })).not.toThrow();
  });

  it('rejects an unknown precision and combining accumulation options', () => {
    expect(() => make({ mixedPrecision: 'fp32' as never })).toThrow(/mixedPrecision must be one of no, fp16, bf16, fp8; got "fp32"/);
    expect(() => make({ gradientAccumulationSteps: 2, gradientAccumulationPlugin: { numSteps: 2 } })).toThrow(/either gradientAccumulationSteps or gradientAccumulationPlugin/);
  });

  it('[B40] each kwargs handler class at most once', () => {
    expect(() => make({ kwargsHandlers: [new GradScalerKwargs(), new GradScalerKwargs()] })).toThrow(/only pass one GradScalerKwargs/);
  });

  it('[B40] bf16 autocast is on inside autocast(), off when disabled, on again after', async () => {
    const acc = make({ mixedPrecision: 'bf16' });
    await acc.ready();
    const seen: string[] = [];
    acc.autocast(() => {
      seen.push(activeAutocastPrecision());
      acc.autocast(() => seen.push(activeAutocastPrecision()), { enabled: false });
      seen.push(activeAutocastPrecision());
    });
    expect(seen).toEqual(['bf16', 'no', 'bf16']);
  });
});

describe('plugins', () => {
  it('runs prepare hooks in enforce order and can replace the object', async () => {
    const calls: string[] = [];
    const mk = (name: string, enforce?: 'pre' | 'post'): Plugin => ({
      name,
      enforce,
      prepareModel: (m) => {
        calls.push(name);
        return m;
      },
    });
    const acc = make({ plugins: [mk('normal'), [mk('late', 'post'), false], mk('early', 'pre')] });
    await acc.prepare(new RegressionModel());
    expect(calls).toEqual(['early', 'normal', 'late']);
    expect(acc.state.pluginNames).toEqual(['early', 'normal', 'late']);
  });

  it('names both plugins of a conflict', async () => {
    const acc = make({ plugins: [{ name: 'fsdp', conflictsWith: ['deepspeed'] }, { name: 'deepspeed' }] });
    await expect(acc.prepare(new RegressionModel())).rejects.toThrow('Plugins "fsdp" and "deepspeed" cannot be used together');
  });

  it('refuses plugins after the configuration froze at prepare', async () => {
    const acc = make();
    await acc.prepare(new RegressionModel());
    expect(() => acc.use({ name: 'late' })).toThrow(/Cannot add plugin "late" after prepare\(\).*before prepare/);
  });

  it('a plugin can take over backward', async () => {
    let claimed = 0;
    const acc = make({ plugins: [{ name: 'engine', backward: () => (claimed++, true) }] });
    const model = new RegressionModel({ a: 1 });
    const [m] = await acc.prepare(model);
    acc.backward(mseLoss(m.forward(tensor([1])), tensor([0])));
    expect(claimed).toBe(1);
    expect(model.a.grad).toBeNull();
  });

  it('the per-step path resolves nothing again: plugin hooks are looked up once, and the context is built only for a plugin that hooks backward', async () => {
    let lookups = 0;
    const plugin: Plugin = { name: 'watcher' };
    // A getter counts how often the Accelerator asks the plugin for its backward / optimizerStep hooks.
    for (const hook of ['backward', 'optimizerStep'] as const) {
      Object.defineProperty(plugin, hook, { get: () => (lookups++, undefined), enumerable: true });
    }
    const acc = make({ plugins: [plugin] });
    const model = new RegressionModel({ a: 1 });
    const [m, o] = await acc.prepare(model, new SGD(model.parameters(), { lr: 0.1 }));
    const context = vi.spyOn(acc as unknown as { pluginContext(): unknown }, 'pluginContext');
    for (let i = 0; i < 5; i++) {
      await acc.accumulate(m, () => {
        acc.backward(mseLoss(m.forward(tensor([1])), tensor([0])));
        o.step();
        o.zeroGrad();
      });
    }
    expect(lookups).toBeLessThanOrEqual(2);
    expect(context).not.toHaveBeenCalled();
  });
});

describe('single-process collectives and process control', () => {
  it('[B57] triggers: false, then true after setTrigger, then false again', async () => {
    const acc = make();
    expect(await acc.checkTrigger()).toBe(false);
    acc.setTrigger();
    expect(await acc.checkTrigger()).toBe(true);
    expect(await acc.checkTrigger()).toBe(false);
  });

  it('[B56] mainProcessFirst and the on*Process wrappers run on the only process', async () => {
    const acc = make();
    await acc.ready();
    expect(await acc.mainProcessFirst(() => 'ran')).toBe('ran');
    expect(acc.onMainProcess(() => 1)()).toBe(1);
    expect(acc.onLastProcess(() => 2)()).toBe(2);
    expect(acc.onProcess(() => 3, 0)()).toBe(3);
    expect(acc.onProcess(() => 3, 1)()).toBeUndefined();
    expect(acc.onLocalProcess(() => 4, 0)()).toBe(4);
  });

  it('gather and reduce are the identity; gatherForMetrics trims to the remainder on the last batch', async () => {
    const acc = make();
    const [l] = await acc.prepare(new DataLoader([0, 1, 2, 3, 4, 5, 6, 7, 8, 9], { batchSize: 4 }));
    const seen: number[][] = [];
    for await (const batch of l as unknown as AsyncIterable<RefTensor>) {
      const g = await acc.gatherForMetrics(batch);
      seen.push((g as RefTensor).toArray());
    }
    expect(seen).toEqual([[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]);
    const t = tensor([1, 2]);
    expect(((await acc.gather(t)) as RefTensor).toArray()).toEqual([1, 2]);
    expect(((await acc.reduce(t, 'sum')) as RefTensor).toArray()).toEqual([1, 2]);
  });

  it('[B25] splitBetweenProcesses returns the input on one process', async () => {
    const acc = make();
    await acc.ready();
    expect(acc.splitBetweenProcesses(['A', 'B', 'C'])).toEqual(['A', 'B', 'C']);
  });

  it('[B24] setSeed calls registered backend seed hooks at once (with the launcher rank when deviceSpecific), a late hook gets the last seed, and ready() does not reseed a hooked backend', async () => {
    await AcceleratorState.resetState();
    const seen: number[] = [];
    const removeHooks = [registerSeedHook('reference', (s) => seen.push(s))];
    try {
      setSeed(7);
      expect(seen).toEqual([7]);
      const prevRank = process.env.RANK;
      process.env.RANK = '3';
      process.env.WORLD_SIZE = '4';
      try {
        setSeed(7, { deviceSpecific: true });
      } finally {
        if (prevRank === undefined) delete process.env.RANK;
        else process.env.RANK = prevRank;
        delete process.env.WORLD_SIZE;
      }
      expect(seen).toEqual([7, 10]);
      setSeed(5);
      const late: number[] = [];
      removeHooks.push(registerSeedHook('late-backend', (s) => late.push(s)));
      expect(late).toEqual([5]);
      const backend = new ReferenceBackend();
      expect(backend.name).toBe('reference');
      const reseeded: number[] = [];
      const original = backend.rng.manualSeed.bind(backend.rng);
      backend.rng.manualSeed = (s: number) => {
        reseeded.push(s);
        original(s);
      };
      await make({ backend }).ready();
      expect(reseeded).toEqual([]); // seeded through its hook already
      expect(seen).toEqual([7, 10, 5]);
    } finally {
      for (const remove of removeHooks) remove();
    }
  });

  it('[B24] setSeed before the Accelerator makes shuffling and model init repeat', async () => {
    const run = async () => {
      await AcceleratorState.resetState();
      setSeed(21);
      const acc = make();
      const [l] = await acc.prepare(new DataLoader([0, 1, 2, 3, 4, 5], { batchSize: 1, shuffle: true }));
      const order: number[] = [];
      for await (const b of l as unknown as AsyncIterable<RefTensor>) order.push(b.toArray()[0]);
      return order;
    };
    const first = await run();
    expect(await run()).toEqual(first);
    expect([...first].sort()).toEqual([0, 1, 2, 3, 4, 5]);
  });

  it('clipGradNorm returns the norm before clipping and clips', async () => {
    const acc = make();
    const model = new RegressionModel({ a: 0, b: 0 });
    const [m] = await acc.prepare(model);
    acc.backward(mseLoss(m.forward(tensor([1])), tensor([1.5])));
    // d/da (a+b-1.5)^2 = -3, d/db = -3 -> norm sqrt(18)
    expect(acc.clipGradNorm(m, 1)).toBeCloseTo(Math.sqrt(18), 10);
    const g = [model.a.grad!.toArray()[0], model.b.grad!.toArray()[0]];
    expect(Math.hypot(...g)).toBeCloseTo(1, 5);
  });
});

describe('kwargs handlers', () => {
  it('[B40] GradScalerKwargs(initScale 1024, growthFactor 2) keeps the other defaults', () => {
    const h = new GradScalerKwargs({ initScale: 1024, growthFactor: 2 });
    expect(h.fields).toEqual({ initScale: 1024, growthFactor: 2, backoffFactor: 0.5, growthInterval: 2000, enabled: true });
    expect(h.toKwargs()).toEqual({ initScale: 1024 });
  });
  it('[B40] toKwargs returns only changed fields', () => {
    expect(new DistributedDataParallelKwargs().toKwargs()).toEqual({});
    expect(new DistributedDataParallelKwargs({ bucketCapMb: 50, findUnusedParameters: true }).toKwargs()).toEqual({ bucketCapMb: 50, findUnusedParameters: true });
    expect(new AutocastKwargs({ enabled: false }).toKwargs()).toEqual({ enabled: false });
    expect(() => new AutocastKwargs({ enable: false } as never)).toThrow('AutocastKwargs has no option "enable". Valid options: enabled, cacheEnabled.');
  });
});

describe('saveModel', () => {
  it('[B45] writes model.safetensors, or shards + index under a small maxShardSize, that load back equal', async () => {
    const { mkdtempSync, readdirSync } = await import('node:fs');
    const { tmpdir } = await import('node:os');
    const { join } = await import('node:path');
    const { loadModelFiles } = await import('../../src/checkpoint/save-model.js');
    const { LinearModel } = await import('../../src/testing/index.js');
    const acc = make();
    const model = new LinearModel(3, 4);
    const [m] = await acc.prepare(model);
    const one = mkdtempSync(join(tmpdir(), 'acc-save-'));
    await acc.saveModel(m, one);
    expect(readdirSync(one)).toEqual(['model.safetensors']);
    const sharded = mkdtempSync(join(tmpdir(), 'acc-save-'));
    const r = await acc.saveModel(m, sharded, { maxShardSize: 40 });
    expect(r.files).toEqual(['model-00001-of-00002.safetensors', 'model-00002-of-00002.safetensors']);
    expect(readdirSync(sharded).sort()).toEqual([...r.files, 'model.safetensors.index.json']);
    for (const dir of [one, sharded]) {
      const loaded = await loadModelFiles(dir);
      expect(Object.keys(loaded).sort()).toEqual(['bias', 'weight']);
      expect(loaded.weight.shape).toEqual([4, 3]);
      expect(Array.from(loaded.weight.data as Float32Array)).toEqual(model.weight.toArray().map(Math.fround));
    }
  });
});

describe('backend choice', () => {
  it('ACCELERATE_BACKEND names the backend when the constructor does not; the constructor wins over it', async () => {
    const { registerBackend, unregisterBackend } = await import('../../src/registry/backend-registry.js');
    class Named extends ReferenceBackend {
      constructor(override readonly name: string) {
        super();
      }
    }
    const high = new Named('env-test-high');
    const low = new Named('env-test-low');
    registerBackend('env-test-high', { init: async () => high }, 1e9);
    registerBackend('env-test-low', { init: async () => low }, -1e9);
    try {
      const byEnv = new Accelerator({ configFile: false, env: { ACCELERATE_BACKEND: 'env-test-low' } });
      await byEnv.ready();
      expect(byEnv.backend).toBe(low);
      await AcceleratorState.resetState();
      const byOption = new Accelerator({ backend: 'env-test-high', configFile: false, env: { ACCELERATE_BACKEND: 'env-test-low' } });
      await byOption.ready();
      expect(byOption.backend).toBe(high);
      await AcceleratorState.resetState();
      const unknown = new Accelerator({ configFile: false, env: { ACCELERATE_BACKEND: 'no-such-backend' } });
      await expect(unknown.ready()).rejects.toThrow(/no-such-backend.*not registered/s);
    } finally {
      unregisterBackend('env-test-high');
      unregisterBackend('env-test-low');
    }
  });
});
