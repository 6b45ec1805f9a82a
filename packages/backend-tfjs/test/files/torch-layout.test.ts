// Safetensors weights through core, with the Dense/Linear layout converted:
// a tfjs Dense checkpoint loads into a libtorch Linear and back.
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { rmSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { HostTensor, loadModelFiles, saveModelFiles, withSafetensorsFile } from '@accelerate/core';
import { Linear, TfjsModule, loadTfjsWeights, permuteHost, saveTfjsWeights, selectTfjsBackend, tf, tfjsStateDict } from '../../src/index.js';

const dir = mkdtempSync(join(tmpdir(), 'tfjs-torch-'));

// backend-libtorch is optional: it needs libtorch and a compiled addon.
let torch: any;
let torchMissing = '';
try {
  torch = await import('@accelerate/backend-libtorch');
  torch.zeros([1]);
} catch (e) {
  torchMissing = `@accelerate/backend-libtorch is not built here: ${(e as Error).message.split('\n')[0]}`;
}

function tfjsNet(): tf.Sequential {
  return tf.sequential({
    layers: [tf.layers.dense({ units: 3, inputShape: [5], activation: 'relu', name: 'fc1' }), tf.layers.dense({ units: 2, name: 'fc2' })],
  });
}

const X = [0.5, -1, 2, 0.25, -0.75, 1.5, 0.1, -0.3, 0.9, -2];

afterAll(() => rmSync(dir, { recursive: true, force: true }));

beforeAll(async () => {
  tf.enableProdMode();
  await selectTfjsBackend({ engine: 'wasm', env: {} });
});

describe('torch layout', () => {
  it('permuteHost transposes and permutes like torch.permute', () => {
    const h = new HostTensor(Float32Array.from([0, 1, 2, 3, 4, 5]), [2, 3], 'float32');
    const t = permuteHost(h, [1, 0]);
    expect([...t.shape]).toEqual([3, 2]);
    expect(Array.from(t.data as Float32Array)).toEqual([0, 3, 1, 4, 2, 5]);
    const c = new HostTensor(Float32Array.from({ length: 24 }, (_, i) => i), [2, 3, 4], 'float32');
    const p = permuteHost(c, [2, 0, 1]);
    expect([...p.shape]).toEqual([4, 2, 3]);
    // p[k][i][j] = c[i][j][k]
    expect((p.data as Float32Array)[1 * 6 + 1 * 3 + 2]).toBe((c.data as Float32Array)[1 * 12 + 2 * 4 + 1]);
  });

  it('Dense kernels are written as [out, in] weights under torch names; the tfjs layout keeps tfjs names', async () => {
    const net = tfjsNet();
    const kernel = Array.from(net.getWeights()[0].dataSync()); // [5, 3]
    const sd = tfjsStateDict(net);
    expect(Object.keys(sd)).toEqual(['fc1.weight', 'fc1.bias', 'fc2.weight', 'fc2.bias']);
    expect([...sd['fc1.weight'].shape]).toEqual([3, 5]);
    const w = sd['fc1.weight'].data as Float32Array;
    for (let i = 0; i < 5; i++) for (let o = 0; o < 3; o++) expect(w[o * 5 + i]).toBe(kernel[i * 3 + o]);
    expect(Object.keys(tfjsStateDict(net, 'tfjs'))).toEqual(['fc1.kernel', 'fc1.bias', 'fc2.kernel', 'fc2.bias']);
    await saveTfjsWeights(net, join(dir, 'a'));
    await withSafetensorsFile(join(dir, 'a', 'model.safetensors'), (f) => {
      expect(f.metadata).toEqual({ format: 'pt' });
      expect(f.offsetKeys().sort()).toEqual(['fc1.bias', 'fc1.weight', 'fc2.bias', 'fc2.weight']);
    });
  });

  it('save then load in torch layout restores a tfjs model exactly; a misnamed model is refused with the fix', async () => {
    const a = tfjsNet();
    const b = tfjsNet();
    await saveTfjsWeights(a, join(dir, 'b'));
    await loadTfjsWeights(b, join(dir, 'b'));
    b.getWeights().forEach((w, i) => expect(Array.from(w.dataSync())).toEqual(Array.from(a.getWeights()[i].dataSync())));
    const other = tf.sequential({ layers: [tf.layers.dense({ units: 3, inputShape: [5] }), tf.layers.dense({ units: 2 })] });
    await expect(loadTfjsWeights(other, join(dir, 'b'))).rejects.toThrow(/missing \["layers\.0\.weight".*Name the tfjs layers like the checkpoint/);
  });

});

describe(`tfjs <-> libtorch${torchMissing ? ` (skipped: ${torchMissing})` : ''}`, () => {
  it.skipIf(!!torchMissing)('tfjs Dense -> libtorch Linear: same outputs', async () => {
    const net = tfjsNet();
    await saveTfjsWeights(net, join(dir, 'to-torch'));
    class Net extends torch.nn.Module {
      fc1 = this.registerModule('fc1', new torch.nn.Linear(5, 3));
      fc2 = this.registerModule('fc2', new torch.nn.Linear(3, 2));
      forward(x: any) {
        return this.fc2.forward(torch.nn.functional.relu(this.fc1.forward(x)));
      }
    }
    const tn = new Net();
    tn.loadStateDict(await loadModelFiles(join(dir, 'to-torch')), { strict: true });
    const yTorch = Array.from(tn.forward(torch.fromTypedArray(Float32Array.from(X), [2, 5])).dataSync() as Float32Array);
    const yTfjs = Array.from((net.predict(tf.tensor2d(X, [2, 5])) as tf.Tensor).dataSync());
    yTorch.forEach((v, i) => expect(v).toBeCloseTo(yTfjs[i], 5));
  });

  it.skipIf(!!torchMissing)('libtorch Linear -> tfjs Dense and a torch-layout TfjsModule: same outputs', async () => {
    class Net extends torch.nn.Module {
      fc1 = this.registerModule('fc1', new torch.nn.Linear(5, 3));
      fc2 = this.registerModule('fc2', new torch.nn.Linear(3, 2));
      forward(x: any) {
        return this.fc2.forward(torch.nn.functional.relu(this.fc1.forward(x)));
      }
    }
    torch.manualSeed(3);
    const tn = new Net();
    const host: Record<string, HostTensor> = {};
    for (const [k, t] of Object.entries(tn.stateDict() as Record<string, any>)) host[k] = new HostTensor(t.dataSync(), t.shape, t.dtype);
    await saveModelFiles(host, join(dir, 'from-torch'));
    const yTorch = Array.from(tn.forward(torch.fromTypedArray(Float32Array.from(X), [2, 5])).dataSync() as Float32Array);

    const net = tfjsNet();
    await loadTfjsWeights(net, join(dir, 'from-torch'));
    const yDense = Array.from((net.predict(tf.tensor2d(X, [2, 5])) as tf.Tensor).dataSync());
    yTorch.forEach((v, i) => expect(yDense[i]).toBeCloseTo(v, 5));

    class Mod extends TfjsModule {
      fc1 = this.module('fc1', new Linear(5, 3));
      fc2 = this.module('fc2', new Linear(3, 2));
      override forward(x: tf.Tensor) {
        return this.fc2.forward(tf.relu(this.fc1.forward(x)));
      }
    }
    const mod = new Mod().eval();
    await loadTfjsWeights(mod, join(dir, 'from-torch'));
    const yMod = Array.from(mod.forward(tf.tensor2d(X, [2, 5])).dataSync());
    yTorch.forEach((v, i) => expect(yMod[i]).toBeCloseTo(v, 5));
  });
});
