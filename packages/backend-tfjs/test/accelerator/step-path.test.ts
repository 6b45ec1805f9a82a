// The per-step path on wasm: no extra kernels or copies beyond what a raw tfjs loop does.
import { describe, it, expect, beforeAll } from 'vitest';
import { HostTensor } from '@accelerate/core';
import { Linear, TfjsBackend, TfjsModule, gradOf, sgd, tf } from '../../src/index.js';

let b: TfjsBackend;
beforeAll(async () => {
  b = await TfjsBackend.create({ engine: 'wasm' });
});

class Net extends TfjsModule {
  fc = this.module('fc', new Linear(3, 2));
  override forward(x: tf.Tensor) {
    return this.fc.forward(x);
  }
}

describe('per-step path (wasm)', () => {
  it('a closure backward stores the fresh gradients as they are (no copy per parameter); accumulation still adds', async () => {
    const m = new Net();
    const opt = sgd(m, 0.1);
    const x = tf.ones([4, 3]);
    const loss = () => tf.sum(m.forward(x)) as tf.Scalar;
    // Tensors made by a step (tensor ids are sequential): the same as tfjs's own variableGrads, no copy per parameter.
    const made = (f: () => void) => {
      const probe = () => tf.tidy(() => tf.scalar(0)).id;
      const id0 = probe();
      f();
      return probe() - id0 - 1;
    };
    const raw = made(() => {
      const { value, grads } = tf.variableGrads(loss);
      tf.dispose([value, ...Object.values(grads)]);
    });
    expect(made(() => b.autograd.backward(loss, { scale: 1 }))).toBe(raw);
    opt.zeroGrad();
    b.autograd.backward(loss, { scale: 1 });
    const once = Array.from(gradOf(m.fc.weight)!.dataSync());
    b.autograd.backward(loss, { scale: 0.5 });
    expect(Array.from(gradOf(m.fc.weight)!.dataSync())).toEqual(once.map((v) => v * 1.5));
    opt.zeroGrad();
    b.autograd.backward(loss, { scale: 0.5 });
    expect(Array.from(gradOf(m.fc.weight)!.dataSync())).toEqual(once.map((v) => v * 0.5));
    opt.zeroGrad();
  });

  it('fromHost on wasm reads the host buffer once: later writes to it do not reach the tensor', () => {
    const f = Float32Array.from([1, 2]);
    const i = Int32Array.from([3, 4]);
    const tf32 = b.fromHost(new HostTensor(f, [2], 'float32'));
    const ti32 = b.fromHost(new HostTensor(i, [2], 'int32'));
    f[0] = 99;
    i[0] = 99;
    expect(Array.from(tf32.dataSync())).toEqual([1, 2]);
    expect(Array.from(ti32.dataSync())).toEqual([3, 4]);
    tf.dispose([tf32, ti32]);
    // int64 (how numeric labels collate) becomes int32 when in range, and is refused outside it.
    const labels = b.fromHost(new HostTensor(BigInt64Array.from([0n, -1n, 2n ** 31n - 1n, -(2n ** 31n)]), [4], 'int64'));
    expect([labels.dtype, Array.from(labels.dataSync())]).toEqual(['int32', [0, -1, 2 ** 31 - 1, -(2 ** 31)]]);
    labels.dispose();
    expect(() => b.fromHost(new HostTensor(BigInt64Array.from([1n, 2n ** 31n]), [2], 'int64'))).toThrow(/element 1 of an int64 tensor is 2147483648, outside int32/);
    expect(() => b.fromHost(new HostTensor(BigInt64Array.from([-(2n ** 32n)]), [1], 'int64'))).toThrow(/outside int32/);
  });
});
