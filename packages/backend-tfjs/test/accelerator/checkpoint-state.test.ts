// saveState / loadState with the tfjs backend: Adam's slot variables and the learning-rate
// schedule go through the backend's optimizers.stateDict / schedulerStateDict, and a run stopped
// mid-epoch and resumed in a fresh Accelerator continues with identical losses.
import { describe, it, expect, beforeAll, beforeEach } from 'vitest';
import { mkdtempSync, readdirSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Accelerator, AcceleratorState, DataLoader, HostTensor, setSeed } from '@accelerate/core';
import { Linear, TfjsBackend, TfjsModule, adam, tf, TfjsLambdaLR } from '../../src/index.js';

let backend: TfjsBackend;
beforeAll(async () => {
  backend = await TfjsBackend.create({ engine: 'wasm' });
});
beforeEach(async () => {
  await AcceleratorState.resetState();
});

class Net extends TfjsModule {
  fc1 = this.module('fc1', new Linear(3, 5));
  fc2 = this.module('fc2', new Linear(5, 1));
  override forward(x: tf.Tensor): tf.Tensor {
    return tf.tidy(() => this.fc2.forward(tf.tanh(this.fc1.forward(x))));
  }
}

/** Deterministic weights from `seed` (so runs do not depend on tfjs initialisers). */
function initWeights(model: Net, seed: number) {
  let s = seed >>> 0;
  const r = () => ((s = (Math.imul(s, 1664525) + 1013904223) >>> 0) / 2 ** 32) - 0.5;
  const sd: Record<string, HostTensor> = {};
  for (const [name, p] of backend.models.namedParameters(model)) sd[name] = new HostTensor(Float32Array.from({ length: p.size }, r), [...p.shape], 'float32');
  backend.models.loadStateDict(model, sd);
}

const data = Array.from({ length: 20 }, (_, i) => ({
  x: new HostTensor(Float32Array.from([i / 20, Math.sin(i), Math.cos(i)]), [3], 'float32'),
  y: new HostTensor(Float32Array.from([Math.sin(i / 3)]), [1], 'float32'),
}));

async function run(opts: { seed: number; stopAfter?: number; dir: string; resume?: boolean }) {
  await AcceleratorState.resetState();
  const acc = new Accelerator({ backend, configFile: false, env: {} });
  await acc.ready();
  setSeed(opts.seed);
  const model = new Net();
  initWeights(model, opts.seed);
  const opt = adam(model, 0.05);
  const sched = new TfjsLambdaLR(opt, (e) => 1 / (1 + 0.2 * e));
  const [m, o, l, s] = await acc.prepare(model, opt, new DataLoader(data, { batchSize: 4, shuffle: true }), sched);
  const counter = { n: 0, stateDict: () => ({ n: counter.n }), loadStateDict: (st: { n: number }) => void (counter.n = st.n) };
  acc.registerForCheckpointing(counter);
  if (opts.resume) await acc.loadState(opts.dir);
  const losses: number[] = [];
  const loader = l as unknown as AsyncIterable<{ x: tf.Tensor; y: tf.Tensor }> & { iteration: number };
  for (let epoch = loader.iteration; epoch < 3; epoch++) {
    for await (const b of loader) {
      acc.backward(() => tf.losses.meanSquaredError(b.y, m.forward(b.x)) as tf.Scalar);
      losses.push(backend.lastLoss!.dataSync()[0]);
      o.step();
      s.step();
      o.zeroGrad();
      tf.dispose([b.x, b.y]);
      counter.n++;
      if (counter.n === opts.stopAfter) {
        await acc.saveState(opts.dir);
        return { losses, lr: opt.lr };
      }
    }
  }
  return { losses, lr: opt.lr, weights: backend.models.namedParameters(m).map(([, p]) => [...p.dataSync()]) };
}

describe('saveState / loadState with tfjs', () => {
  it('Adam slots and the schedule are saved as optimizer.json + optimizer.safetensors and scheduler.json', async () => {
    const dir = join(mkdtempSync(join(tmpdir(), 'tfjs-state-')), 'c');
    await run({ seed: 1, stopAfter: 3, dir });
    expect(readdirSync(dir)).toEqual(expect.arrayContaining(['model.safetensors', 'optimizer.json', 'optimizer.safetensors', 'scheduler.json', 'dl_state_dict.json']));
    const state = JSON.parse(readFileSync(join(dir, 'scheduler.json'), 'utf8'));
    expect(state.value).toEqual({ last_epoch: 3, base_lr: 0.05, lr: 0.05 * (1 / (1 + 0.2 * 3)) });
    const optimizer = JSON.parse(readFileSync(join(dir, 'optimizer.json'), 'utf8')).value;
    // Adam: the iteration count, then first and second moments of the 4 parameters.
    expect(optimizer.weights).toHaveLength(1 + 2 * 4);
    expect(optimizer.lr).toBe(state.value.lr);
  });

  it('stopped at step 7 (mid-epoch) and resumed with another seed: identical losses, weights and learning rate', async () => {
    const dir = join(mkdtempSync(join(tmpdir(), 'tfjs-state-')), 'c');
    const full = await run({ seed: 4, dir: join(dir, '..', 'unused') });
    const first = await run({ seed: 4, stopAfter: 7, dir });
    const second = await run({ seed: 9, dir, resume: true });
    expect(first.losses).toHaveLength(7);
    expect([...first.losses, ...second.losses]).toEqual(full.losses);
    expect(second.weights).toEqual(full.weights);
    expect(second.lr).toBe(full.lr);
  });
});
