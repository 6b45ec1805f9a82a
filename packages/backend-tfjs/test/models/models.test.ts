// Models, names, seeds, optimizers and the gradient store, directly on the backend.
import { describe, it, expect, beforeAll } from 'vitest';
import { HostTensor } from '@accelerate/core';
import {
  Linear,
  TfjsBackend,
  TfjsLambdaLR,
  TfjsModule,
  accelerateBackend,
  adam,
  discardRecording,
  gradOf,
  isAutoNamed,
  isRecording,
  layersModelWeights,
  momentum,
  nextSeed,
  noGrad,
  seededInitializer,
  sgd,
  startRecording,
  tf,
} from '../../src/index.js';

let b: TfjsBackend;
beforeAll(async () => {
  b = await TfjsBackend.create({ engine: 'cpu' });
});

class Block extends TfjsModule {
  lin = this.module('lin', new Linear(3, 2));
  scale = this.param('scale', tf.ones([2]));
  count = this.buffer('count', tf.zeros([1]));
  override forward(x: tf.Tensor) {
    return tf.mul(this.lin.forward(x), this.scale);
  }
}

describe('discovery entry', () => {
  it('exports accelerateBackend { name: tfjs, priority: 5 } whose factory makes a TfjsBackend', async () => {
    expect(accelerateBackend.name).toBe('tfjs');
    expect(accelerateBackend.priority).toBe(5);
    const made = await accelerateBackend.factory.init();
    expect(made).toBeInstanceOf(TfjsBackend);
    expect(made.name).toBe('tfjs');
    expect(made.version).toMatch(/^tfjs 4\.22\.0 \((wasm|tfjs-node|tfjs-node-gpu)\)$/);
    await TfjsBackend.create({ engine: 'cpu' }); // back to this file's engine
  });
});

describe('TfjsModule', () => {
  it('names parameters by module path, keeps buffers in the state dict only, and refuses duplicate or dotted names', () => {
    const m = new Block();
    expect(b.models.namedParameters(m).map(([n]) => n)).toEqual(['scale', 'lin.weight', 'lin.bias']);
    expect(Object.keys(b.models.stateDict(m))).toEqual(['scale', 'lin.weight', 'lin.bias', 'count']);
    expect(b.models.namedParameters(m)[1][1].shape).toEqual([2, 3]);
    expect(() => m.param('scale', tf.ones([1]))).toThrow(/already has a parameter, buffer or module named "scale"/);
    expect(() => m.param('a.b', tf.ones([1]))).toThrow(/must be letters, digits or _/);
    expect(() => new TfjsModule().forward()).toThrow(/has no forward\(\)/);
  });

  it('two modules built the same way get the same names (tfjs variable names differ)', () => {
    const a = new Block();
    const c = new Block();
    expect(b.models.namedParameters(a).map(([n]) => n)).toEqual(b.models.namedParameters(c).map(([n]) => n));
    expect(a.lin.weight.name).not.toBe(c.lin.weight.name);
  });

  it('forward records only in training mode; zeroGrad and discardRecording stop the tape', () => {
    const m = new Block();
    discardRecording();
    m.eval();
    m.forward(tf.ones([1, 3])).dispose();
    expect(isRecording()).toBe(false);
    m.train();
    m.forward(tf.ones([1, 3])).dispose();
    expect(isRecording()).toBe(true);
    sgd(m, 0.1).zeroGrad();
    expect(isRecording()).toBe(false);
    startRecording();
    expect(isRecording()).toBe(true);
    noGrad(() => m.forward(tf.ones([1, 3])).dispose());
    discardRecording();
    expect(isRecording()).toBe(false);
  });

  it('noGrad around a training-mode forward leaves tfjs gradient state intact (even on throw): a later plain minimize works', () => {
    const m = new Block();
    discardRecording();
    m.train();
    const depth = () => (tf.engine() as unknown as { state: { gradientDepth: number } }).state.gradientDepth;
    noGrad(() => m.forward(tf.ones([1, 3])).dispose());
    expect(isRecording()).toBe(false);
    expect(depth()).toBe(0);
    expect(() =>
      noGrad(() => {
        m.forward(tf.ones([1, 3])).dispose();
        throw new Error('boom');
      }),
    ).toThrow('boom');
    expect(depth()).toBe(0);
    // A tape opened before noGrad and closed inside it.
    startRecording();
    noGrad(() => discardRecording());
    expect(depth()).toBe(0);
    sgd(m, 0.1).zeroGrad();
    expect(depth()).toBe(0);
    // Plain tfjs afterwards: minimize must still see its variables.
    const w = tf.variable(tf.scalar(3));
    const loss = tf.train.sgd(0.1).minimize(() => w.square() as tf.Scalar, true)!;
    expect(loss.dataSync()[0]).toBeCloseTo(9);
    expect(w.dataSync()[0]).toBeCloseTo(2.4);
    w.dispose();
  });

  it('a non-float32 trainable parameter is refused', () => {
    class Bad extends TfjsModule {
      p = this.param('p', tf.tensor([1, 2], [2], 'int32'));
    }
    expect(() => new Bad()).toThrow(/trainable parameter must be float32/);
  });
});

describe('tf.LayersModel names', () => {
  it('auto-named layers are called layers.<index>, user-named ones keep their name; nested models nest', () => {
    const inner = tf.sequential({ name: 'enc', layers: [tf.layers.dense({ units: 2, inputShape: [3] })] });
    const outer = tf.sequential({ layers: [inner, tf.layers.batchNormalization({ name: 'bn' }), tf.layers.dense({ units: 1, useBias: false })] });
    expect(isAutoNamed(outer.layers[2])).toBe(true);
    expect(isAutoNamed(outer.layers[1])).toBe(false);
    expect(layersModelWeights(outer).map((w) => [w.name, w.layerClass, w.trainable])).toEqual([
      ['enc.layers.0.kernel', 'Dense', true],
      ['enc.layers.0.bias', 'Dense', true],
      ['bn.gamma', 'BatchNormalization', true],
      ['bn.beta', 'BatchNormalization', true],
      ['bn.moving_mean', 'BatchNormalization', false],
      ['bn.moving_variance', 'BatchNormalization', false],
      ['layers.2.kernel', 'Dense', true],
    ]);
    expect(b.models.namedParameters(outer).map(([n]) => n)).toEqual(['enc.layers.0.kernel', 'enc.layers.0.bias', 'bn.gamma', 'bn.beta', 'layers.2.kernel']);
    expect(Object.keys(b.models.stateDict(outer))).toHaveLength(7);
  });

  it('the same architecture built twice has the same names, and its state dict loads across', () => {
    const build = () => tf.sequential({ layers: [tf.layers.dense({ units: 4, inputShape: [3] }), tf.layers.dense({ units: 2 })] });
    const a = build();
    const c = build();
    expect(Object.keys(b.models.stateDict(c))).toEqual(Object.keys(b.models.stateDict(a)));
    b.models.loadStateDict(c, Object.fromEntries(Object.entries(b.models.stateDict(a)).map(([k, v]) => [k, b.toHost(v)])));
    expect(Array.from(c.getWeights()[0].dataSync())).toEqual(Array.from(a.getWeights()[0].dataSync()));
    expect(() => b.models.loadStateDict(c, { 'layers.0.kernel': new HostTensor(new Float32Array(3), [3, 1], 'float32') }, { strict: false })).toThrow(
      /"layers\.0\.kernel" has shape \[3, 1\] but the model's is \[3, 4\]/,
    );
  });
});

describe('randomness', () => {
  it('manualSeed makes seededInitializer layers and nextSeed reproducible; unseeded tfjs initialisers are not tied to it', () => {
    const build = () => tf.sequential({ layers: [tf.layers.dense({ units: 3, inputShape: [4], kernelInitializer: seededInitializer('glorotUniform') })] });
    b.rng.manualSeed(5);
    const w1 = Array.from(build().getWeights()[0].dataSync());
    const s1 = nextSeed();
    b.rng.manualSeed(5);
    expect(Array.from(build().getWeights()[0].dataSync())).toEqual(w1);
    expect(nextSeed()).toBe(s1);
    b.rng.manualSeed(6);
    expect(Array.from(build().getWeights()[0].dataSync())).not.toEqual(w1);
  });
});

describe('tensors', () => {
  it('fromHost converts what tfjs cannot store: float64/float16 to float32, int64 to int32 (range-checked)', () => {
    expect(b.dtype(b.fromHost(HostTensor.fromNumbers([0.5, 1.25], [2], 'float64')))).toBe('float32');
    const half = b.fromHost(new HostTensor(Uint16Array.from([0x3c00, 0xc000]), [2], 'float16'));
    expect(Array.from(half.dataSync())).toEqual([1, -2]);
    const ints = b.fromHost(HostTensor.fromNumbers([3, -7], [2], 'int64'));
    expect(ints.dtype).toBe('int32');
    expect(Array.from(ints.dataSync())).toEqual([3, -7]);
    expect(() => b.fromHost(new HostTensor(BigInt64Array.from([2n ** 40n]), [1], 'int64'))).toThrow(/tfjs has no int64: element 0 .* is 1099511627776, outside int32/);
    expect(() => b.toDevice(tf.scalar(1), 'cuda:0')).toThrow(/has one device, "cpu"; cannot place a tensor on "cuda:0"/);
  });

  it('fromHost copies: changing the host buffer afterwards does not change the tensor', () => {
    const data = Float32Array.from([1, 2]);
    const t = b.fromHost(new HostTensor(data, [2], 'float32'));
    data[0] = 99;
    expect(Array.from(t.dataSync())).toEqual([1, 2]);
  });
});

describe('optimizers and gradients', () => {
  it('clipGradValue clamps, clipGradNorm with the max norm, and gradients of frozen-out params stay null', () => {
    const m = new Linear(2, 1);
    const x = tf.tensor([[10, -20]]);
    b.autograd.backward(() => tf.sum(m.forward(x)), { scale: 1 });
    expect(Array.from(gradOf(m.weight)!.dataSync())).toEqual([10, -20]);
    b.autograd.clipGradValue(m.parameters(), 5);
    expect(Array.from(gradOf(m.weight)!.dataSync())).toEqual([5, -5]);
    expect(Array.from(gradOf(m.bias!)!.dataSync())).toEqual([1]);
    expect(b.autograd.clipGradNorm(m.parameters(), 1, Infinity)).toBe(5);
    expect(Array.from(gradOf(m.weight)!.dataSync()).map((v) => +v.toFixed(5))).toEqual([1, -1]);
    const unused = new Linear(2, 1);
    expect(b.autograd.grad(unused.weight)).toBeNull();
    expect(b.autograd.clipGradNorm(unused.parameters(), 1)).toBe(0);
    sgd(m, 0.1).zeroGrad();
  });

  it('steps skip parameters without a gradient, as in PyTorch', () => {
    const a = new Linear(2, 1);
    const c = new Linear(2, 1);
    const opt = momentum([...a.parameters(), ...c.parameters()], 0.1);
    const before = Array.from(c.weight.dataSync());
    b.autograd.backward(() => tf.sum(a.forward(tf.ones([1, 2]))), { scale: 1 });
    opt.step();
    expect(Array.from(c.weight.dataSync())).toEqual(before);
    opt.zeroGrad();
  });

  it('TfjsLambdaLR sets the rate as baseLr * lambda(step), for SGD and Adam', () => {
    const m = new Linear(2, 1);
    for (const opt of [sgd(m, 0.5), adam(m, 0.5)]) {
      const s = new TfjsLambdaLR(opt, (n) => 1 / (n + 1));
      expect(opt.lr).toBe(0.5);
      s.step();
      s.step();
      expect(opt.lr).toBeCloseTo(0.5 / 3, 12);
      expect(s.getLastLr()).toEqual([opt.lr]);
    }
    // SGD really uses the new rate.
    const opt = sgd(m, 1);
    new TfjsLambdaLR(opt, () => 0.25);
    const w0 = Array.from(m.weight.dataSync());
    b.autograd.backward(() => tf.sum(m.forward(tf.ones([1, 2]))), { scale: 1 });
    opt.step();
    Array.from(m.weight.dataSync()).forEach((v, i) => expect(v).toBeCloseTo(w0[i] - 0.25, 6));
    opt.zeroGrad();
  });

  it('the loss must have one element; a non-tensor loss is refused', () => {
    const m = new Linear(2, 2);
    expect(() => b.autograd.backward(() => m.forward(tf.ones([1, 2])), { scale: 1 })).toThrow(/exactly one element, got shape \[1, 2\]/);
    expect(() => b.autograd.backward((() => 3) as never, { scale: 1 })).toThrow(/must be a tf\.Tensor/);
  });

  it('isOutOfMemoryError recognises wasm and tfjs-node allocation failures', () => {
    expect(b.memory.isOutOfMemoryError(new RangeError('Array buffer allocation failed'))).toBe(true);
    expect(b.memory.isOutOfMemoryError(new Error('OOM when allocating tensor with shape[100000,100000]'))).toBe(true);
    expect(b.memory.isOutOfMemoryError(new Error('Aborted(OOM)'))).toBe(true);
    expect(b.memory.isOutOfMemoryError(new Error('shape mismatch'))).toBe(false);
  });
});
