// Checkpoint participants (issue 12): participants plugins add with ctx.addCheckpointParticipant,
// validate-first loading, a strategy's modelCheckpoint in place of the model files — in process,
// reference backend.
import { describe, it, expect, beforeEach } from 'vitest';
import { mkdtempSync, readFileSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createHash } from 'node:crypto';
import { AcceleratorState } from '../../src/state/accelerator-state.js';
import { requireCapability } from '../../src/interfaces/backend.js';
import type { CheckpointParticipant } from '../../src/interfaces/checkpoint.js';
import type { Plugin } from '../../src/interfaces/plugin.js';
import type { DistributionStrategy } from '../../src/interfaces/strategy.js';
import { makeAccelerator, trainedRun } from './trained-run.js';
import { HostTensor } from '../../src/tensor/host-tensor.js';
import { MANIFEST_NAME, type CheckpointManifest } from '../../src/checkpoint/manifest.js';
import { RegressionModel } from '../../src/testing/index.js';

const make = makeAccelerator;
const tmp = () => mkdtempSync(join(tmpdir(), 'acc-participants-'));
const manifestOf = (dir: string) => JSON.parse(readFileSync(join(dir, MANIFEST_NAME), 'utf8')) as CheckpointManifest;

beforeEach(async () => {
  await AcceleratorState.resetState();
});

/** A participant holding a number and a tensor, in `<name>.json` + `<name>.safetensors` and a raw file. */
function tallyParticipant(name: string, state: { n: number; w: number[] }, log: string[] = []): CheckpointParticipant {
  return {
    name,
    async save(w) {
      await w.writeState(name, { n: state.n, w: HostTensor.fromNumbers(state.w, [state.w.length], 'float32') }, `${name} state`);
      await w.writeFile(`${name}.txt`, `n=${state.n}`);
      w.record({ n: state.n });
      log.push(`save ${name}`);
    },
    async read(r) {
      const v = (await r.readState(name)) as { n: number; w: HostTensor };
      const text = new TextDecoder().decode(await r.readFile(`${name}.txt`));
      if (text !== `n=${v.n}`) throw new Error(`${name}: ${name}.txt says ${text}`);
      log.push(`read ${name} recorded=${JSON.stringify(r.recorded)}`);
      return () => {
        state.n = v.n;
        state.w = Array.from(v.w.data as Float32Array);
        log.push(`apply ${name}`);
      };
    },
  };
}

/** A plugin that adds `participants` when its config is resolved. */
const adding = (name: string, ...participants: CheckpointParticipant[]): Plugin => ({
  name,
  configResolved: (ctx) => {
    for (const p of participants) ctx.addCheckpointParticipant(p);
  },
});

describe('participants added by plugins (ctx.addCheckpointParticipant)', () => {
  it('save their files next to the core files, are listed and recorded in the manifest, and restore their state with the rest', async () => {
    const state = { n: 5, w: [1.5, -2] };
    const log: string[] = [];
    const run = await trainedRun({ plugins: [adding('tally-plugin', tallyParticipant('tally', state, log))] });
    await run.train(2);
    const saved = run.snapshot();
    const dir = join(tmp(), 'c');
    await run.acc.saveState(dir);

    const files = readdirSync(dir).sort();
    expect(files).toEqual(
      [
        'custom_checkpoint_0.json',
        'dl_state_dict.json',
        'manifest.json',
        'model.safetensors',
        'optimizer.json',
        'optimizer.safetensors',
        'random_states_0.json',
        'random_states_0.safetensors',
        'scheduler.json',
        'tally.json',
        'tally.safetensors',
        'tally.txt',
      ].sort(),
    );
    const man = manifestOf(dir);
    // Core's entries are as before; the participant's record sits under contents.participants.
    expect(man.contents).toEqual({ models: 1, optimizers: 1, schedulers: 1, dataloaders: 1, customObjects: 1, scaler: false, plugins: [], participants: { tally: { n: 5 } } });
    expect(man.formatVersion).toBe(1);
    for (const f of ['tally.json', 'tally.safetensors', 'tally.txt']) {
      const bytes = readFileSync(join(dir, f));
      expect(man.files[f]).toEqual({ size: bytes.length, sha256: createHash('sha256').update(bytes).digest('hex') });
    }
    expect(JSON.parse(readFileSync(join(dir, 'tally.json'), 'utf8')).kind).toBe('participant');

    await run.train(1);
    state.n = 99;
    state.w = [0, 0];
    expect(run.snapshot()).not.toEqual(saved);
    const res = await run.acc.loadState(dir);
    expect(res.warnings).toEqual([]);
    expect(run.snapshot()).toEqual(saved);
    expect(state).toEqual({ n: 5, w: [1.5, -2] });
    expect(log).toEqual(['save tally', 'read tally recorded={"n":5}', 'apply tally']);
  });

  it('a second participant with the same name is an error, and so is one that takes a core name', async () => {
    const dup = make({ plugins: [adding('one', tallyParticipant('tally', { n: 1, w: [1] })), adding('two', tallyParticipant('tally', { n: 2, w: [2] }))] });
    await expect(dup.prepare(new RegressionModel())).rejects.toThrow(/\[two\] addCheckpointParticipant: a participant named "tally" was added already; give each a unique name/);

    await AcceleratorState.resetState();
    const core = make({ plugins: [adding('bad', tallyParticipant('models', { n: 1, w: [1] }))] });
    await core.prepare(new RegressionModel());
    const dir = join(tmp(), 'c');
    await expect(core.saveState(dir)).rejects.toThrow(/Checkpoint participant "models" from a plugin \(addCheckpointParticipant\) takes the name of one of core's participants/);
    await expect(core.loadState(dir)).rejects.toThrow(/takes the name of one of core's participants/);
  });

  it('a participant cannot write a file another participant wrote, or outside its folder', async () => {
    const clash: CheckpointParticipant = { name: 'clash', save: (w) => w.writeFile('model.safetensors', 'x'), read: async () => () => undefined };
    const acc = make({ plugins: [adding('p', clash)] });
    await acc.prepare(new RegressionModel());
    const root = tmp();
    await expect(acc.saveState(join(root, 'c'))).rejects.toThrow(/participant "clash" writes model\.safetensors, which participant "models" wrote already/);
    expect(readdirSync(root)).toEqual([]); // the temporary folder is removed

    await AcceleratorState.resetState();
    const escape: CheckpointParticipant = { name: 'escape', save: (w) => w.writeFile('../x.txt', 'x'), read: async () => () => undefined };
    const acc2 = make({ plugins: [adding('p', escape)] });
    await acc2.prepare(new RegressionModel());
    await expect(acc2.saveState(join(root, 'd'))).rejects.toThrow(/"\.\.\/x\.txt" is not a file name it can use/);
  });
});

describe('loadState is validate-first across participants', () => {
  it('a participant whose read throws leaves every object (model, optimizer, scheduler, loader, registered objects, step, other participants) unchanged', async () => {
    const good = { n: 1, w: [1] };
    const log: string[] = [];
    let failRead = false;
    const failing: CheckpointParticipant = {
      name: 'failing',
      async save(w) {
        await w.writeFile('failing.bin', new Uint8Array([1, 2, 3]));
      },
      async read(r) {
        await r.readFile('failing.bin');
        if (failRead) throw new Error('failing: the saved layout does not fit');
        return () => void log.push('apply failing');
      },
    };
    const run = await trainedRun({ plugins: [adding('p', tallyParticipant('good', good, log), failing)] });
    await run.train(2);
    const dir = join(tmp(), 'c');
    await run.acc.saveState(dir);
    await run.train(1);
    good.n = 42;
    const before = run.snapshot();
    log.length = 0;
    failRead = true;
    await expect(run.acc.loadState(dir)).rejects.toThrow('failing: the saved layout does not fit');
    expect(run.snapshot()).toEqual(before);
    expect(good.n).toBe(42);
    expect(log).toEqual(['read good recorded={"n":1}']); // read, never applied

    failRead = false;
    await run.acc.loadState(dir);
    expect(good.n).toBe(1);
    expect(log.slice(1)).toEqual(['read good recorded={"n":1}', 'apply good', 'apply failing']);
  });

  it('a damaged participant file is named, and nothing changes', async () => {
    const state = { n: 3, w: [3] };
    const run = await trainedRun({ plugins: [adding('p', tallyParticipant('tally', state))] });
    await run.train(1);
    const dir = join(tmp(), 'c');
    await run.acc.saveState(dir);
    await run.train(1);
    state.n = 7;
    const before = run.snapshot();
    const { writeFileSync } = await import('node:fs');
    writeFileSync(join(dir, 'tally.txt'), 'n=4');
    await expect(run.acc.loadState(dir)).rejects.toThrow(/tally\.txt has 3 bytes with sha256 .* but manifest\.json records 3 bytes/);
    expect(run.snapshot()).toEqual(before);
    expect(state.n).toBe(7);
  });

  it('a failure while applying a participant names what was already restored', async () => {
    const boom: CheckpointParticipant = {
      name: 'boom',
      save: async () => undefined,
      read: async () => () => {
        throw new Error('boom: cannot apply');
      },
    };
    const run = await trainedRun({ plugins: [adding('p', boom)] });
    const dir = join(tmp(), 'c');
    await run.acc.saveState(dir);
    await expect(run.acc.loadState(dir)).rejects.toThrow(/boom: cannot apply\nloadState stopped while restoring participant "boom" from .*Already restored before it failed: model 0 \(model\.safetensors\), optimizer 0/);
  });
});

describe("a strategy's modelCheckpoint", () => {
  /** A strategy that keeps the model as is and saves it as one file per model and rank. */
  function shardLikeStrategy(log: string[]): DistributionStrategy<any, any> {
    return {
      name: 'test-sharded',
      wrapModel: (m) => m,
      modelCheckpoint: (models, ctx) => ({
        name: 'test-sharded-models',
        writers: 'every',
        async save(w) {
          const mh = requireCapability(ctx.backend, 'models', 'test');
          for (const [i, m] of models().entries()) {
            const sd = mh.stateDict(m) as Record<string, unknown>;
            const host: Record<string, HostTensor> = {};
            for (const [k, t] of Object.entries(sd)) host[k] = ctx.backend.toHost(t);
            await w.writeTensors(`model_${i}-rank${w.processIndex}.safetensors`, host, { strategy: 'test-sharded' });
          }
          w.record({ layout: 'per-rank', ranks: w.numProcesses });
          log.push('save');
        },
        async read(r) {
          const parts: Array<Record<string, HostTensor>> = [];
          for (let i = 0; i < models().length; i++) parts.push(await r.readTensors(`model_${i}-rank${r.processIndex}.safetensors`));
          log.push(`read ${JSON.stringify(r.recorded)}`);
          return () => {
            const mh = requireCapability(ctx.backend, 'models', 'test');
            models().forEach((m, i) => mh.loadStateDict(m, parts[i], { strict: true }));
            log.push('apply');
          };
        },
      }),
    };
  }

  it('is used instead of the model files, and restores the weights', async () => {
    const log: string[] = [];
    const hooks: string[] = [];
    const run = await trainedRun({ plugins: [{ name: 'sharder', strategy: shardLikeStrategy(log) }] });
    run.acc.registerSaveStateHook((models, weights) => void hooks.push(`save hook: ${models.length} model(s), ${weights.length} weight dict(s)`));
    run.acc.registerLoadStateHook((models) => void hooks.push(`load hook: ${models.length} model(s)`));
    await run.train(2);
    const saved = run.snapshot();
    const dir = join(tmp(), 'c');
    await run.acc.saveState(dir);
    const files = readdirSync(dir);
    expect(files).toContain('model_0-rank0.safetensors');
    expect(files.filter((f) => /^model(_\d+)?\.safetensors$/.test(f))).toEqual([]);
    const man = manifestOf(dir);
    expect(man.contents.models).toBe(1);
    expect(man.contents.participants).toEqual({ 'test-sharded-models': { layout: 'per-rank', ranks: 1 } });
    expect(Object.keys(man.files)).toContain('model_0-rank0.safetensors');
    expect(man.sharedTensors).toBeUndefined();

    await run.train(1);
    expect(run.snapshot()).not.toEqual(saved);
    const res = await run.acc.loadState(dir);
    expect(res.warnings).toEqual([]);
    expect(run.snapshot()).toEqual(saved);
    expect(log).toEqual(['save', 'read {"layout":"per-rank","ranks":1}', 'apply']);
    expect(hooks).toEqual(['save hook: 1 model(s), 0 weight dict(s)', 'load hook: 1 model(s)']);
  });
});
