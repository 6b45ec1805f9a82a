// A tf.LayersModel saved by Accelerator.saveModel / saveState is written in the torch layout
// (`0.weight` [out, in], not `layers.0.kernel` [in, out]), loads back into the LayersModel, and
// loads into the equivalent nn.Sequential in backend-libtorch and in Python torch.
import { describe, it, expect, beforeAll, beforeEach, afterAll } from 'vitest';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { Accelerator, AcceleratorState, loadModelFiles, withSafetensorsFile } from '@accelerate/core';
import { TfjsBackend, adam, tf } from '../../src/index.js';

const dir = mkdtempSync(join(tmpdir(), 'tfjs-layers-ckpt-'));
const X = [0.5, -1, 2, 0.25, -0.75, 1.5, 0.1, -0.3, 0.9, -2];

let backend: TfjsBackend;
beforeAll(async () => {
  backend = await TfjsBackend.create({ engine: 'wasm' });
});
beforeEach(async () => {
  await AcceleratorState.resetState();
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** Auto-named layers: stable names `layers.0`, `layers.1`. */
function autoNamed(seed: number): tf.Sequential {
  return tf.sequential({
    layers: [
      tf.layers.dense({ units: 3, inputShape: [5], activation: 'relu', kernelInitializer: tf.initializers.glorotUniform({ seed }) }),
      tf.layers.dense({ units: 2, kernelInitializer: tf.initializers.glorotUniform({ seed: seed + 1 }), biasInitializer: 'ones' }),
    ],
  });
}

/** Named like torch's nn.Sequential(Linear(5, 3), ReLU(), Linear(3, 2)): `0`, `1`, `2`. */
function likeTorchSequential(seed: number): tf.Sequential {
  return tf.sequential({
    layers: [
      tf.layers.dense({ name: '0', units: 3, inputShape: [5], kernelInitializer: tf.initializers.glorotUniform({ seed }), biasInitializer: 'ones' }),
      tf.layers.reLU({ name: '1' }),
      tf.layers.dense({ name: '2', units: 2, kernelInitializer: tf.initializers.glorotUniform({ seed: seed + 1 }), biasInitializer: 'ones' }),
    ],
  });
}

const predict = (m: tf.LayersModel) => tf.tidy(() => Array.from((m.predict(tf.tensor2d(X, [2, 5])) as tf.Tensor).dataSync()));

describe('tf.LayersModel checkpoints are in the torch layout', () => {
  it('saveModel writes layers.0.weight [out, in] (not layers.0.kernel) and it loads back into a LayersModel', async () => {
    const acc = new Accelerator({ backend, configFile: false, env: {} });
    const a = autoNamed(1);
    const [m] = await acc.prepare(a);
    await acc.saveModel(m, join(dir, 'model'));
    await withSafetensorsFile(join(dir, 'model', 'model.safetensors'), (f) => {
      expect(f.offsetKeys().sort()).toEqual(['layers.0.bias', 'layers.0.weight', 'layers.1.bias', 'layers.1.weight']);
    });
    const files = await loadModelFiles(join(dir, 'model'));
    expect([...files['layers.0.weight'].shape]).toEqual([3, 5]);
    const kernel = a.getWeights()[0].dataSync(); // [5, 3]
    const w = files['layers.0.weight'].data as Float32Array;
    for (let i = 0; i < 5; i++) for (let o = 0; o < 3; o++) expect(w[o * 5 + i]).toBe(kernel[i * 3 + o]);

    const b = autoNamed(7);
    expect(predict(b)).not.toEqual(predict(a));
    backend.models.loadStateDict(b, files);
    expect(predict(b)).toEqual(predict(a));
    // The tfjs names still load (checkpoints written before), and a wrong torch-layout state is refused by name.
    const c = autoNamed(9);
    backend.models.loadStateDict(c, backend.models.stateDict(a));
    expect(predict(c)).toEqual(predict(a));
    const { ['layers.1.bias']: _, ...partial } = files;
    expect(() => backend.models.loadStateDict(c, partial)).toThrow(/torch layout, strict.*missing keys \["layers\.1\.bias"\]/);
  });

  it('saveState then loadState into a fresh Accelerator restores the LayersModel and its Adam state', async () => {
    const acc = new Accelerator({ backend, configFile: false, env: {} });
    const net = autoNamed(2);
    const [m, o] = await acc.prepare(net, adam(net, 0.05));
    const x = tf.tensor2d(X, [2, 5]);
    const y = tf.tensor2d([1, 0, 0, 1], [2, 2]);
    const step = (model: tf.LayersModel, opt: typeof o) => {
      acc.backward(() => tf.losses.meanSquaredError(y, model.apply(x) as tf.Tensor) as tf.Scalar);
      opt.step();
      opt.zeroGrad();
    };
    step(m, o);
    await acc.saveState(join(dir, 'state'));
    await withSafetensorsFile(join(dir, 'state', 'model.safetensors'), (f) => {
      expect(f.offsetKeys().sort()).toEqual(['layers.0.bias', 'layers.0.weight', 'layers.1.bias', 'layers.1.weight']);
    });
    step(m, o);
    const after = predict(m);

    await AcceleratorState.resetState();
    const acc2 = new Accelerator({ backend, configFile: false, env: {} });
    const net2 = autoNamed(5);
    const [m2, o2] = await acc2.prepare(net2, adam(net2, 0.05));
    await acc2.loadState(join(dir, 'state'));
    acc2.backward(() => tf.losses.meanSquaredError(y, m2.apply(x) as tf.Tensor) as tf.Scalar);
    o2.step();
    o2.zeroGrad();
    predict(m2).forEach((v, i) => expect(v).toBeCloseTo(after[i], 6));
  });
});

// backend-libtorch is optional: it needs libtorch and a compiled addon.
let torch: any;
let torchMissing = '';
try {
  torch = await import('@accelerate/backend-libtorch');
  torch.zeros([1]);
} catch (e) {
  torchMissing = `@accelerate/backend-libtorch is not built here: ${(e as Error).message.split('\n')[0]}`;
}

const venv = resolve(__dirname, '../../../../.venv-py/bin/python');
const python = process.env.ACCELERATE_TS_PYTHON || (existsSync(venv) ? venv : undefined);
let pythonMissing = python ? '' : `no Python venv: set ACCELERATE_TS_PYTHON or run scripts/setup-python.sh (looked for ${venv})`;
if (python && !pythonMissing) {
  const r = spawnSync(python, ['-c', 'import torch, safetensors'], { encoding: 'utf8', timeout: 120_000 });
  if (r.status !== 0) pythonMissing = `${python} cannot import torch and safetensors: ${(r.stderr || '').trim().split('\n').pop()}`;
}
if (torchMissing) console.log(`skipping the libtorch check: ${torchMissing}`);
if (pythonMissing) console.log(`skipping the Python check: ${pythonMissing}`);

describe('the saved LayersModel loads into the equivalent nn.Sequential', () => {
  let saved: string;
  let yTfjs: number[];
  beforeAll(async () => {
    await AcceleratorState.resetState();
    const acc = new Accelerator({ backend, configFile: false, env: {} });
    const net = likeTorchSequential(3);
    const [m] = await acc.prepare(net);
    saved = join(dir, 'seq');
    await acc.saveModel(m, saved);
    yTfjs = predict(net);
  });

  it.skipIf(!!torchMissing)('backend-libtorch: Sequential(Linear(5, 3), ReLU(), Linear(3, 2)) loads it strictly, same outputs', async () => {
    const seq = new torch.nn.Sequential(new torch.nn.Linear(5, 3), new torch.nn.ReLU(), new torch.nn.Linear(3, 2));
    seq.loadStateDict(await loadModelFiles(saved), { strict: true });
    const y = Array.from(seq.forward(torch.fromTypedArray(Float32Array.from(X), [2, 5])).dataSync() as Float32Array);
    y.forEach((v, i) => expect(v).toBeCloseTo(yTfjs[i], 5));
  });

  it.skipIf(!!pythonMissing)('Python torch: nn.Sequential(Linear(5, 3), ReLU(), Linear(3, 2)).load_state_dict(strict=True), same outputs', () => {
    const code = [
      'import json, sys, torch',
      'from safetensors.torch import load_file',
      'a = json.load(sys.stdin)',
      'seq = torch.nn.Sequential(torch.nn.Linear(5, 3), torch.nn.ReLU(), torch.nn.Linear(3, 2))',
      'seq.load_state_dict(load_file(a["file"]), strict=True)',
      'with torch.no_grad(): y = seq(torch.tensor(a["x"], dtype=torch.float32).reshape(2, 5))',
      'print(json.dumps(y.flatten().tolist()))',
    ].join('\n');
    const r = spawnSync(python!, ['-c', code], { input: JSON.stringify({ file: join(saved, 'model.safetensors'), x: X }), encoding: 'utf8', timeout: 180_000 });
    expect(r.stderr).toBe('');
    const y = JSON.parse(r.stdout) as number[];
    y.forEach((v, i) => expect(v).toBeCloseTo(yTfjs[i], 5));
  });
});
