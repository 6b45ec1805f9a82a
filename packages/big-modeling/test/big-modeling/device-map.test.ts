import { afterEach, describe, it, expect, vi } from 'vitest';
import {
  calculateMaximumSizes,
  checkDeviceMap,
  cleanDeviceMap,
  computeModuleSizes,
  computeModuleTotalBufferSize,
  explainDeviceMap,
  findTiedParameters,
  getBalancedMemory,
  getMaxMemory,
  inferAutoDeviceMap,
  inferAutoDeviceMapDetailed,
} from '../../src/index.js';
import { FourLinears, ModelForTest, ThreeLayers, TinyLM, nn, torch, withGpus } from './models.js';

const backend = new torch.LibtorchBackend();
/** Plans for GPUs 0-2, as on a 3-GPU machine (this one may have none). */
const gpus = withGpus(backend, 3);

class SeqOfThree extends nn.Module {
  constructor() {
    super();
    for (let i = 0; i < 3; i++) this.registerModule(String(i), new ModelForTest());
  }
  forward(x: torch.Tensor) {
    return x;
  }
}

describe('module sizes', () => {
  it('[B46] computeModuleSizes of ModelForTest in fp32, then half', () => {
    const m = new ModelForTest();
    const s = computeModuleSizes(backend, m);
    expect(s['']).toBe(236);
    expect([s.linear1, s['linear1.weight'], s['linear1.bias']]).toEqual([64, 48, 16]);
    expect(s.batchnorm).toBe(72);
    expect([s['batchnorm.weight'], s['batchnorm.bias'], s['batchnorm.running_mean'], s['batchnorm.running_var'], s['batchnorm.num_batches_tracked']]).toEqual([
      16, 16, 16, 16, 8,
    ]);
    expect([s.linear2, s['linear2.weight'], s['linear2.bias']]).toEqual([100, 80, 20]);
    m.to({ dtype: 'float16' });
    const h = computeModuleSizes(backend, m);
    expect(h.batchnorm).toBe(40);
    expect(h['']).toBe(122);
    expect(h['batchnorm.num_batches_tracked']).toBe(8);
    // A target dtype counts floats at min(target, own) and keeps integers.
    const asHalf = computeModuleSizes(backend, new ModelForTest(), { dtype: 'float16' });
    expect(asHalf['']).toBe(122);
  });

  it('[B46] buffer sizes: 10x10 buffer on linear1 + 20x10 on root -> 1240 (624 in half)', () => {
    const m = new ModelForTest();
    m.linear1.registerBuffer('test_buffer', torch.zeros([10, 10]));
    m.registerBuffer('test_buffer2', torch.zeros([20, 10]));
    expect(computeModuleTotalBufferSize(backend, m)).toBe(1240);
    m.to({ dtype: 'float16' });
    expect(computeModuleTotalBufferSize(backend, m)).toBe(624);
  });

  it('calculateMaximumSizes: total and largest layer', () => {
    const r = calculateMaximumSizes(backend, new ThreeLayers());
    expect(r.totalSize).toBe(708);
    expect(r.largestLayer).toEqual({ size: 100, names: ['layer1.linear2', 'layer2.linear2', 'layer3.linear2'] });
    expect(calculateMaximumSizes(backend, new ThreeLayers(), ['ModelForTest']).largestLayer.size).toBe(236);
  });
});

describe('getMaxMemory / getBalancedMemory', () => {
  it('parses size strings and orders GPUs, mps, cpu, disk; rejects unknown devices', () => {
    const mm = getMaxMemory({ cpu: '1GiB', disk: 5, 1: '1KB', 0: 200 });
    expect(Object.entries(mm)).toEqual([
      ['0', 200],
      ['1', 1000],
      ['cpu', 2 ** 30],
      ['disk', 5],
    ]);
    expect(() => getMaxMemory({ tpu: 1 })).toThrow(/"tpu" is not recognized/);
    expect(() => getMaxMemory({ cpu: '5MBB' })).toThrow(/not a size/);
    const auto = getMaxMemory(undefined, backend);
    expect(auto.cpu).toBeGreaterThan(0);
  });

  afterEach(() => vi.restoreAllMocks());

  it('GPUs the backend does not have are left out of the budgets, with one warning naming them and the devices it has', () => {
    const warn = vi.spyOn(process, 'emitWarning').mockImplementation(() => undefined);
    const oneGpu = withGpus(backend, 1);
    expect(Object.entries(getMaxMemory({ 2: 300, 0: 200, 1: '1KB', mps: 50, cpu: 1000 }, oneGpu))).toEqual([
      ['0', 200],
      ['cpu', 1000],
    ]);
    expect(warn.mock.calls).toEqual([
      [
        'maxMemory: GPU 1, GPU 2, mps are not available; the libtorch backend has cuda:0, cpu. They are left out of the budgets, so nothing is placed there ' +
          '(remove them from maxMemory to silence this warning).',
        { code: 'ACCELERATE_DEVICE_NOT_AVAILABLE' },
      ],
    ]);
    // Without a backend nothing can be checked: the budgets are kept.
    expect(Object.keys(getMaxMemory({ 1: 5, cpu: 10 }))).toEqual(['1', 'cpu']);
    expect(warn).toHaveBeenCalledTimes(1);
  });

  it('on a cpu-only backend a GPU budget plans on the cpu instead of returning {"": 0}', () => {
    const warn = vi.spyOn(process, 'emitWarning').mockImplementation(() => undefined);
    const cpuOnly = withGpus(backend, 0);
    expect(inferAutoDeviceMap(cpuOnly, new ModelForTest(), { maxMemory: { 0: '1GB', cpu: '1GB' } })).toEqual({ '': 'cpu' });
    // 708 bytes, cpu 400 (100 kept for the largest layer): the GPU budget does not absorb the model.
    expect(inferAutoDeviceMap(cpuOnly, new SeqOfThree(), { maxMemory: { 0: 10_000, cpu: 400 } })).toEqual({
      '0': 'cpu',
      '1.linear1': 'cpu',
      '1.batchnorm': 'disk',
      '1.linear2': 'disk',
      '2': 'disk',
    });
    expect(inferAutoDeviceMap(cpuOnly, new SeqOfThree(), { maxMemory: { 0: 1000, 1: 1000, cpu: 400 }, strategy: 'balanced' })).toEqual(
      inferAutoDeviceMap(cpuOnly, new SeqOfThree(), { maxMemory: { cpu: 400 } }),
    );
    expect(warn.mock.calls.map((c) => c[0])).toEqual([
      'maxMemory: GPU 0 is not available; the libtorch backend has cpu. It is left out of the budgets, so nothing is placed there (remove it from maxMemory to silence this warning).',
      'maxMemory: GPU 0 is not available; the libtorch backend has cpu. It is left out of the budgets, so nothing is placed there (remove it from maxMemory to silence this warning).',
      'maxMemory: GPU 0, GPU 1 are not available; the libtorch backend has cpu. They are left out of the budgets, so nothing is placed there (remove them from maxMemory to silence this warning).',
    ]);
  });

  it('[B50] getBalancedMemory on ModelForTest', () => {
    const m = new ModelForTest();
    const b = (mm: Record<string, number>) => getBalancedMemory(gpus, m, mm);
    expect(b({ 0: 200, 1: 200 })).toEqual({ 0: 200, 1: 200 });
    expect(b({ 0: 300, 1: 300 })).toEqual({ 0: 215, 1: 300 });
    expect(b({ 0: 300, 1: 500 })).toEqual({ 0: 215, 1: 500 });
    expect(b({ 0: 300, cpu: 1000 })).toEqual({ 0: 300, cpu: 1000 });
    expect(b({ 0: 0, 1: 300, 2: 300 })).toEqual({ 0: 0, 1: 215, 2: 300 });
    expect(b({ 0: 0, cpu: 100 })).toEqual({ 0: 0, cpu: 100 });
  });
});

describe('inferAutoDeviceMap', () => {
  it('[B47] keeps room for the largest layer on device 0; ties force one device', () => {
    const m = new ModelForTest();
    expect(inferAutoDeviceMap(gpus, m, { maxMemory: { 0: 200, 1: 200 } })).toEqual({ linear1: 0, batchnorm: 1, linear2: 1 });
    expect(inferAutoDeviceMap(gpus, m, { maxMemory: { 0: 200, 1: 172, 2: 200 } })).toEqual({ linear1: 0, batchnorm: 1, linear2: 1 });
    // Tie linear1.weight to linear2.weight (as the Python test does, shapes aside).
    (m as unknown as { linear1: { weight: unknown } }).linear1.weight = m.linear2.weight;
    expect(findTiedParameters(backend, m)).toEqual([['linear1.weight', 'linear2.weight']]);
    expect(inferAutoDeviceMap(gpus, m, { maxMemory: { 0: 200, 1: 200 } })).toEqual({ '': 0 });
  });

  it('[B48] Sequential(M, M, M) split over two devices, and with noSplitModuleClasses', () => {
    const m = new SeqOfThree();
    expect(inferAutoDeviceMap(gpus, m, { maxMemory: { 0: 500, 1: 500 } })).toEqual({
      '0': 0,
      '1.linear1': 0,
      '1.batchnorm': 0,
      '1.linear2': 1,
      '2': 1,
    });
    expect(inferAutoDeviceMap(gpus, m, { maxMemory: { 0: 500, 1: 500 }, noSplitModuleClasses: ['ModelForTest'] })).toEqual({ '0': 0, '1': 1, '2': 1 });
  });

  it('[B49] tied weights across layers land together', () => {
    const m = new ThreeLayers();
    m.layer3.linear2.weight = m.layer1.linear2.weight;
    expect(inferAutoDeviceMap(gpus, m, { maxMemory: { 0: 400, 1: 500 } })).toEqual({
      layer1: 0,
      'layer3.linear2': 0,
      layer2: 1,
      'layer3.linear1': 1,
      'layer3.batchnorm': 1,
    });
    m.layer2.linear2.weight = m.layer1.linear2.weight;
    expect(inferAutoDeviceMap(gpus, m, { maxMemory: { 0: 400, 1: 500 } })).toEqual({
      layer1: 0,
      'layer2.linear2': 0,
      'layer3.linear2': 0,
      'layer2.linear1': 1,
      'layer2.batchnorm': 1,
      'layer3.linear1': 1,
      'layer3.batchnorm': 1,
    });
    const f = new FourLinears(4, 6);
    f.linear3.weight = f.linear1.weight;
    f.linear3.bias = f.linear1.bias;
    expect(inferAutoDeviceMap(gpus, f, { maxMemory: { 0: 250, 1: 400 } })).toEqual({ linear1: 0, linear2: 1, linear3: 0, linear4: 1 });
  });

  it('cpu then disk, with room on the cpu for the largest layer; headroom shrinks budgets', () => {
    const m = new SeqOfThree();
    // 708 bytes; cpu 400 - 100 (largest layer) = 300 -> "0" (236) fits, then split "1".
    expect(inferAutoDeviceMap(backend, m, { maxMemory: { cpu: 400 } })).toEqual({ '0': 'cpu', '1.linear1': 'cpu', '1.batchnorm': 'disk', '1.linear2': 'disk', '2': 'disk' });
    expect(inferAutoDeviceMap(backend, m, { maxMemory: { cpu: 500 }, headroom: 100 })).toEqual(
      inferAutoDeviceMap(backend, m, { maxMemory: { cpu: 400 } }),
    );
    expect(inferAutoDeviceMap(backend, m, { maxMemory: { cpu: 10_000 } })).toEqual({ '': 'cpu' });
  });

  it('balanced strategy spreads over GPUs (balanced_low_0 empties GPU 0)', () => {
    const m = new SeqOfThree();
    const seq = inferAutoDeviceMap(gpus, m, { maxMemory: { 0: 1000, 1: 1000 } });
    expect(seq).toEqual({ '': 0 });
    const bal = inferAutoDeviceMap(gpus, m, { maxMemory: { 0: 1000, 1: 1000 }, strategy: 'balanced', noSplitModuleClasses: ['ModelForTest'] });
    expect(new Set(Object.values(bal))).toEqual(new Set([0, 1]));
    const low = inferAutoDeviceMap(gpus, m, { maxMemory: { 0: 1000, 1: 1000 }, strategy: 'balanced_low_0', noSplitModuleClasses: ['ModelForTest'] });
    expect(low).toEqual({ '': 1 });
    expect(() => inferAutoDeviceMap(backend, m, { strategy: 'fastest' as never })).toThrow(/strategy "fastest"/);
  });

  it('a transformer-like model with a tied head: embedding and head share a device', () => {
    const m = new TinyLM(64, 16, 4);
    const map = inferAutoDeviceMap(gpus, m, { maxMemory: { 0: 9000, cpu: 9000 }, noSplitModuleClasses: ['Block'] });
    const embedDev = map.embed ?? map[''];
    const headDev = map.head ?? map[''];
    expect(embedDev).toBe(headDev);
    for (const k of Object.keys(map)) expect(k.split('.').length).toBeLessThanOrEqual(2);
  });

  it('explainDeviceMap says where each module went and why', () => {
    const text = explainDeviceMap(backend, new SeqOfThree(), { maxMemory: { cpu: 400 } });
    expect(text).toContain('Budgets: cpu 400 B, disk unbounded.');
    expect(text).toContain('- 0 -> cpu: 236 B, 300 B was free after keeping 100 B for the largest layer.');
    expect(text).toContain('- 1 (236 B) does not fit on cpu (64 B free): split into its parameters and children.');
    expect(text).toContain('cpu is full; continuing on disk.');
    expect(text).toContain('- 2 -> disk: 236 B (disk is unbounded).');
    expect(text).toMatch(/Result:\n {2}0: cpu\n {2}1\.linear1: cpu\n/);
    // Placed bytes (236 + 64 on the cpu, the other 408 on disk) and the room kept free, apart.
    expect(text).toContain('Bytes per device: cpu 300 B placed + 100 B kept free for the largest layer; disk 408 B placed.');
    const r = inferAutoDeviceMapDetailed(backend, new SeqOfThree(), { maxMemory: { cpu: 400 } });
    expect([r.placed, r.reserved, r.used]).toEqual([{ cpu: 300, disk: 408 }, { cpu: 100 }, { cpu: 400, disk: 408 }]);
  });

  it('explainDeviceMap says a disk budget is ignored (the disk is unbounded, as in Accelerate)', () => {
    const withDisk = explainDeviceMap(backend, new SeqOfThree(), { maxMemory: { cpu: 400, disk: 5000 } });
    expect(withDisk.split('\n')[0]).toBe('Budgets: cpu 400 B; disk unbounded (the disk budget of 4.88 KiB (5000 B) in maxMemory is ignored, as in Accelerate).');
    // Same plan as without the disk budget: only the first line differs.
    const without = explainDeviceMap(backend, new SeqOfThree(), { maxMemory: { cpu: 400 } });
    expect(withDisk.split('\n').slice(1)).toEqual(without.split('\n').slice(1));
    // A map that all fits keeps nothing in reserve.
    expect(explainDeviceMap(backend, new SeqOfThree(), { maxMemory: { cpu: 10_000 } })).toContain('Bytes per device: cpu 708 B placed.\n');
  });
});

describe('cleanDeviceMap / checkDeviceMap', () => {
  it('[B51] cleanDeviceMap groups what shares a device', () => {
    expect(cleanDeviceMap({ a: 0, b: 0, c: 0 })).toEqual({ '': 0 });
    expect(cleanDeviceMap({ 'a.x': 0, 'a.y': 0, 'b.x': 1, 'b.y': 1, c: 1 })).toEqual({ a: 0, b: 1, c: 1 });
    expect(cleanDeviceMap({ 'a.x': 0, 'a.y': 0, 'b.x.0': 1, 'b.x.1': 1, 'b.y.0': 2, 'b.y.1': 2, c: 2 })).toEqual({ a: 0, 'b.x': 1, 'b.y': 2, c: 2 });
  });

  it('[B51] checkDeviceMap names the uncovered tensors', () => {
    const m = new ModelForTest();
    expect(() => checkDeviceMap(backend, m, { linear1: 0, linear2: 1 })).toThrow(
      /does not give any device for the following parameters: batchnorm\.weight, batchnorm\.bias, batchnorm\.running_mean, batchnorm\.running_var, batchnorm\.num_batches_tracked/,
    );
    expect(() => checkDeviceMap(backend, m, { '': 0 })).not.toThrow();
  });
});
