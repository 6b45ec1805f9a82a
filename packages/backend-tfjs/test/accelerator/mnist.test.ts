// A small MNIST run through the Accelerator on tfjs-wasm: 1,000 real digits
// from the `mnist` package, one epoch, then accuracy on 500 held-out digits.
import { describe, it, expect, beforeAll } from 'vitest';
import { createRequire } from 'node:module';
import { Accelerator, AcceleratorState, DataLoader, Generator, HostTensor, setSeed } from '@accelerate/core';
import { Linear, TfjsBackend, TfjsModule, adam, noGrad, tf } from '../../src/index.js';

const PIXELS = 28 * 28;

interface Sample {
  input: HostTensor;
  target: bigint;
}
interface Batch {
  input: tf.Tensor;
  target: tf.Tensor;
}

function loadDigits(seed: number, train: number, heldOut: number): { train: Sample[]; heldOut: Sample[] } {
  const digits = createRequire(import.meta.url)('mnist') as Array<{ id: number; length: number; raw: number[] }>;
  const all: Sample[] = [];
  for (const d of digits) {
    for (let i = 0; i < d.length; i++) {
      all.push({ input: new HostTensor(Float32Array.from(d.raw.slice(i * PIXELS, (i + 1) * PIXELS)), [PIXELS], 'float32'), target: BigInt(d.id) });
    }
  }
  const order = new Generator(seed).randperm(all.length);
  return { train: order.slice(0, train).map((i) => all[i]), heldOut: order.slice(train, train + heldOut).map((i) => all[i]) };
}

class MLP extends TfjsModule {
  fc1 = this.module('fc1', new Linear(PIXELS, 64));
  fc2 = this.module('fc2', new Linear(64, 10));
  override forward(x: tf.Tensor): tf.Tensor {
    return tf.tidy(() => this.fc2.forward(tf.relu(this.fc1.forward(x))));
  }
}

let backend: TfjsBackend;
beforeAll(async () => {
  await AcceleratorState.resetState();
  backend = await TfjsBackend.create({ engine: 'wasm' });
});

describe('MNIST on tfjs-wasm through the Accelerator', () => {
  it('one epoch over 1,000 digits reaches well above chance (10 %) on 500 held-out digits', async () => {
    setSeed(42);
    const acc = await Accelerator.create({ backend, configFile: false, env: {} });
    const { train, heldOut } = loadDigits(42, 1000, 500);
    const model = new MLP();
    const [m, opt, trainLoader, evalLoader] = await acc.prepare(
      model,
      adam(model, 3e-3),
      new DataLoader<Sample, Batch>(train, { batchSize: 32, shuffle: true }),
      new DataLoader<Sample, Batch>(heldOut, { batchSize: 250 }),
    );
    const start = tf.memory().numTensors;
    let steps = 0;
    for await (const b of trainLoader) {
      await acc.accumulate(m, () => {
        acc.backward(() => tf.losses.softmaxCrossEntropy(tf.oneHot(b.target, 10), m.forward(b.input)));
        opt.step();
        opt.zeroGrad();
      });
      tf.dispose([b.input, b.target]);
      steps++;
    }
    expect(steps).toBe(32);
    m.eval();
    let correct = 0;
    let seen = 0;
    for await (const b of evalLoader) {
      const hits = noGrad(() => tf.tidy(() => tf.sum(tf.equal(tf.argMax(m.forward(b.input), 1), b.target)).dataSync()[0]));
      correct += hits;
      seen += b.target.shape[0];
      tf.dispose([b.input, b.target]);
    }
    expect(seen).toBe(500);
    const accuracy = correct / seen;
    console.log(`tfjs-wasm MNIST: 1 epoch, 1000 digits, held-out accuracy ${(accuracy * 100).toFixed(1)} %`);
    expect(accuracy).toBeGreaterThan(0.6);
    // Only Adam's two moment slots per parameter and the kept last loss were added (its beta powers exist from construction).
    expect(tf.memory().numTensors - start).toBe(2 * 4 + 1);
  });
});
