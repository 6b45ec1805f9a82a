// loadState reads and parses every file before it changes any object; automatic naming falls
// back to the newest valid checkpoint; wrong paths are explained.
import { describe, it, expect, beforeEach } from 'vitest';
import { mkdirSync, mkdtempSync, readFileSync, writeFileSync, cpSync, unlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createHash } from 'node:crypto';
import { AcceleratorState } from '../../src/state/accelerator-state.js';
import { CheckpointError, MANIFEST_NAME, type CheckpointManifest } from '../../src/checkpoint/manifest.js';
import { loadModelFiles } from '../../src/checkpoint/save-model.js';
import { makeAccelerator, trainedRun } from './trained-run.js';
import { LinearModel, RegressionModel } from '../../src/testing/index.js';

const make = makeAccelerator;
const tmp = (p = 'acc-validate-') => mkdtempSync(join(tmpdir(), p));

beforeEach(async () => {
  await AcceleratorState.resetState();
});

/** Replace `file` in a checkpoint and record its new hash in the manifest, as a buggy writer would have. */
function replaceListed(dir: string, file: string, bytes: Uint8Array | string) {
  writeFileSync(join(dir, file), bytes);
  const data = readFileSync(join(dir, file));
  const man = JSON.parse(readFileSync(join(dir, MANIFEST_NAME), 'utf8')) as CheckpointManifest;
  man.files[file] = { size: data.length, sha256: createHash('sha256').update(data).digest('hex') };
  writeFileSync(join(dir, MANIFEST_NAME), JSON.stringify(man));
}

describe('loadState validates every file before applying any', () => {
  for (const [file, content, pattern] of [
    ['scheduler.json', '{"format": "accelerate-ts-state", "version": 1, "kind": "sched', /scheduler\.json cannot be parsed \(.*not valid JSON/],
    ['optimizer.safetensors', new Uint8Array([1, 2, 3]), /optimizer\.safetensors cannot be parsed \(.*8-byte header/],
    ['model.safetensors', new Uint8Array(64).fill(7), /model\.safetensors cannot be parsed/],
    ['custom_checkpoint_0.json', '{"format": "accelerate-ts-state", "version": 1, "kind": "optimizer", "value": {}}', /custom_checkpoint_0\.json cannot be parsed \(.*holds a "optimizer" state where a "custom" state was expected/],
  ] as const) {
    it(`a listed ${file} that does not parse is named, and nothing (weights, optimizer, scheduler, loader, objects, step) changes`, async () => {
      const run = await trainedRun();
      await run.train(2);
      const dir = join(tmp(), 'c');
      await run.acc.saveState(dir);
      await run.train(1);
      const before = run.snapshot();
      replaceListed(dir, file, content);
      const err = await run.acc.loadState(dir).catch((e) => e);
      expect(err).toBeInstanceOf(CheckpointError);
      expect(err.file).toBe(file);
      expect(err.message).toContain(join(dir, file));
      expect(err.message).toMatch(pattern);
      expect(err.message).toMatch(/Nothing was restored/);
      expect(run.snapshot()).toEqual(before);
    });
  }

  it('a failure while applying (a loader over another dataset) says what was already restored', async () => {
    const run = await trainedRun();
    await run.train(1);
    const dir = join(tmp(), 'c');
    await run.acc.saveState(dir);
    const dl = JSON.parse(readFileSync(join(dir, 'dl_state_dict.json'), 'utf8'));
    dl.value.datasetLength = 99;
    replaceListed(dir, 'dl_state_dict.json', JSON.stringify(dl));
    await expect(run.acc.loadState(dir)).rejects.toThrow(/loadState stopped while restoring data loader 0 \(dl_state_dict\.json\) from .*Already restored before it failed: model 0 \(model\.safetensors\), optimizer 0 \(optimizer\.json\), scheduler 0 \(scheduler\.json\)/s);
  });
});

describe('models that do not fit are refused before anything changes', () => {
  it('model 1 of another shape: the error names model_1.safetensors and the tensor, and model 0 keeps its weights', async () => {
    const acc = make();
    await acc.prepare(new RegressionModel({ a: 1, b: 2 }), new LinearModel(3, 2));
    const dir = join(tmp(), 'c');
    await acc.saveState(dir);
    await AcceleratorState.resetState();
    const acc2 = make();
    const m0 = new RegressionModel({ a: 5, b: 6 });
    await acc2.prepare(m0, new LinearModel(4, 2));
    const err = await acc2.loadState(dir).catch((e) => e);
    expect(err).toBeInstanceOf(CheckpointError);
    expect(err.file).toBe('model_1.safetensors');
    expect(err.message).toMatch(/model_1\.safetensors does not fit model 1: size mismatch for weight: the checkpoint has shape \[2, 3\], the model \[2, 4\]\. Nothing was restored/);
    expect([m0.a.item(), m0.b.item()]).toEqual([5, 6]);
  });

  it('with strictModelKeys a missing name is refused up front; strictModelKeys: false loads the matching names', async () => {
    const acc = make();
    await acc.prepare(new LinearModel(3, 2, { bias: false }));
    const dir = join(tmp(), 'c');
    await acc.saveState(dir);
    await AcceleratorState.resetState();
    const acc2 = make();
    const m = new LinearModel(3, 2);
    await acc2.prepare(m);
    await expect(acc2.loadState(dir)).rejects.toThrow(/model\.safetensors does not fit model 0: missing keys \[bias\]\. Nothing was restored.*strictModelKeys: false/);
    await expect(acc2.loadState(dir, { strictModelKeys: false })).resolves.toBeDefined();
  });
});

describe('loadState() with automatic naming falls back to the newest valid checkpoint', () => {
  it('skips an empty and a partial newer checkpoint_<n>, says which and why, and the next save numbers after them', async () => {
    const projectDir = tmp();
    const run = await trainedRun({ projectConfig: { projectDir, automaticCheckpointNaming: true } });
    await run.train(1);
    await run.acc.saveState(); // checkpoint_0
    await run.train(1);
    await run.acc.saveState(); // checkpoint_1
    const good = run.snapshot();
    const root = join(projectDir, 'checkpoints');
    mkdirSync(join(root, 'checkpoint_2')); // empty: a save that died before writing anything
    cpSync(join(root, 'checkpoint_1'), join(root, 'checkpoint_3'), { recursive: true });
    unlinkSync(join(root, 'checkpoint_3', 'optimizer.json')); // partial
    await run.train(2);
    const res = await run.acc.loadState();
    expect(res.dir).toBe(join(root, 'checkpoint_1'));
    expect(run.snapshot()).toEqual(good);
    expect(res.warnings.join('\n')).toMatch(/skipped the newer checkpoint checkpoint_3: .*incomplete: optimizer\.json is listed in manifest\.json .* but the file is missing.*Loaded .*checkpoint_1 instead/);
    expect(res.warnings.join('\n')).toMatch(/skipped the newer checkpoint checkpoint_2: .*has no manifest\.json/);
    expect(run.acc.projectConfiguration.iteration).toBe(4);
    expect(await run.acc.saveState()).toBe(join(root, 'checkpoint_4'));
  });

  it('throws, listing each one and why, when no checkpoint is valid; an explicit folder never falls back', async () => {
    const projectDir = tmp();
    const run = await trainedRun({ projectConfig: { projectDir, automaticCheckpointNaming: true } });
    await run.acc.saveState(); // checkpoint_0
    const root = join(projectDir, 'checkpoints');
    replaceListed(join(root, 'checkpoint_0'), 'scheduler.json', 'nope');
    mkdirSync(join(root, 'checkpoint_1'));
    const err = await run.acc.loadState().catch((e) => e);
    expect(err.message).toMatch(/no valid checkpoint in .*checkpoints; every one failed its checks:\n- checkpoint_1: .*has no manifest\.json.*\n- checkpoint_0: .*scheduler\.json cannot be parsed/s);
    await expect(run.acc.loadState(join(root, 'checkpoint_1'))).rejects.toThrow(/checkpoint_1 has no manifest\.json/);
  });
});

describe('wrong paths are explained', () => {
  it('loadState(<a file>) says it is a file and names the folder / loadModelFiles; loadModelFiles(<missing>) says no such path', async () => {
    const run = await trainedRun();
    const dir = join(tmp(), 'c');
    await run.acc.saveState(dir);
    await expect(run.acc.loadState(join(dir, 'model.safetensors'))).rejects.toThrow(
      /model\.safetensors is a file, but loadState expects a checkpoint folder written by saveState.*loadModelFiles\(/,
    );
    await expect(run.acc.loadState(join(dir, 'manifest.json'))).rejects.toThrow(new RegExp(`Pass the folder that contains it \\(${dir}\\)`));
    await expect(loadModelFiles(join(dir, 'nope'))).rejects.toThrow(/nope does not exist \(no such file or folder\)\. Pass the folder saveModel/);
  });
});
