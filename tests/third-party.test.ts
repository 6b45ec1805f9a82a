/**
 * The seams are real: a third-party backend and a third-party strategy plugin,
 * written outside the monorepo's packages (tests/fixtures/third-party, copied
 * into a temp project and installed there with `npm install <folder>`), train
 * through `accelerate launch --num_processes 2` — the backend found through
 * its package.json's `accelerate` field, the strategy passed as a plugin —
 * with no line of core naming either.
 *
 * The strategy is local SGD (average parameters every k steps through the
 * process group). With k = 1 and plain SGD it is data-parallel SGD, so 2
 * ranks × batch 8 must end where 1 process × batch 16 ends.
 */
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { spawnSync } from 'node:child_process';
import { cpSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ROOT, cleanEnv, fixture, rankResults } from './helpers.js';

const TRAIN = `
import { Accelerator, DataLoader } from '@accelerate/core';
import { RegressionDataset, RegressionModel, SGD, mseLoss } from '@accelerate/core/testing';
import { localSgd } from 'accelerate-strategy-local-sgd';

const every = Number(process.env.EVERY ?? '1');
const batchSize = Number(process.env.BATCH ?? '8');
const accelerator = new Accelerator({ backend: 'refjs', plugins: [localSgd({ every })] });
const model = new RegressionModel();
const optimizer = new SGD(model.parameters(), { lr: 0.1 });
const data = new DataLoader(new RegressionDataset({ length: 64, seed: 7 }), { batchSize });
const [m, opt, loader] = await accelerator.prepare(model, optimizer, data);
let steps = 0;
let lastLoss = 0;
for (let epoch = 0; epoch < 3; epoch++) {
  for await (const { x, y } of loader) {
    const loss = mseLoss(m.forward(x), y);
    accelerator.backward(loss);
    await opt.step(); // the strategy averages after the step, asynchronously
    opt.zeroGrad();
    steps += 1;
    lastLoss = accelerator.backend.toHost(loss).data[0];
  }
}
const value = (t) => accelerator.backend.toHost(t).data[0];
console.log('RESULT ' + JSON.stringify({
  backend: accelerator.backend.name,
  strategy: accelerator.strategy.name,
  distributedType: accelerator.distributedType,
  steps, lastLoss, a: value(m.a), b: value(m.b),
}));
`;

let project: string;
let installOut = '';

beforeAll(() => {
  project = mkdtempSync(join(tmpdir(), 'accelerate-third-party-'));
  // The third-party packages live inside the project (vendor/), as a user's local packages would,
  // so that their imports of @accelerate/* resolve from the project's node_modules.
  mkdirSync(join(project, 'vendor'));
  for (const name of readdirSync(fixture('third-party'))) cpSync(join(fixture('third-party'), name), join(project, 'vendor', name), { recursive: true });
  writeFileSync(join(project, 'package.json'), JSON.stringify({ name: 'user-project', private: true, type: 'module' }, null, 2));
  writeFileSync(join(project, 'train.mjs'), TRAIN);
  const pkgs = ['core', 'backend-libtorch', 'cli'].map((p) => join(ROOT, 'packages', p));
  const r = spawnSync('npm', ['install', '--no-audit', '--no-fund', '--offline', '--ignore-scripts', '--loglevel=error', ...pkgs, './vendor/backend-refjs', './vendor/strategy-local-sgd'], {
    cwd: project,
    encoding: 'utf8',
    env: cleanEnv(),
    timeout: 300_000,
  });
  installOut = `${r.stdout}${r.stderr}`;
  expect(r.status, `npm install in ${project}:\n${installOut}`).toBe(0);
}, 320_000);
afterAll(() => rmSync(project, { recursive: true, force: true }));

function launch(numProcesses: number, env: Record<string, string>) {
  const r = spawnSync('npx', ['--no-install', 'accelerate', 'launch', '--num_processes', String(numProcesses), 'train.mjs'], {
    cwd: project,
    encoding: 'utf8',
    env: cleanEnv(env),
    timeout: 120_000,
  });
  return { status: r.status, stdout: r.stdout ?? '', stderr: r.stderr ?? '', results: rankResults<{ backend: string; strategy: string; distributedType: string; steps: number; lastLoss: number; a: number; b: number }>(r.stdout ?? '') };
}

describe('a third-party backend and strategy plugin, installed with npm install <folder>', () => {
  it('are installed as symlinked packages and carry no reference into core', () => {
    const lock = JSON.parse(readFileSync(join(project, 'package-lock.json'), 'utf8'));
    expect(lock.packages['node_modules/accelerate-backend-refjs'].link).toBe(true);
    expect(lock.packages['node_modules/accelerate-strategy-local-sgd'].link).toBe(true);
    const coreSrc = spawnSync('grep', ['-rlE', 'refjs|accelerate-strategy-local-sgd', join(ROOT, 'packages/core/src')], { encoding: 'utf8' });
    expect(coreSrc.stdout.trim(), 'core must not name the third-party packages').toBe('');
  });

  it('train on 2 processes through accelerate launch: discovered backend, plugin strategy, data-parallel SGD numbers', () => {
    const two = launch(2, { EVERY: '1', BATCH: '8' });
    expect(two.status, `2 processes:\n${two.stdout}\n${two.stderr}`).toBe(0);
    expect(two.results).toHaveLength(2);
    for (const r of two.results) {
      expect(r.backend).toBe('refjs');
      expect(r.strategy).toBe('local-sgd');
      expect(r.distributedType).toBe('MULTI_CPU');
      expect(r.steps).toBe(12); // 3 epochs × 64 samples / (2 ranks × 8)
    }
    // Averaged after every step: the ranks agree exactly.
    expect(two.results[1]!.a).toBe(two.results[0]!.a);
    expect(two.results[1]!.b).toBe(two.results[0]!.b);

    const one = launch(1, { EVERY: '1', BATCH: '16' });
    expect(one.status, `1 process:\n${one.stdout}\n${one.stderr}`).toBe(0);
    const ref = one.results[0]!;
    expect(ref.backend).toBe('refjs');
    expect(ref.steps).toBe(12);
    // Local SGD with k = 1 and SGD = one process on the union of the ranks' batches.
    expect(Math.abs(two.results[0]!.a - ref.a)).toBeLessThan(1e-5);
    expect(Math.abs(two.results[0]!.b - ref.b)).toBeLessThan(1e-5);
    // And it learned y = 2x + 3 part of the way.
    expect(ref.a).toBeGreaterThan(1);
    expect(ref.b).toBeGreaterThan(1.5);

    // k = 3: ranks step alone between averages (different result), and agree after the last average (step 12).
    const three = launch(2, { EVERY: '3', BATCH: '8' });
    expect(three.status, `2 processes, every 3:\n${three.stdout}\n${three.stderr}`).toBe(0);
    expect(three.results[1]!.a).toBe(three.results[0]!.a);
    expect(Math.abs(three.results[0]!.a - two.results[0]!.a)).toBeGreaterThan(1e-6);
  }, 360_000);
});
