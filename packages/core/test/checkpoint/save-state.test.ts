// Accelerator.saveState / loadState with the reference backend: layout, manifest,
// automatic naming, hooks, registered objects, plugins, corruption, exact resume.
import { describe, it, expect, beforeEach } from 'vitest';
import { mkdtempSync, readFileSync, readdirSync, writeFileSync, existsSync, unlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createHash } from 'node:crypto';
import { Accelerator } from '../../src/accelerator/accelerator.js';
import { AcceleratorState } from '../../src/state/accelerator-state.js';
import { DataLoader } from '../../src/data/dataloader.js';
import { setSeed } from '../../src/accelerator/seed.js';
import type { Plugin } from '../../src/interfaces/plugin.js';
import { HostTensor } from '../../src/tensor/host-tensor.js';
import { CheckpointError, MANIFEST_NAME, type CheckpointManifest } from '../../src/checkpoint/manifest.js';
import { AdamW, LambdaLR, ReferenceBackend, RegressionDataset, RegressionModel, SGD, mseLoss, randn, type RefTensor } from '../../src/testing/index.js';

const env = {};
const make = (opts: ConstructorParameters<typeof Accelerator>[0] = {}) => new Accelerator({ backend: new ReferenceBackend(), configFile: false, env, ...opts });
const tmp = (p = 'acc-state-') => mkdtempSync(join(tmpdir(), p));
const manifestOf = (dir: string) => JSON.parse(readFileSync(join(dir, MANIFEST_NAME), 'utf8')) as CheckpointManifest;
type Batch = { x: RefTensor; y: RefTensor };

beforeEach(async () => {
  await AcceleratorState.resetState();
});

class Counter {
  count = 0;
  stateDict() {
    return { count: this.count };
  }
  loadStateDict(s: { count: number }) {
    this.count = s.count;
  }
}

async function oneStep(acc: Accelerator, m: RegressionModel, o: SGD, loader: AsyncIterable<Batch>) {
  for await (const b of loader) {
    acc.backward(mseLoss(m.forward(b.x), b.y));
    o.step();
    o.zeroGrad();
    break;
  }
}

describe('saveState layout and manifest', () => {
  it('[B44] model, optimizer, scheduler, fp16 scaler and a registered object: Accelerate names with safetensors + JSON, and a manifest hashing every file', async () => {
    const acc = make({ backend: new ReferenceBackend({ devices: ['cuda:0'] }), mixedPrecision: 'fp16' });
    const model = new RegressionModel({ a: 1, b: 2 });
    const opt = new AdamW(model.parameters(), { lr: 0.1 });
    const sched = new LambdaLR(opt, (e) => 1 / (e + 1));
    const loader = new DataLoader(new RegressionDataset({ length: 16 }), { batchSize: 4 });
    const [m, o, l, s] = await acc.prepare(model, opt, loader, sched);
    const counter = new Counter();
    counter.count = 7;
    acc.registerForCheckpointing(counter);
    for await (const b of l as AsyncIterable<Batch>) {
      acc.backward(mseLoss(m.forward(b.x), b.y));
      o.step();
      s.step();
      o.zeroGrad();
      break;
    }
    const dir = join(tmp(), 'ckpt');
    const out = await acc.saveState(dir);
    expect(out).toBe(dir);
    expect(readdirSync(dir).sort()).toEqual(
      [
        'custom_checkpoint_0.json',
        'dl_state_dict.json',
        'manifest.json',
        'model.safetensors',
        'optimizer.json',
        'optimizer.safetensors',
        'random_states_0.json',
        'random_states_0.safetensors',
        'scaler.json',
        'scheduler.json',
      ].sort(),
    );
    const man = manifestOf(dir);
    expect(man).toMatchObject({ format: 'accelerate-ts-checkpoint', formatVersion: 1, worldSize: 1, backend: 'reference', step: 0, iteration: 0 });
    expect(man.contents).toEqual({ models: 1, optimizers: 1, schedulers: 1, dataloaders: 1, customObjects: 1, scaler: true, plugins: [] });
    expect(man.configHash).toMatch(/^sha256:[0-9a-f]{64}$/);
    expect(man.accelerateTsVersion).toBe(JSON.parse(readFileSync(join(import.meta.dirname, '../../package.json'), 'utf8')).version);
    expect(Object.keys(man.files).sort()).toEqual(readdirSync(dir).filter((f) => f !== MANIFEST_NAME).sort());
    for (const [f, e] of Object.entries(man.files)) {
      const bytes = readFileSync(join(dir, f));
      expect(e).toEqual({ size: bytes.length, sha256: createHash('sha256').update(bytes).digest('hex') });
    }
    // No temporary folder is left beside the checkpoint.
    expect(readdirSync(join(dir, '..'))).toEqual(['ckpt']);
    expect(JSON.parse(readFileSync(join(dir, 'custom_checkpoint_0.json'), 'utf8')).value).toEqual({ count: 7 });
    expect(JSON.parse(readFileSync(join(dir, 'scaler.json'), 'utf8')).value).toMatchObject({ scale: 65536, _growth_tracker: 1 });
  });

  it('refuses safeSerialization: false (no pickles) and a missing outputDir without automatic naming', async () => {
    const acc = make();
    await acc.prepare(new RegressionModel());
    await expect(acc.saveState(join(tmp(), 'x'), { safeSerialization: false })).rejects.toThrow(/pickle/);
    await expect(acc.saveState()).rejects.toThrow(/pass an outputDir, or .*automaticCheckpointNaming/);
  });
});

describe('save and load round trip', () => {
  it('restores model, optimizer moments, scheduler, loader position, registered objects and step after the objects changed', async () => {
    const dir = join(tmp(), 'c');
    const acc = make();
    const model = new RegressionModel({ a: 1, b: 2 });
    const opt = new AdamW(model.parameters(), { lr: 0.1 });
    const sched = new LambdaLR(opt, (e) => 0.9 ** e);
    const [m, o, l, s] = await acc.prepare(model, opt, new DataLoader(new RegressionDataset({ length: 16 }), { batchSize: 4, shuffle: true }), sched);
    const counter = new Counter();
    acc.registerForCheckpointing(counter);
    let seen = 0;
    for await (const b of l as AsyncIterable<Batch>) {
      acc.backward(mseLoss(m.forward(b.x), b.y));
      o.step();
      s.step();
      o.zeroGrad();
      if (++seen === 2) break;
    }
    counter.count = 3;
    acc.step = 5;
    const before = { a: model.a.item(), b: model.b.item(), opt: opt.stateDict(), sched: sched.stateDict(), dl: (l as any).stateDict() };
    await acc.saveState(dir);
    // Change everything.
    for await (const b of l as AsyncIterable<Batch>) {
      acc.backward(mseLoss(m.forward(b.x), b.y));
      o.step();
      s.step();
      o.zeroGrad();
    }
    counter.count = 99;
    acc.step = 0;
    expect(model.a.item()).not.toBe(before.a);
    const res = await acc.loadState(dir);
    expect(res.warnings).toEqual([]);
    expect([model.a.item(), model.b.item()]).toEqual([before.a, before.b]);
    expect(opt.stateDict()).toEqual(before.opt);
    expect(sched.stateDict()).toEqual(before.sched);
    const dl = (l as any).stateDict();
    expect({ epoch: dl.epoch, samplesConsumed: dl.samplesConsumed }).toEqual({ epoch: before.dl.epoch, samplesConsumed: before.dl.samplesConsumed });
    expect(before.dl.samplesConsumed).toBe(8);
    expect(counter.count).toBe(3);
    expect(acc.step).toBe(5);
  });

  it('replaces an existing checkpoint folder atomically, leaving no temporary or set-aside folder', async () => {
    const root = tmp();
    const dir = join(root, 'c');
    const acc = make();
    const model = new RegressionModel({ a: 1 });
    await acc.prepare(model);
    await acc.saveState(dir);
    model.a.data[0] = 4;
    await acc.saveState(dir);
    expect(readdirSync(root)).toEqual(['c']);
    model.a.data[0] = 0;
    await acc.loadState(dir);
    expect(model.a.item()).toBe(4);
  });
});

describe('interrupted replace and strict loading', () => {
  it('a crash between "old aside" and "new in" leaves .<name>.old-<pid>: loadState warns and loads it, the next save puts it back and replaces it', async () => {
    const { renameSync } = await import('node:fs');
    const root = tmp();
    const dir = join(root, 'c');
    const acc = make();
    const model = new RegressionModel({ a: 5 });
    await acc.prepare(model);
    await acc.saveState(dir);
    renameSync(dir, join(root, '.c.old-4242'));
    model.a.data[0] = 0;
    const res = await acc.loadState(dir);
    expect(model.a.item()).toBe(5);
    expect(res.warnings).toEqual([expect.stringMatching(/c is missing because a save replacing it was interrupted; loading the previous checkpoint from .*\.c\.old-4242/)]);
    model.a.data[0] = 6;
    await acc.saveState(dir);
    expect(readdirSync(root)).toEqual(['c']);
    await acc.loadState(dir);
    expect(model.a.item()).toBe(6);
  });

  it('a plugin without a namespace in the checkpoint is a warning, and an error with strict', async () => {
    const dir = join(tmp(), 'c');
    const acc = make();
    await acc.prepare(new RegressionModel());
    await acc.saveState(dir);
    await AcceleratorState.resetState();
    const withPlugin = make({ plugins: [{ name: 'late', loadState: () => undefined }] });
    await withPlugin.prepare(new RegressionModel());
    const res = await withPlugin.loadState(dir);
    expect(res.warnings).toEqual([expect.stringMatching(/Plugin "late" has no namespace in .* so its loadState hook was not called/)]);
    await expect(withPlugin.loadState(dir, { strict: true })).rejects.toThrow(/Plugin "late" has no namespace.*strict: true/);
  });
});

describe('ProjectConfiguration: automatic naming, totalLimit, iteration', () => {
  it('[B41] totalLimit 2 and 11 saves keep checkpoint_9 and checkpoint_10; totalLimit 1 and 2 saves keep one; an existing target throws', async () => {
    const project = tmp();
    const acc = make({ projectConfig: { projectDir: project, automaticCheckpointNaming: true, totalLimit: 2 } });
    await acc.prepare(new RegressionModel());
    for (let i = 0; i < 11; i++) expect(await acc.saveState('ignored')).toBe(join(project, 'checkpoints', `checkpoint_${i}`));
    expect(readdirSync(join(project, 'checkpoints')).sort()).toEqual(['checkpoint_10', 'checkpoint_9']);
    expect(acc.projectConfiguration.iteration).toBe(11);

    await AcceleratorState.resetState();
    const p1 = tmp();
    const one = make({ projectConfig: { projectDir: p1, automaticCheckpointNaming: true, totalLimit: 1 } });
    await one.prepare(new RegressionModel());
    await one.saveState();
    await one.saveState();
    expect(readdirSync(p1)).toEqual(['checkpoints']);
    expect(readdirSync(join(p1, 'checkpoints'))).toEqual(['checkpoint_1']);
    one.projectConfiguration.iteration = 1;
    await expect(one.saveState()).rejects.toThrow(/checkpoint_1 \(iteration 1\) already exists.*iteration/);

    // A new run in the same projectDir (not resumed) would save checkpoint_0 below the old ones, and
    // totalLimit would prune it at once: refused before anything is written, with the ways out.
    await AcceleratorState.resetState();
    const rerun = make({ projectConfig: { projectDir: project, automaticCheckpointNaming: true, totalLimit: 2 } });
    await rerun.prepare(new RegressionModel());
    await expect(rerun.saveState()).rejects.toThrow(
      /already holds checkpoint_9, checkpoint_10 from an earlier run, and this run would save checkpoint_0\. Resume with loadState\(\).*iteration = 11/,
    );
    expect(readdirSync(join(project, 'checkpoints')).sort()).toEqual(['checkpoint_10', 'checkpoint_9']);
    rerun.projectConfiguration.iteration = 11;
    expect(await rerun.saveState()).toBe(join(project, 'checkpoints', 'checkpoint_11'));
    expect(readdirSync(join(project, 'checkpoints')).sort()).toEqual(['checkpoint_10', 'checkpoint_11']);
  });

  it('[B42] save, train, save, train, loadState() loads the newest checkpoint and moves iteration past it', async () => {
    const project = tmp();
    const acc = make({ projectConfig: { projectDir: project, automaticCheckpointNaming: true } });
    const model = new RegressionModel({ a: 1, b: 1 });
    const opt = new SGD(model.parameters(), { lr: 0.1 });
    const [m, o, l] = await acc.prepare(model, opt, new DataLoader(new RegressionDataset({ length: 8 }), { batchSize: 4 }));
    await acc.saveState();
    await oneStep(acc, m, o, l as AsyncIterable<Batch>);
    await oneStep(acc, m, o, l as AsyncIterable<Batch>);
    await acc.saveState();
    const newest = [model.a.item(), model.b.item()];
    await oneStep(acc, m, o, l as AsyncIterable<Batch>);
    expect(model.a.item()).not.toBe(newest[0]);
    acc.projectConfiguration.iteration = 0;
    const res = await acc.loadState();
    expect(res.dir).toBe(join(project, 'checkpoints', 'checkpoint_1'));
    expect([model.a.item(), model.b.item()]).toEqual(newest);
    expect(acc.projectConfiguration.iteration).toBe(2);
    // A hidden temporary folder of an interrupted save is never taken for the newest checkpoint.
    const fake = join(project, 'checkpoints', '.checkpoint_7.tmp-123');
    await import('node:fs/promises').then((f) => f.mkdir(fake));
    expect((await acc.loadState()).dir).toBe(join(project, 'checkpoints', 'checkpoint_1'));
  });

  it('loadState without a folder and without automatic naming, or of a missing folder, says what to do', async () => {
    const acc = make();
    await acc.prepare(new RegressionModel());
    await expect(acc.loadState()).rejects.toThrow(/no inputDir given and automatic checkpoint naming is off/);
    await expect(acc.loadState(join(tmp(), 'nope'))).rejects.toThrow(/nope but the folder does not exist/);
  });
});

describe('registerForCheckpointing, hooks and plugins', () => {
  it('[B43] objects without stateDict/loadStateDict are listed by index; a count mismatch on load throws', async () => {
    const acc = make();
    await acc.prepare(new RegressionModel());
    let err: Error | undefined;
    try {
      acc.registerForCheckpointing({ a: 1 }, new Map(), new Counter(), new Counter());
    } catch (e) {
      err = e as Error;
    }
    expect(err?.message).toMatch(/Item at index 0, `object`/);
    expect(err?.message).toMatch(/Item at index 1, `Map`/);
    expect(err?.message).not.toMatch(/index 2|index 3/);

    const dir = join(tmp(), 'c');
    acc.registerForCheckpointing(new Counter(), new Counter());
    await acc.saveState(dir);
    await AcceleratorState.resetState();
    const other = make();
    await other.prepare(new RegressionModel());
    other.registerForCheckpointing(new Counter());
    await expect(other.loadState(dir)).rejects.toThrow(/custom checkpoints .* found 2 \(custom_checkpoint_0.json, custom_checkpoint_1.json\), registered 1/);
  });

  it('save and load hooks run with the models, may take over a model, write into the checkpoint, and can be removed', async () => {
    const acc = make();
    const model = new RegressionModel({ a: 3, b: 4 });
    await acc.prepare(model);
    const calls: string[] = [];
    const h1 = acc.registerSaveStateHook((models, weights, dir) => {
      calls.push(`save ${models.length} ${Object.keys(weights[0]).sort().join(',')}`);
      writeFileSync(join(dir, 'extra.json'), JSON.stringify({ a: weights[0].a.toArray()[0] }));
      weights.splice(0, 1); // saved by the hook itself
    });
    const h2 = acc.registerLoadStateHook((models, dir) => {
      calls.push(`load ${models.length}`);
      const { a } = JSON.parse(readFileSync(join(dir, 'extra.json'), 'utf8'));
      (models[0] as RegressionModel).a.data[0] = a;
      models.splice(0, 1);
    });
    const dir = join(tmp(), 'c');
    await acc.saveState(dir);
    expect(existsSync(join(dir, 'model.safetensors'))).toBe(false);
    expect(manifestOf(dir).files['extra.json']).toBeDefined();
    model.a.data[0] = 0;
    await acc.loadState(dir);
    expect(model.a.item()).toBe(3);
    expect(calls).toEqual(['save 1 a,b', 'load 1']);
    h1.remove();
    h2.remove();
    await acc.saveState(join(tmp(), 'd'));
    expect(calls).toHaveLength(2);
  });

  it('plugins save into and load from their own namespace folder plugins/<name>', async () => {
    const seen: string[] = [];
    const plugin: Plugin = {
      name: 'my-plugin',
      saveState: (dir) => writeFileSync(join(dir, 'state.txt'), 'hello'),
      loadState: (dir) => void seen.push(readFileSync(join(dir, 'state.txt'), 'utf8')),
    };
    const acc = make({ plugins: [plugin] });
    await acc.prepare(new RegressionModel());
    const dir = join(tmp(), 'c');
    await acc.saveState(dir);
    expect(manifestOf(dir).contents.plugins).toEqual(['my-plugin']);
    expect(manifestOf(dir).files['plugins/my-plugin/state.txt']).toEqual({ size: 5, sha256: createHash('sha256').update('hello').digest('hex') });
    await acc.loadState(dir);
    expect(seen).toEqual(['hello']);
    writeFileSync(join(dir, 'plugins/my-plugin/state.txt'), 'HELLO');
    await expect(acc.loadState(dir)).rejects.toThrow(/corrupt: plugins\/my-plugin\/state.txt has 5 bytes with sha256/);
  });
});

describe('damaged checkpoints', () => {
  async function saved() {
    const acc = make();
    const model = new RegressionModel({ a: 1 });
    const opt = new AdamW(model.parameters());
    const sched = new LambdaLR(opt, () => 1);
    const [m, o] = await acc.prepare(model, opt, sched);
    acc.backward(mseLoss(m.forward(randn([4])), randn([4])));
    o.step();
    const dir = join(tmp(), 'c');
    await acc.saveState(dir);
    return { acc, dir };
  }

  it('a flipped byte names the corrupt file and its expected and actual sha256', async () => {
    const { acc, dir } = await saved();
    const f = join(dir, 'optimizer.safetensors');
    const bytes = readFileSync(f);
    bytes[bytes.length - 1] ^= 0xff;
    writeFileSync(f, bytes);
    const err = await acc.loadState(dir).catch((e) => e);
    expect(err).toBeInstanceOf(CheckpointError);
    expect(err.file).toBe('optimizer.safetensors');
    expect(err.message).toMatch(new RegExp(`corrupt: optimizer.safetensors has ${bytes.length} bytes with sha256 [0-9a-f]{64}, but manifest.json records ${bytes.length} bytes with sha256 ${manifestOf(dir).files['optimizer.safetensors'].sha256}`));
  });

  it('a missing file, a missing manifest and a newer manifest version are explained', async () => {
    const { acc, dir } = await saved();
    unlinkSync(join(dir, 'scheduler.json'));
    await expect(acc.loadState(dir)).rejects.toThrow(/incomplete: scheduler.json is listed in manifest.json \(\d+ bytes\) but the file is missing/);
    const man = manifestOf(dir);
    writeFileSync(join(dir, MANIFEST_NAME), JSON.stringify({ ...man, formatVersion: 99 }));
    await expect(acc.loadState(dir)).rejects.toThrow(/format version 99, but this accelerate-ts .* reads versions 1..1/);
    unlinkSync(join(dir, MANIFEST_NAME));
    await expect(acc.loadState(dir)).rejects.toThrow(/has no manifest.json, so it is not a finished accelerate-ts checkpoint/);
  });

  it('more prepared objects than saved ones are named', async () => {
    const { dir } = await saved();
    await AcceleratorState.resetState();
    const acc = make();
    const m1 = new RegressionModel();
    const m2 = new RegressionModel();
    await acc.prepare(m1, m2);
    await expect(acc.loadState(dir)).rejects.toThrow(/model 1 has no state .* holds 1 model\(s\) but 2 are prepared \(model_1.safetensors/);
  });
});

// ---- exact resume ----------------------------------------------------------------------------

/** One training run: shuffled loader, AdamW, LambdaLR, accumulation 2, noise from the backend RNG. */
async function trainRun(opts: { seed: number; stopAfter?: number; saveTo?: string; resumeFrom?: string; epochs?: number }) {
  await AcceleratorState.resetState();
  const acc = make({ gradientAccumulationSteps: 2 });
  await acc.ready();
  setSeed(opts.seed);
  const model = new RegressionModel({ a: opts.seed % 7, b: -1 });
  const opt = new AdamW(model.parameters(), { lr: 0.05 });
  const sched = new LambdaLR(opt, (e) => 1 / (1 + 0.1 * e));
  const loader = new DataLoader(new RegressionDataset({ length: 30 }), { batchSize: 4, shuffle: true });
  const [m, o, l, s] = await acc.prepare(model, opt, loader, sched);
  const progress = new Counter();
  acc.registerForCheckpointing(progress);
  if (opts.resumeFrom) await acc.loadState(opts.resumeFrom);
  const losses: number[] = [];
  const ids: number[] = [];
  const prepared = l as unknown as AsyncIterable<Batch> & { iteration: number };
  for (let epoch = prepared.iteration; epoch < (opts.epochs ?? 3); epoch++) {
    for await (const b of prepared) {
      await acc.accumulate(m, () => {
        const noise = randn([b.x.shape[0]]).mul(0.05);
        const loss = mseLoss(m.forward(b.x).add(noise), b.y);
        losses.push(loss.item());
        acc.backward(loss);
        o.step();
        s.step();
        o.zeroGrad();
      });
      ids.push(...Array.from(b.x.toHost().data as Float32Array));
      progress.count++;
      if (progress.count === opts.stopAfter) {
        await acc.saveState(opts.saveTo!);
        return { losses, ids, params: [model.a.item(), model.b.item()] };
      }
    }
  }
  return { losses, ids, params: [model.a.item(), model.b.item()] };
}

describe('exact resume (reference backend)', () => {
  it('a run stopped mid-epoch at step 12 and resumed in a fresh Accelerator gives bit-identical losses and parameters', async () => {
    const full = await trainRun({ seed: 3 });
    const dir = join(tmp(), 'resume');
    const first = await trainRun({ seed: 3, stopAfter: 12, saveTo: dir });
    // Other seed and initial weights: everything must come from the checkpoint.
    const second = await trainRun({ seed: 11, resumeFrom: dir });
    expect(first.losses.length).toBe(12);
    expect([...first.losses, ...second.losses]).toEqual(full.losses);
    expect([...first.ids, ...second.ids]).toEqual(full.ids);
    expect(second.params).toEqual(full.params);
    expect(full.losses.length).toBe(24);
  });

  it('a checkpoint taken at the last batch of an epoch resumes at the start of the next epoch', async () => {
    const full = await trainRun({ seed: 5 });
    const dir = join(tmp(), 'resume');
    const first = await trainRun({ seed: 5, stopAfter: 8, saveTo: dir });
    const second = await trainRun({ seed: 1, resumeFrom: dir });
    expect([...first.losses, ...second.losses]).toEqual(full.losses);
    expect(second.params).toEqual(full.params);
  });

  it('without the checkpoint (a plain restart with the same seed) the losses differ, so the test can fail', async () => {
    const full = await trainRun({ seed: 3 });
    const restarted = await trainRun({ seed: 3, epochs: 3 });
    expect(restarted.losses).toEqual(full.losses); // determinism of the fixture itself
    const dir = join(tmp(), 'resume');
    await trainRun({ seed: 3, stopAfter: 12, saveTo: dir });
    const noLoad = await trainRun({ seed: 11 });
    expect(noLoad.losses.slice(0, 12)).not.toEqual(full.losses.slice(12));
  });
});

describe('state values', () => {
  it('HostTensors of every dtype, bytes, NaN and Infinity survive a registered object round trip', async () => {
    const acc = make();
    await acc.prepare(new RegressionModel());
    const value = {
      f32: new HostTensor(new Float32Array([1.5, -2]), [2], 'float32'),
      i64: new HostTensor(new BigInt64Array([1n, -3n]), [1, 2], 'int64'),
      bytes: new Uint8Array([0, 255, 7]),
      nums: [NaN, Infinity, -Infinity, 0.1],
      nested: { __tensor__: 'not a tensor' },
      s: 'x',
      n: null,
    };
    let restored: any;
    acc.registerForCheckpointing({ stateDict: () => value, loadStateDict: (s: unknown) => void (restored = s) });
    const dir = join(tmp(), 'c');
    await acc.saveState(dir);
    await acc.loadState(dir);
    expect(restored.f32.toArray()).toEqual([1.5, -2]);
    expect(restored.i64.dtype).toBe('int64');
    expect(restored.i64.shape).toEqual([1, 2]);
    expect([...(restored.i64.data as BigInt64Array)]).toEqual([1n, -3n]);
    expect([...restored.bytes]).toEqual([0, 255, 7]);
    expect(restored.nums).toEqual([NaN, Infinity, -Infinity, 0.1]);
    expect(restored.nested).toEqual({ __tensor__: 'not a tensor' });
    expect(restored.s).toBe('x');
    expect(restored.n).toBeNull();
  });

  it('a value that cannot be stored is named by its path', async () => {
    const acc = make();
    await acc.prepare(new RegressionModel());
    acc.registerForCheckpointing({ stateDict: () => ({ a: { b: () => 1 } }), loadStateDict: () => undefined });
    await expect(acc.saveState(join(tmp(), 'c'))).rejects.toThrow(/registered object 0 \(object\): a.b is a Function, which a checkpoint cannot store/);
  });
});

describe('saveState / loadState progress', () => {
  it('draws a byte bar for the model weights when forced, and none by default for a small checkpoint', async () => {
    const tty = () => {
      const out: string[] = [];
      return { isTTY: true, columns: 100, out, write: (t: string) => void out.push(t) };
    };
    const acc = make();
    const model = new RegressionModel({ a: 1, b: 2 });
    await acc.prepare(model);
    const dir = join(tmp(), 'ckpt');
    const loud = tty();
    await acc.saveState(dir, { progress: { enabled: true, stream: loud, env: {} } });
    const saved = loud.out.join('');
    expect(saved).toContain('saveState: model weights');
    expect(saved).toContain('model.safetensors');
    expect(saved.endsWith('\n')).toBe(true);
    const quiet = tty();
    await acc.saveState(dir, { progress: { stream: quiet, env: {} } });
    expect(quiet.out).toEqual([]);
    const loadBar = tty();
    await acc.loadState(dir, { progress: { enabled: true, stream: loadBar, env: {} } });
    expect(loadBar.out.join('')).toContain('loadState: model weights');
  });
});

describe('saveState never deletes files it did not write', () => {
  it('refuses a folder holding other files, and a checkpoint folder with files its manifest does not list; the files survive', async () => {
    const acc = make();
    await acc.prepare(new RegressionModel({ a: 1, b: 2 }));
    const dir = tmp('acc-foreign-');
    writeFileSync(join(dir, 'notes.txt'), 'keep me');
    await expect(acc.saveState(dir)).rejects.toThrow(/already holds files that are not part of a checkpoint \(notes\.txt\).*would delete them/s);
    expect(readFileSync(join(dir, 'notes.txt'), 'utf8')).toBe('keep me');
    expect(readdirSync(dir)).toEqual(['notes.txt']);

    const ckpt = join(dir, 'ckpt');
    await acc.saveState(ckpt);
    await acc.saveState(ckpt); // our own checkpoint is replaced
    writeFileSync(join(ckpt, 'eval.log'), 'mine');
    await expect(acc.saveState(ckpt)).rejects.toThrow(/\(eval\.log\)/);
    expect(readFileSync(join(ckpt, 'eval.log'), 'utf8')).toBe('mine');
    expect(existsSync(join(ckpt, MANIFEST_NAME))).toBe(true);
  });

  it('expands ~ in saveState and loadState paths', async () => {
    const home = tmp('acc-home-');
    const saved = process.env.HOME;
    process.env.HOME = home;
    try {
      const acc = make();
      await acc.prepare(new RegressionModel({ a: 1, b: 2 }));
      expect(await acc.saveState('~/ckpt')).toBe(join(home, 'ckpt'));
      expect(existsSync(join(home, 'ckpt', MANIFEST_NAME))).toBe(true);
      expect((await acc.loadState('~/ckpt')).dir).toBe(join(home, 'ckpt'));
    } finally {
      process.env.HOME = saved;
    }
  });
});

describe('accelerator.step (the accumulation counter) across saveState / loadState', () => {
  it('counts accumulate calls as Accelerate does, is saved, and a resumed run keeps its accumulation window', async () => {
    const acc = make({ gradientAccumulationSteps: 2 });
    const model = new RegressionModel({ a: 1, b: 2 });
    const opt = new SGD(model.parameters(), { lr: 0.1 });
    const [m, o, l] = await acc.prepare(model, opt, new DataLoader(new RegressionDataset({ length: 32 }), { batchSize: 4 }));
    const syncs: boolean[] = [];
    let n = 0;
    for await (const b of l as AsyncIterable<Batch>) {
      await acc.accumulate(m, () => {
        acc.backward(mseLoss(m.forward(b.x), b.y));
        o.step();
        o.zeroGrad();
      });
      syncs.push(acc.syncGradients);
      if (++n === 4) break;
    }
    expect(syncs).toEqual([false, true, false, true]);
    expect(acc.step).toBe(4);
    const dir = join(tmp(), 'ckpt');
    await acc.saveState(dir);
    expect(manifestOf(dir).step).toBe(4);
    acc.step = 1; // as if a fresh run had done one micro-step
    await acc.loadState(dir);
    expect(acc.step).toBe(4);
    expect(() => (acc.step = -1)).toThrow('GradientState.step must be a whole number >= 0, got -1.');
  });
});

describe('loadState explains checkpoints it cannot (fully) use', () => {
  it('names a Python Accelerate checkpoint and says how to use its weights', async () => {
    const dir = tmp('acc-python-');
    for (const f of ['model.safetensors', 'optimizer.bin', 'scheduler.bin', 'random_states_0.pkl']) writeFileSync(join(dir, f), 'x');
    const acc = make();
    await acc.prepare(new RegressionModel({ a: 1, b: 2 }));
    await expect(acc.loadState(dir)).rejects.toThrow(
      /written by Python Accelerate's save_state \(optimizer\.bin, random_states_0\.pkl, scheduler\.bin\).*accelerate checkpoint import-python .*acc-python-\w+-ts.*loadModelFiles/s,
    );
  });

  it('warns when the checkpoint holds more objects than are prepared, and names the saving backend when its optimizer state does not fit', async () => {
    const acc = make();
    const model = new RegressionModel({ a: 1, b: 2 });
    const opt = new SGD(model.parameters(), { lr: 0.1 });
    await acc.prepare(model, opt);
    const dir = join(tmp(), 'ckpt');
    await acc.saveState(dir);

    await AcceleratorState.resetState();
    const bare = make();
    await bare.prepare(new RegressionModel({ a: 1, b: 2 }));
    const res = await bare.loadState(dir);
    expect(res.warnings).toEqual([expect.stringMatching(/holds 1 optimizer\(s\) but only 0 are prepared: the last 1 are not restored/)]);

    await AcceleratorState.resetState();
    class Other extends ReferenceBackend {
      override readonly name = 'other';
      constructor() {
        super();
        this.optimizers.loadStateDict = (): void => {
          throw new TypeError('expected the other layout');
        };
      }
    }
    const other = new Accelerator({ backend: new Other(), configFile: false, env });
    const m2 = new RegressionModel({ a: 1, b: 2 });
    await other.prepare(m2, new SGD(m2.parameters(), { lr: 0.1 }));
    await expect(other.loadState(dir)).rejects.toThrow(/saved by the "reference" backend and cannot be loaded by "other" \(expected the other layout\)/);
  });
});

describe('saveState is collective', () => {
  it('when the processes cannot meet, the error says to call it on every process', async () => {
    const { saveAcceleratorState } = await import('../../src/checkpoint/save-state.js');
    const acc = make();
    await acc.prepare(new RegressionModel({ a: 1, b: 2 }));
    // The host the Accelerator hands to saveState, with a collective that times out as a lone rank 0's would.
    const host = (acc as unknown as { checkpointHost(): Parameters<typeof saveAcceleratorState>[0] }).checkpointHost();
    const lonely = { ...host, gatherObject: async () => Promise.reject(new Error('allGather #3 timed out; rank 1 is at barrier #3')) };
    await expect(saveAcceleratorState(lonely, join(tmp(), 'ckpt'))).rejects.toThrow(
      'saveState: the processes could not meet (allGather #3 timed out; rank 1 is at barrier #3). saveState and loadState are collective: call them on every process, not inside `if (accelerator.isMainProcess)`.',
    );
  });
});
