// Core's Accelerator driving the tfjs backend (wasm): prepare, closure and
// tensor losses, gradient accumulation, clipping, precision refusal, and a
// 200-step run whose tfjs tensor count stays flat.
import { describe, it, expect, beforeAll, beforeEach } from 'vitest';
import { Accelerator, AcceleratorState, DataLoader, DataLoaderShard, HostTensor } from '@accelerate/core';
import { Linear, TfjsBackend, TfjsModule, adam, sgd, tf, TfjsLambdaLR, gradOf } from '../../src/index.js';

let backend: TfjsBackend;
const make = (opts: ConstructorParameters<typeof Accelerator>[0] = {}) => new Accelerator({ backend, configFile: false, env: {}, ...opts });

beforeAll(async () => {
  backend = await TfjsBackend.create({ engine: 'wasm' });
});
beforeEach(async () => {
  await AcceleratorState.resetState();
});

class MLP extends TfjsModule {
  fc1 = this.module('fc1', new Linear(8, 16));
  fc2 = this.module('fc2', new Linear(16, 3));
  override forward(x: tf.Tensor): tf.Tensor {
    return tf.tidy(() => this.fc2.forward(tf.relu(this.fc1.forward(x))));
  }
}

interface Sample {
  x: HostTensor;
  y: bigint;
}
interface Batch {
  x: tf.Tensor;
  y: tf.Tensor;
}

/** Separable toy data: the label is the index of the largest of the first three features. */
function samples(n: number, seed: number): Sample[] {
  let s = seed >>> 0;
  const r = () => ((s = (Math.imul(s, 1664525) + 1013904223) >>> 0) / 2 ** 32) * 4 - 2;
  return Array.from({ length: n }, () => {
    const x = Float32Array.from({ length: 8 }, r);
    const y = BigInt([0, 1, 2].reduce((best, i) => (x[i] > x[best] ? i : best), 0));
    return { x: new HostTensor(x, [8], 'float32'), y };
  });
}

const lossOf = (model: MLP, b: Batch) => tf.losses.softmaxCrossEntropy(tf.oneHot(b.y, 3), model.forward(b.x));

function grads(model: MLP): number[][] {
  return model.parameters().map((p) => Array.from(gradOf(p)!.dataSync()));
}

describe('Accelerator + tfjs', () => {
  it('prepare keeps the model, wraps the optimizer, and the loader yields tfjs tensors (int64 labels as int32)', async () => {
    backend.rng.manualSeed(0);
    const acc = make();
    const model = new MLP();
    const [m, o, l] = await acc.prepare(model, adam(model, 1e-2), new DataLoader<Sample, Batch>(samples(10, 1), { batchSize: 4 }));
    expect(m).toBe(model);
    expect(acc.device).toBe('cpu');
    expect(l).toBeInstanceOf(DataLoaderShard);
    expect(backend.models.namedParameters(m).map(([n]) => n)).toEqual(['fc1.weight', 'fc1.bias', 'fc2.weight', 'fc2.bias']);
    for await (const b of l) {
      expect(b.x).toBeInstanceOf(tf.Tensor);
      expect(b.x.shape).toEqual([4, 8]);
      expect(b.y.dtype).toBe('int32');
      tf.dispose(b as unknown as tf.TensorContainer);
      break;
    }
    o.zeroGrad();
  });

  it('[B36] with gradientAccumulationSteps = 2, backward(closure) accumulates the gradients of loss / 2', async () => {
    backend.rng.manualSeed(1);
    const model = new MLP();
    const data = samples(8, 2);
    const batches: Batch[] = [0, 1].map((k) => ({
      x: tf.tensor(Float32Array.from(data.slice(k * 4, k * 4 + 4).flatMap((s) => [...(s.x.data as Float32Array)])), [4, 8]),
      y: tf.tensor(Int32Array.from(data.slice(k * 4, k * 4 + 4).map((s) => Number(s.y))), [4], 'int32'),
    }));
    // Reference: each batch's full gradient, averaged.
    const opt0 = sgd(model, 0.1);
    const ref: number[][][] = [];
    for (const b of batches) {
      backend.autograd.backward(() => lossOf(model, b), { scale: 1 });
      ref.push(grads(model));
      opt0.zeroGrad();
    }
    const acc = make({ gradientAccumulationSteps: 2 });
    const [m, o] = await acc.prepare(model, opt0);
    const before = model.parameters().map((p) => Array.from(p.dataSync()));
    await acc.accumulate(m, () => {
      acc.backward(() => lossOf(m, batches[0]));
      o.step();
      o.zeroGrad();
    });
    expect(acc.syncGradients).toBe(false);
    expect(model.parameters().map((p) => Array.from(p.dataSync()))).toEqual(before); // no step while accumulating
    await acc.accumulate(m, () => acc.backward(() => lossOf(m, batches[1])));
    expect(acc.syncGradients).toBe(true);
    grads(model).forEach((g, i) => g.forEach((v, k) => expect(v).toBeCloseTo((ref[0][i][k] + ref[1][i][k]) / 2, 6)));
    o.step();
    model.parameters().forEach((p, i) =>
      Array.from(p.dataSync()).forEach((v, k) => expect(v).toBeCloseTo(before[i][k] - 0.1 * ((ref[0][i][k] + ref[1][i][k]) / 2), 6)),
    );
    o.zeroGrad();
    expect(gradOf(model.parameters()[0])).toBeNull();
    tf.dispose(batches as unknown as tf.TensorContainer);
  });

  it('a loss tensor after a TfjsModule forward gives the same gradients as the closure; an unrecorded tensor is refused with the fix', async () => {
    backend.rng.manualSeed(2);
    const model = new MLP();
    const opt = sgd(model, 0.1);
    const b = { x: tf.tensor(samples(4, 3).flatMap((s) => [...(s.x.data as Float32Array)]), [4, 8]), y: tf.tensor([0, 1, 2, 0], [4], 'int32') };
    backend.autograd.backward(() => lossOf(model, b), { scale: 0.5 });
    const fromClosure = grads(model);
    expect(backend.lastLoss?.rank).toBe(0);
    opt.zeroGrad();
    const loss = tf.tidy(() => lossOf(model, b));
    backend.autograd.backward(loss, { scale: 0.5 });
    grads(model).forEach((g, i) => g.forEach((v, k) => expect(v).toBeCloseTo(fromClosure[i][k], 6)));
    opt.zeroGrad();
    model.eval();
    const unrecorded = lossOf(model, b);
    expect(() => backend.autograd.backward(unrecorded, { scale: 1 })).toThrow(/computed without a gradient tape.*accelerator\.backward\(\(\) => lossFn/);
    model.train();
    tf.dispose([loss, unrecorded, b.x, b.y]);
  });

  it('a tf.LayersModel trains through the closure form, with stable parameter names', async () => {
    const acc = make();
    const net = tf.sequential({
      layers: [tf.layers.dense({ units: 5, inputShape: [8], activation: 'relu', name: 'hidden' }), tf.layers.dense({ units: 3 })],
    });
    const [m, o] = await acc.prepare(net, adam(net, 1e-2));
    expect(backend.models.namedParameters(m).map(([n]) => n)).toEqual(['hidden.kernel', 'hidden.bias', 'layers.1.kernel', 'layers.1.bias']);
    const x = tf.randomNormal([6, 8], 0, 1, 'float32', 1);
    const y = tf.oneHot(tf.tensor([0, 1, 2, 0, 1, 2], [6], 'int32'), 3);
    const before = Array.from(net.getWeights()[0].dataSync());
    acc.backward(() => tf.losses.softmaxCrossEntropy(y, m.apply(x) as tf.Tensor));
    const norm = acc.clipGradNorm(m, 1e-3);
    expect(norm).toBeGreaterThan(1e-3);
    o.step();
    const after = Array.from(net.getWeights()[0].dataSync());
    expect(after).not.toEqual(before);
    o.zeroGrad();
    tf.dispose([x, y]);
  });

  it('mixed precision bf16 / fp16 is refused at prepare with a clear message (tfjs computes in float32 only)', async () => {
    const acc = make({ mixedPrecision: 'bf16' });
    await expect(acc.prepare(new MLP())).rejects.toThrow(/mixedPrecision "bf16" is not supported by the tfjs backend: TensorFlow\.js computes in float32 only/);
    await AcceleratorState.resetState();
    await expect(make({ mixedPrecision: 'fp16' }).ready()).rejects.toThrow(/fp16/);
  });

  it('200 optimizer steps through the Accelerator leave tf.memory().numTensors flat, and the model learns', async () => {
    backend.rng.manualSeed(3);
    const acc = make();
    const model = new MLP();
    const opt0 = adam(model, 1e-2);
    const sched0 = new TfjsLambdaLR(opt0, (n) => 1 / (1 + n / 200));
    const [m, o, loader, s] = await acc.prepare(model, opt0, new DataLoader<Sample, Batch>(samples(400, 5), { batchSize: 4, shuffle: true }), sched0);
    let step = 0;
    let atStep10 = -1;
    let bytesAt10 = -1;
    const losses: number[] = [];
    for (let epoch = 0; epoch < 2; epoch++) {
      for await (const b of loader) {
        await acc.accumulate(m, () => {
          acc.backward(() => lossOf(m, b));
          acc.clipGradNorm(m, 5);
          o.step();
          s.step();
          o.zeroGrad();
        });
        tf.dispose([b.x, b.y]);
        step++;
        if (step % 50 === 0) losses.push(backend.lastLoss!.dataSync()[0]);
        if (step === 10) {
          atStep10 = tf.memory().numTensors;
          bytesAt10 = tf.memory().numBytes;
        }
      }
    }
    expect(step).toBe(200);
    expect(tf.memory().numTensors).toBe(atStep10);
    expect(tf.memory().numBytes).toBe(bytesAt10);
    expect(sched0.lastEpoch).toBe(200);
    expect(losses[losses.length - 1]).toBeLessThan(losses[0]);
    expect(losses[losses.length - 1]).toBeLessThan(0.6);
  });

  it('the tensor-loss form also runs 100 steps without growing the tensor count', async () => {
    backend.rng.manualSeed(4);
    const acc = make();
    const model = new MLP();
    const [m, o, loader] = await acc.prepare(model, adam(model, 1e-2), new DataLoader<Sample, Batch>(samples(400, 6), { batchSize: 4 }));
    let step = 0;
    let base = -1;
    for await (const b of loader) {
      await acc.accumulate(m, () => {
        const loss = tf.tidy(() => lossOf(m, b));
        acc.backward(loss);
        loss.dispose();
        o.step();
        o.zeroGrad();
      });
      tf.dispose([b.x, b.y]);
      if (++step === 10) base = tf.memory().numTensors;
    }
    expect(step).toBe(100);
    expect(tf.memory().numTensors).toBe(base);
  });
});
