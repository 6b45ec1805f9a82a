/**
 * The packages as users install them: `npm pack` each workspace, lint the tarballs
 * (publint, are-the-types-wrong), then in an empty folder outside the repository
 * install only what a user picks (core + backend-libtorch + cli; core + backend-tfjs)
 * from the tarballs and train there, with `node` and with `npx accelerate launch`, and
 * type-check a TypeScript consumer against the packed types. Catches what the
 * workspace hides: files missing from `files`, dev-only dependencies, paths into the
 * monorepo, a bin that only exists after a build.
 */
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { spawnSync, type SpawnSyncOptions } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, realpathSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { ROOT, cleanEnv } from './helpers.js';

const PACKAGES = ['core', 'backend-libtorch', 'backend-tfjs', 'big-modeling', 'trackers', 'plugin-fsdp', 'plugin-deepspeed', 'cli'];
const NPM_QUIET = ['--no-audit', '--no-fund', '--prefer-offline', '--loglevel=error'];

function run(cmd: string, args: readonly string[], options: SpawnSyncOptions = {}) {
  const r = spawnSync(cmd, args, { encoding: 'utf8', timeout: 600_000, env: cleanEnv(), ...options });
  const out = `${r.stdout ?? ''}${r.stderr ?? ''}`;
  return { status: r.status, out };
}

let packs: string;
const tarball = (name: string) => join(packs, readdirSync(packs).find((f) => f.startsWith(`accelerate-${name}-`) && f.endsWith('.tgz'))!);

beforeAll(() => {
  packs = mkdtempSync(join(tmpdir(), 'accelerate-packs-'));
  for (const name of PACKAGES) {
    const r = run('npm', ['pack', '--silent', '--pack-destination', packs], { cwd: join(ROOT, 'packages', name) });
    expect(r.status, `npm pack ${name}:\n${r.out}`).toBe(0);
  }
});
afterAll(() => rmSync(packs, { recursive: true, force: true }));

describe('the accelerate bin on a fresh clone', () => {
  it('links to a file committed in git, not to build output that npm ci has not made yet', () => {
    const link = join(ROOT, 'node_modules/.bin/accelerate');
    expect(existsSync(link), 'node_modules/.bin/accelerate is missing').toBe(true);
    const target = relative(ROOT, realpathSync(link));
    const tracked = run('git', ['ls-files', '--error-unmatch', target], { cwd: ROOT });
    expect(tracked.status, `${target} is not in git: a fresh npm ci cannot link it`).toBe(0);
    const lock = JSON.parse(readFileSync(join(ROOT, 'package-lock.json'), 'utf8'));
    expect(lock.packages['packages/cli'].bin.accelerate).toBe(relative(join(ROOT, 'packages/cli'), realpathSync(link)));
  });

  it('`npx --no-install accelerate --help` works in the repository', () => {
    const r = run('npx', ['--no-install', 'accelerate', '--help'], { cwd: ROOT });
    expect(r.status, r.out).toBe(0);
    expect(r.out).toMatch(/launch/);
  });
});

describe('packed tarballs', () => {
  it.each(PACKAGES)('%s passes publint --strict', (name) => {
    const r = run('npx', ['--no-install', 'publint', 'run', '--strict', tarball(name)], { cwd: ROOT });
    expect(r.status, r.out).toBe(0);
  });

  // ESM-only on purpose (top-level await, async prepare): the esm-only profile leaves out
  // node10 and require() resolution, and checks everything else.
  it.each(PACKAGES)('%s passes are-the-types-wrong (esm-only)', (name) => {
    const r = run('npx', ['--no-install', 'attw', '--profile', 'esm-only', '--format', 'ascii', tarball(name)], { cwd: ROOT });
    expect(r.status, r.out).toBe(0);
  });
});

/** A user's training script, written from the README (an MLP regression on made-up data). */
const TRAIN = (_backend: 'libtorch') => `
import { Accelerator, DataLoader, HostTensor, setSeed } from '@accelerate/core';
import * as torch from '@accelerate/backend-libtorch';
const { nn, optim } = torch;

setSeed(0);
const accelerator = new Accelerator();
const dataset = Array.from({ length: 256 }, (_, i) => {
  const x = [Math.sin(i), Math.cos(i), (i % 7) / 7, (i % 3) / 3];
  return { input: new HostTensor(Float32Array.from(x), [4], 'float32'), target: new HostTensor(Float32Array.of(2 * x[0] - x[1] + 0.5 * x[2]), [1], 'float32') };
});
const model = new nn.Sequential(new nn.Linear(4, 16), new nn.ReLU(), new nn.Linear(16, 1));
const optimizer = new optim.SGD(model.parameters(), { lr: 0.05 });
const loader = new DataLoader(dataset, { batchSize: 16, shuffle: true });
const [m, opt, data] = await accelerator.prepare(model, optimizer, loader);
const losses = [];
for (let epoch = 0; epoch < 6; epoch++) {
  let sum = 0, n = 0;
  // No casts: a prepared loader's batches are typed as libtorch tensors.
  for await (const { input, target } of data) {
    const loss = nn.functional.mseLoss(m.forward(input), target);
    accelerator.backward(loss);
    opt.step();
    opt.zeroGrad();
    sum += loss.item(); n++;
  }
  losses.push(sum / n);
}
console.log('RESULT ' + JSON.stringify({ rank: accelerator.processIndex, world: accelerator.numProcesses, strategy: accelerator.strategy.name, losses }));
`;

/** The same regression with the tfjs backend, as its README writes a loop. */
const TRAIN_TFJS = `
import { Accelerator, DataLoader, HostTensor, setSeed } from '@accelerate/core';
import { tf, tfjs, TfjsModule, Linear, sgd } from '@accelerate/backend-tfjs';

class MLP extends TfjsModule {
  fc1 = this.module('fc1', new Linear(4, 16));
  fc2 = this.module('fc2', new Linear(16, 1));
  forward(x) { return tf.tidy(() => this.fc2.forward(tf.relu(this.fc1.forward(x)))); }
}
setSeed(0);
const accelerator = await Accelerator.create({ backend: tfjs() });
const dataset = Array.from({ length: 256 }, (_, i) => {
  const x = [Math.sin(i), Math.cos(i), (i % 7) / 7, (i % 3) / 3];
  return { input: new HostTensor(Float32Array.from(x), [4], 'float32'), target: new HostTensor(Float32Array.of(2 * x[0] - x[1] + 0.5 * x[2]), [1], 'float32') };
});
const net = new MLP();
const [model, optimizer, data] = await accelerator.prepare(net, sgd(net, 0.05), new DataLoader(dataset, { batchSize: 16, shuffle: true }));
const losses = [];
for (let epoch = 0; epoch < 6; epoch++) {
  let sum = 0, n = 0;
  for await (const batch of data) {
    accelerator.backward(() => tf.losses.meanSquaredError(batch.target, model.forward(batch.input)));
    optimizer.step();
    optimizer.zeroGrad();
    sum += accelerator.backend.lastLoss.dataSync()[0]; n++;
    tf.dispose([batch.input, batch.target]);
  }
  losses.push(sum / n);
}
console.log('RESULT ' + JSON.stringify({ rank: accelerator.processIndex, world: accelerator.numProcesses, losses }));
`;

function results(out: string): Array<{ rank: number; world: number; strategy?: string; losses: number[] }> {
  return [...out.matchAll(/RESULT (\{.*\})/g)].map((m) => JSON.parse(m[1]!));
}

function expectLearned(r: { rank: number; world: number; losses: number[] }) {
  expect(r.losses.every(Number.isFinite)).toBe(true);
  expect(r.losses.at(-1)!).toBeLessThan(r.losses[0]! * 0.5);
}

/** An empty project outside the repository with only `names` installed from the tarballs. */
function userProject(names: readonly string[], extraDev: readonly string[] = []) {
  const dir = mkdtempSync(join(tmpdir(), 'accelerate-user-'));
  writeFileSync(join(dir, 'package.json'), JSON.stringify({ name: 'user-project', private: true, type: 'module' }, null, 2));
  const r = run('npm', ['install', ...NPM_QUIET, ...names.map(tarball)], { cwd: dir });
  expect(r.status, `npm install ${names.join(' ')}:\n${r.out}`).toBe(0);
  if (extraDev.length) {
    const d = run('npm', ['install', '-D', ...NPM_QUIET, ...extraDev], { cwd: dir });
    expect(d.status, d.out).toBe(0);
  }
  return dir;
}

describe('à la carte install in an empty folder', () => {
  let dir: string;
  afterAll(() => dir && rmSync(dir, { recursive: true, force: true }));

  it('core + backend-libtorch + cli: install (builds the addon), train with node and with `npx accelerate launch --num_processes 2`, type-check a TS consumer', { timeout: 900_000 }, () => {
    dir = userProject(['core', 'backend-libtorch', 'cli'], ['typescript@~5.9.3', '@types/node@^20', 'tsx@^4.20.0']);
    expect(readdirSync(join(dir, 'node_modules/@accelerate')).sort()).toEqual(['backend-libtorch', 'cli', 'core']);

    writeFileSync(join(dir, 'train.ts'), TRAIN('libtorch'));
    writeFileSync(
      join(dir, 'tsconfig.json'),
      JSON.stringify({ compilerOptions: { target: 'ES2022', module: 'NodeNext', moduleResolution: 'NodeNext', strict: true, noEmit: true, types: ['node'] }, files: ['train.ts'] }),
    );
    const tsc = run('npx', ['--no-install', 'tsc', '-p', '.'], { cwd: dir });
    expect(tsc.status, `the consumer does not type-check against the packed types:\n${tsc.out}`).toBe(0);

    const one = run('npx', ['--no-install', 'tsx', 'train.ts'], { cwd: dir });
    expect(one.status, one.out).toBe(0);
    const [single] = results(one.out);
    expect(single).toMatchObject({ rank: 0, world: 1 });
    expectLearned(single!);

    const launched = run('npx', ['--no-install', 'accelerate', 'launch', '--num_processes', '2', 'train.ts'], { cwd: dir });
    expect(launched.status, launched.out).toBe(0);
    const ranks = results(launched.out).filter((r) => r.world === 2);
    expect(ranks.map((r) => r.rank).sort()).toEqual([0, 1]);
    for (const r of ranks) expectLearned(r);
    // DDP: the ranks train one model, so their losses agree in the first step's scale.
    expect(ranks[0]!.losses.length).toBe(ranks[1]!.losses.length);
    expect(ranks[0]!.strategy).toBe('DDP');

    // FSDP asked for at launch: refused until the plugin is installed, then the same script trains sharded.
    const refused = run('npx', ['--no-install', 'accelerate', 'launch', '--num_processes', '2', '--use_fsdp', 'train.ts'], { cwd: dir });
    expect(refused.status).not.toBe(0);
    expect(refused.out).toContain('npm install @accelerate/plugin-fsdp');
    const add = run('npm', ['install', ...NPM_QUIET, tarball('plugin-fsdp')], { cwd: dir });
    expect(add.status, add.out).toBe(0);
    const sharded = run('npx', ['--no-install', 'accelerate', 'launch', '--num_processes', '2', '--use_fsdp', '--fsdp_sharding_strategy', 'FULL_SHARD', 'train.ts'], { cwd: dir });
    expect(sharded.status, sharded.out).toBe(0);
    const fsdpRanks = results(sharded.out).filter((r) => r.world === 2);
    expect(fsdpRanks.map((r) => r.strategy)).toEqual(['FSDP', 'FSDP']);
    for (const r of fsdpRanks) expectLearned(r);
  });

  it('core + backend-tfjs (no native code): install and train in one process', { timeout: 600_000 }, () => {
    const tf = userProject(['core', 'backend-tfjs']);
    try {
      writeFileSync(join(tf, 'train.mjs'), TRAIN_TFJS);
      const r = run(process.execPath, ['train.mjs'], { cwd: tf });
      expect(r.status, r.out).toBe(0);
      const [res] = results(r.out);
      expect(res).toMatchObject({ rank: 0, world: 1 });
      expectLearned(res!);
    } finally {
      rmSync(tf, { recursive: true, force: true });
    }
  });
});
