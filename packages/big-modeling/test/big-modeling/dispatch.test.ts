import { describe, it, expect, afterAll, vi } from 'vitest';
import * as fs from 'node:fs';
import * as os from 'node:os';
import { join } from 'node:path';
import { saveModelFiles, type HostTensor } from '@accelerate/core';
import {
  addHookToModule,
  cpuOffload,
  cpuOffloadWithHook,
  diskOffload,
  dispatchModel,
  getDeviceMap,
  getModuleHook,
  inferAutoDeviceMap,
  initEmptyWeights,
  loadCheckpointAndDispatch,
  loadCheckpointInModel,
  removeHookFromModule,
  SequentialHook,
  type ModelHook,
} from '../../src/index.js';
import { ModelForTest, TinyLM, nn, torch, withGpus } from './models.js';

const backend = new torch.LibtorchBackend();
const tmp = fs.mkdtempSync(join(os.tmpdir(), 'bigmodel-'));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));
let n = 0;
const dir = (name: string) => join(tmp, `${name}-${n++}`);

function mlp(widths: number[]): torch.nn.Sequential {
  const layers: torch.nn.Module[] = [];
  for (let i = 0; i + 1 < widths.length; i++) {
    layers.push(new nn.Linear(widths[i], widths[i + 1]));
    if (i + 2 < widths.length) layers.push(new nn.ReLU());
  }
  return new nn.Sequential(...layers);
}

function hostState(m: torch.nn.Module): Record<string, HostTensor> {
  return Object.fromEntries(Object.entries(m.stateDict()).map(([k, v]) => [k, backend.toHost(v)]));
}

const devices = (m: torch.nn.Module) => Object.fromEntries(m.namedParameters().map(([k, p]) => [k, p.device]));
const run = (m: torch.nn.Module, x: torch.Tensor) => torch.noGrad(() => m.forward(x) as torch.Tensor);

describe('hooks', () => {
  const plusOne: ModelHook = { preForward: (_m, args) => [(args[0] as torch.Tensor).add(1)] };

  it('[B53] a pre-forward hook changes the input; a second replaces it unless appended; SequentialHook chains; removal restores', () => {
    torch.manualSeed(0);
    const m = new ModelForTest().eval();
    // Exactly representable inputs: (x + 1) + 1 must equal x + 2 bit for bit for the comparisons below.
    const x = torch.tensor([
      [0.5, -1.25, 2],
      [3, -0.75, 1.5],
    ]);
    const expected1 = run(m, x.add(1));
    const expected2 = run(m, x.add(2));
    const expected3 = run(m, x.add(3));
    const plain = run(m, x);
    addHookToModule(backend, m, plusOne);
    expect(run(m, x).equal(expected1)).toBe(true);
    addHookToModule(backend, m, plusOne);
    expect(run(m, x).equal(expected1)).toBe(true);
    addHookToModule(backend, m, new SequentialHook(plusOne, plusOne));
    expect(run(m, x).equal(expected2)).toBe(true);
    addHookToModule(backend, m, plusOne, true);
    expect(getModuleHook(m)).toBeInstanceOf(SequentialHook);
    expect(run(m, x).equal(expected3)).toBe(true);
    removeHookFromModule(backend, m);
    expect(getModuleHook(m)).toBeUndefined();
    expect(run(m, x).equal(plain)).toBe(true);
  });

  it('a post-forward hook replaces the output; detachHook runs on removal', () => {
    const m = new nn.Linear(3, 2);
    let detached = 0;
    addHookToModule(backend, m, { postForward: (_m, out) => (out as torch.Tensor).mul(0), detachHook: () => void detached++ });
    expect(run(m, torch.ones([1, 3])).abs().sum().item()).toBe(0);
    removeHookFromModule(backend, m);
    expect(detached).toBe(1);
    expect(run(m, torch.ones([1, 3])).abs().sum().item()).toBeGreaterThan(0);
  });
});

describe('dispatchModel with cpu and disk', () => {
  it('a Sequential of Linear layers split between cpu and disk gives exactly the fully loaded outputs; disk weights are meta between forwards', () => {
    torch.manualSeed(1);
    const model = mlp([16, 32, 32, 32, 8]).eval();
    const x = torch.randn([5, 16]);
    const expected = run(model, x);
    const folder = dir('offload');
    const map = { '0': 'cpu', '2': 'disk', '4': 'cpu', '6': 'disk', '1': 'cpu', '3': 'cpu', '5': 'cpu' };
    dispatchModel(backend, model, map, { offloadFolder: folder });
    expect(getDeviceMap(model)).toEqual(map);
    const index = JSON.parse(fs.readFileSync(join(folder, 'index.json'), 'utf8'));
    expect(index).toEqual({
      '2.weight': { dtype: 'float32', shape: [32, 32] },
      '2.bias': { dtype: 'float32', shape: [32] },
      '6.weight': { dtype: 'float32', shape: [8, 32] },
      '6.bias': { dtype: 'float32', shape: [8] },
    });
    expect(fs.statSync(join(folder, '2.weight.dat')).size).toBe(32 * 32 * 4);
    expect(devices(model)).toEqual({
      '0.weight': 'cpu', '0.bias': 'cpu', '2.weight': 'meta', '2.bias': 'meta', '4.weight': 'cpu', '4.bias': 'cpu', '6.weight': 'meta', '6.bias': 'meta',
    });
    for (let i = 0; i < 3; i++) expect(run(model, x).equal(expected)).toBe(true);
    expect(devices(model)['6.weight']).toBe('meta');
    expect(() => dispatchModel(backend, mlp([2, 2]), { '': 'disk' })).toThrow(/pass offloadFolder/);
  });

  it('inferAutoDeviceMap with a small cpu budget forces disk offload; dispatched outputs equal the loaded model', () => {
    torch.manualSeed(2);
    const model = mlp([64, 128, 128, 128, 128, 10]).eval();
    const x = torch.randn([4, 64]);
    const expected = run(model, x);
    const map = inferAutoDeviceMap(backend, model, { maxMemory: { cpu: 100_000 } });
    expect(new Set(Object.values(map))).toEqual(new Set(['cpu', 'disk']));
    dispatchModel(backend, model, map, { offloadFolder: dir('auto') });
    expect(run(model, x).equal(expected)).toBe(true);
  });

  it('a transformer-like stack with a tied head, blocks split over cpu and disk, matches exactly', () => {
    torch.manualSeed(3);
    const model = new TinyLM(50, 16, 4).eval();
    const ids = torch.tensor([[1, 5, 7, 9, 2, 3]], { dtype: 'int64' });
    const expected = run(model, ids);
    const map = inferAutoDeviceMap(backend, model, { maxMemory: { cpu: 20_000 }, noSplitModuleClasses: ['Block'] });
    expect(Object.values(map)).toContain('disk');
    expect(map['embed'] ?? map['']).toBe(map['head'] ?? map['']);
    dispatchModel(backend, model, map, { offloadFolder: dir('lm') });
    expect(run(model, ids).equal(expected)).toBe(true);
    expect(run(model, ids).equal(expected)).toBe(true);
  });

  it('one device and no disk: the model is just moved, no hooks', () => {
    const model = mlp([4, 4]);
    dispatchModel(backend, model, { '': 'cpu' });
    expect(getModuleHook(model)).toBeUndefined();
    expect(getDeviceMap(model)).toEqual({ '': 'cpu' });
  });
});

describe('cpuOffload / diskOffload / cpuOffloadWithHook', () => {
  it('cpuOffload keeps weights in memory and puts them in the modules only during forward', () => {
    torch.manualSeed(4);
    const model = mlp([8, 16, 4]).eval();
    const x = torch.randn([3, 8]);
    const expected = run(model, x);
    cpuOffload(backend, model, { executionDevice: 'cpu' });
    expect(new Set(Object.values(devices(model)))).toEqual(new Set(['meta']));
    expect(run(model, x).equal(expected)).toBe(true);
    expect(new Set(Object.values(devices(model)))).toEqual(new Set(['meta']));
  });

  it('diskOffload writes the folder once and reads weights per forward; ModelForTest buffers stay on the execution device', () => {
    torch.manualSeed(5);
    const model = new ModelForTest().eval();
    const x = torch.randn([6, 3]);
    const expected = run(model, x);
    const folder = dir('disk');
    diskOffload(backend, model, folder, { executionDevice: 'cpu' });
    const index = JSON.parse(fs.readFileSync(join(folder, 'index.json'), 'utf8'));
    expect(index['batchnorm.num_batches_tracked']).toEqual({ dtype: 'int64', shape: [] });
    expect(fs.statSync(join(folder, 'batchnorm.num_batches_tracked.dat')).size).toBe(8);
    expect(model.batchnorm.runningMean.device).toBe('cpu');
    expect(model.linear1.weight.device).toBe('meta');
    expect(run(model, x).equal(expected)).toBe(true);
  });

  it('offloadBuffers: buffers are offloaded too, and forwards inside tidy scopes keep working', () => {
    torch.manualSeed(9);
    const model = new ModelForTest().eval();
    const x = torch.randn([6, 3]);
    const expected = run(model, x);
    diskOffload(backend, model, dir('disk-buffers'), { executionDevice: 'cpu', offloadBuffers: true });
    expect(model.batchnorm.runningMean.device).toBe('meta');
    for (let i = 0; i < 3; i++) {
      const same = torch.tidy(() => run(model, x).equal(expected));
      expect(same).toBe(true);
    }
    expect(model.batchnorm.runningVar.device).toBe('meta');
  });

  it('cpuOffloadWithHook returns a hook whose offload() and remove() work', () => {
    const a = mlp([4, 4]);
    const b = mlp([4, 4]);
    const { hook: ha } = cpuOffloadWithHook(backend, a, { executionDevice: 'cpu' });
    const { hook: hb } = cpuOffloadWithHook(backend, b, { executionDevice: 'cpu', prevModuleHook: ha });
    const x = torch.ones([1, 4]);
    const y = run(b, run(a, x));
    expect(y.shape).toEqual([1, 4]);
    hb.offload();
    ha.remove();
    expect(getModuleHook(a)).toBeUndefined();
  });
});

describe('initEmptyWeights and checkpoints', () => {
  it('initEmptyWeights puts parameters on meta (buffers stay real unless includeBuffers)', () => {
    const m = initEmptyWeights(backend, () => new ModelForTest());
    expect(new Set(Object.values(devices(m)))).toEqual(new Set(['meta']));
    expect(m.batchnorm.runningMean.device).toBe('cpu');
    const withBuffers = initEmptyWeights(backend, () => new ModelForTest(), { includeBuffers: true });
    expect(withBuffers.batchnorm.runningMean.device).toBe('meta');
    // Outside the callback, creation is normal again.
    expect(new nn.Linear(2, 2).weight.device).toBe('cpu');
  });

  it('a model of 1 GiB built under initEmptyWeights does not raise RSS', () => {
    const before = process.memoryUsage().rss;
    const layers = initEmptyWeights(backend, () => Array.from({ length: 16 }, () => new nn.Linear(4096, 4096)));
    const grown = process.memoryUsage().rss - before;
    expect(layers.length * 4096 * 4096 * 4).toBe(2 ** 30);
    expect(layers.every((l) => l.weight.device === 'meta')).toBe(true);
    expect(grown).toBeLessThan(64 * 2 ** 20);
  });

  it('[B45] loadCheckpointInModel: single file and sharded index into an empty model reproduce the outputs', async () => {
    torch.manualSeed(6);
    const src = new ModelForTest().eval();
    const x = torch.randn([4, 3]);
    const expected = run(src, x);
    const single = dir('ckpt');
    await saveModelFiles(hostState(src), single);
    const sharded = dir('ckpt-sharded');
    const saved = await saveModelFiles(hostState(src), sharded, { maxShardSize: 100 });
    expect(saved.files.length).toBe(3);
    for (const where of [single, join(single, 'model.safetensors'), sharded, join(sharded, 'model.safetensors.index.json')]) {
      const m = initEmptyWeights(backend, () => new ModelForTest(), { includeBuffers: true }).eval();
      const r = await loadCheckpointInModel(backend, m, where, { strict: true });
      expect(r.missingKeys).toEqual([]);
      expect(run(m, x).equal(expected)).toBe(true);
    }
  });

  it('loadCheckpointInModel into a real (initialised) model, mapped and copied, gives the same outputs; the copy owns its memory', async () => {
    torch.manualSeed(8);
    const src = new ModelForTest().eval();
    const x = torch.randn([4, 3]);
    const expected = run(src, x);
    const d = dir('ckpt-real');
    await saveModelFiles(hostState(src), d, { maxShardSize: 100 });
    for (const mmap of [true, false]) {
      const m = new ModelForTest().eval();
      const weight = m.linear1.weight;
      await loadCheckpointInModel(backend, m, d, { mmap });
      // Same device kind: the storage is swapped in place, the Parameter object is kept.
      expect(m.linear1.weight).toBe(weight);
      expect(run(m, x).equal(expected)).toBe(true);
    }
  });

  it('loadCheckpointInModel with a disk device map writes .dat files (cast to dtype when asked) and leaves those tensors on meta', async () => {
    const src = new ModelForTest();
    const d = dir('ckpt-disk');
    await saveModelFiles(hostState(src), d);
    await expect(loadCheckpointInModel(backend, new ModelForTest(), d, { deviceMap: { '': 'disk' } })).rejects.toThrow(/pass offloadFolder/);
    const folder = dir('ckpt-disk-off');
    const m = initEmptyWeights(backend, () => new ModelForTest());
    const r = await loadCheckpointInModel(backend, m, d, { deviceMap: { linear1: 'cpu', batchnorm: 'disk', linear2: 'disk' }, offloadFolder: folder, dtype: 'float16' });
    expect(r.offloaded.sort()).toEqual(['batchnorm.bias', 'batchnorm.weight', 'linear2.bias', 'linear2.weight']);
    const index = JSON.parse(fs.readFileSync(join(folder, 'index.json'), 'utf8'));
    expect(index['linear2.weight']).toEqual({ dtype: 'float16', shape: [5, 4] });
    expect(fs.statSync(join(folder, 'linear2.weight.dat')).size).toBe(5 * 4 * 2);
    expect(m.linear2.weight.device).toBe('meta');
    expect(m.linear1.weight.dtype).toBe('float16');
    // Buffers mapped to disk are loaded on the cpu unless offloadBuffers.
    expect(m.batchnorm.runningMean.device).toBe('cpu');
    const ref = backend.toHost(src.linear2.weight.half());
    const dat = new Uint16Array(Uint8Array.from(fs.readFileSync(join(folder, 'linear2.weight.dat'))).buffer);
    expect([...dat]).toEqual([...(ref.data as Uint16Array)]);
  });

  it('loadCheckpointInModel: dtype casts floats only; shape mismatch and strict errors name the tensor', async () => {
    const src = new ModelForTest();
    const d = dir('ckpt-dtype');
    await saveModelFiles(hostState(src), d);
    const m = initEmptyWeights(backend, () => new ModelForTest());
    await loadCheckpointInModel(backend, m, d, { dtype: 'float16' });
    expect(m.linear1.weight.dtype).toBe('float16');
    expect(m.batchnorm.numBatchesTracked.dtype).toBe('int64');
    const wrong = new nn.Linear(3, 4);
    await expect(loadCheckpointInModel(backend, wrong, d, { strict: true })).rejects.toThrow(/missing keys \[weight, bias\]; unexpected keys \[.*linear1\.weight/);
    const bad = new (class extends nn.Module {
      linear1 = new nn.Linear(2, 4);
      forward() {}
    })();
    await expect(loadCheckpointInModel(backend, bad, d)).rejects.toThrow(/size mismatch for linear1\.weight: the checkpoint has shape \[4, 3\], the model \[4, 2\]/);
  });

  it('loadCheckpointAndDispatch with a cpu budget: disk tensors go straight to the offload folder; outputs match', async () => {
    torch.manualSeed(7);
    const src = new TinyLM(40, 16, 3).eval();
    const ids = torch.tensor([[3, 1, 4, 1, 5]], { dtype: 'int64' });
    const expected = run(src, ids);
    const ck = dir('lm-ckpt');
    await saveModelFiles(hostState(src), ck, { maxShardSize: 4000 });
    const model = initEmptyWeights(backend, () => new TinyLM(40, 16, 3)).eval();
    const folder = dir('lm-offload');
    await loadCheckpointAndDispatch(backend, model, ck, { deviceMap: 'auto', maxMemory: { cpu: 20_000 }, noSplitModuleClasses: ['Block'], offloadFolder: folder });
    const map = getDeviceMap(model)!;
    expect(Object.values(map)).toContain('disk');
    expect(fs.existsSync(join(folder, 'index.json'))).toBe(true);
    expect(run(model, ids).equal(expected)).toBe(true);
    await expect(loadCheckpointAndDispatch(backend, model, ck, { deviceMap: 'fast' as never })).rejects.toThrow(/choose 'auto', 'balanced', 'balanced_low_0' or 'sequential'/);
  });
});

describe('devices the backend does not have', () => {
  const cpuOnly = withGpus(backend, 0);
  const fix = 'Map that module to a device it has (e.g. "cpu"), or let inferAutoDeviceMap / deviceMap: "auto" plan with the devices that are there.';

  it('dispatchModel fails before moving anything, naming the module, the device and the fix', () => {
    const model = mlp([4, 4, 2]);
    expect(() => dispatchModel(cpuOnly, model, { '': 0 })).toThrow(
      `dispatchModel: the device map puts "" (the whole model) on GPU 0 (cuda:0), which the libtorch backend does not have (its devices: cpu). ${fix}`,
    );
    expect(() => dispatchModel(cpuOnly, model, { '0': 'cpu', '1': 'disk', '2': 'disk' }, { mainDevice: 1, offloadFolder: dir('unused') })).toThrow(
      'dispatchModel: mainDevice is GPU 1 (cuda:1), which the libtorch backend does not have (its devices: cpu). Pass a mainDevice it has (e.g. "cpu").',
    );
    expect(new Set(Object.values(devices(model)))).toEqual(new Set(['cpu']));
    expect(getDeviceMap(model)).toBeUndefined();
  });

  it('loadCheckpointAndDispatch / loadCheckpointInModel fail before reading a shard (the checkpoint path is not even opened)', async () => {
    const model = initEmptyWeights(backend, () => mlp([4, 4, 4, 4, 2]));
    const map = { '0': 0, '1': 0, '2': 'cpu', '3': 1, '4': 1, '5': 'mps', '6': 'cpu' };
    await expect(loadCheckpointAndDispatch(cpuOnly, model, join(tmp, 'no-such-checkpoint'), { deviceMap: map })).rejects.toThrow(
      'loadCheckpointAndDispatch: the device map puts "0" on GPU 0 (cuda:0), "1" on GPU 0 (cuda:0), "3" on GPU 1 (cuda:1) and 2 more module(s) on such devices, ' +
        'which the libtorch backend does not have (its devices: cpu). Map those modules to a device it has (e.g. "cpu"), or let inferAutoDeviceMap / deviceMap: "auto" plan with the devices that are there.',
    );
    await expect(loadCheckpointInModel(cpuOnly, model, join(tmp, 'no-such-checkpoint'), { deviceMap: { '': 'mps' } })).rejects.toThrow(
      `loadCheckpointInModel: the device map puts "" (the whole model) on "mps", which the libtorch backend does not have (its devices: cpu). ${fix}`,
    );
    expect(new Set(Object.values(devices(model)))).toEqual(new Set(['meta']));
  });

  it('deviceMap "auto" with a GPU budget on a cpu-only backend loads on the cpu and computes the same outputs', async () => {
    const warn = vi.spyOn(process, 'emitWarning').mockImplementation(() => undefined);
    try {
      torch.manualSeed(3);
      const src = mlp([8, 16, 16, 4]).eval();
      const x = torch.randn([3, 8]);
      const expected = run(src, x);
      const ck = dir('gpu-budget-ckpt');
      await saveModelFiles(hostState(src), ck);
      const model = initEmptyWeights(backend, () => mlp([8, 16, 16, 4])).eval();
      await loadCheckpointAndDispatch(cpuOnly, model, ck, { deviceMap: 'auto', maxMemory: { 0: '1GB', cpu: '1GB' } });
      expect(getDeviceMap(model)).toEqual({ '': 'cpu' });
      expect(run(model, x).equal(expected)).toBe(true);
      expect(warn.mock.calls.map((c) => c[0])).toEqual([
        'maxMemory: GPU 0 is not available; the libtorch backend has cpu. It is left out of the budgets, so nothing is placed there (remove it from maxMemory to silence this warning).',
      ]);
    } finally {
      warn.mockRestore();
    }
  });
});

describe('GPU placement', () => {
  const hasGpu = backend.devices().some((d) => d.kind === 'cuda');
  it.skipIf(!hasGpu)('dispatch over cuda:0 and cpu returns outputs on the input device', () => {
    const model = mlp([8, 8, 8]).eval();
    const x = torch.randn([2, 8]);
    const expected = run(model, x);
    dispatchModel(backend, model, { '0': 0, '1': 0, '2': 'cpu' });
    const y = run(model, x);
    expect(y.device).toBe('cpu');
    expect(y.allclose(expected, 1e-4, 1e-5)).toBe(true);
  });
  if (!hasGpu) console.log('[big-modeling] GPU placement test skipped: the libtorch backend reports no CUDA device on this machine.');
});
