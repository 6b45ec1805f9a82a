// The transpose-first wasm BatchMatMul: explicit registration, results equal
// to tfjs's cpu kernel, gradients equal to the unpatched wasm kernel, no leak.
import { describe, it, expect, beforeAll } from 'vitest';
import {
  isWasmTransposedMatMulRegistered,
  registerWasmTransposedMatMul,
  selectTfjsBackend,
  tf,
  unregisterWasmTransposedMatMul,
} from '../../src/index.js';

const CASES: Array<{ a: number[]; b: number[]; ta: boolean; tb: boolean }> = [
  { a: [7, 5], b: [5, 3], ta: false, tb: false },
  { a: [5, 7], b: [5, 3], ta: true, tb: false },
  { a: [7, 5], b: [3, 5], ta: false, tb: true },
  { a: [5, 7], b: [3, 5], ta: true, tb: true },
  { a: [4, 6, 9], b: [4, 8, 9], ta: false, tb: true },
  { a: [2, 3, 9, 6], b: [1, 3, 9, 4], ta: true, tb: false }, // batch broadcast over rank 4
  { a: [1, 64], b: [32, 64], ta: false, tb: true }, // a size-1 dimension (Transpose drops it)
  { a: [128, 96], b: [128, 80], ta: true, tb: false },
];

function data(shape: number[], seed: number): Float32Array {
  let s = seed;
  return Float32Array.from({ length: shape.reduce((x, y) => x * y, 1) }, () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 2 ** 31 - 1;
  });
}

async function matmulOn(backend: 'cpu' | 'wasm', c: (typeof CASES)[number], i: number): Promise<Float32Array> {
  await selectTfjsBackend({ engine: backend, env: {} });
  const out = tf.tidy(() => tf.matMul(tf.tensor(data(c.a, i), c.a), tf.tensor(data(c.b, 100 + i), c.b), c.ta, c.tb));
  const v = out.dataSync() as Float32Array;
  out.dispose();
  return Float32Array.from(v);
}

beforeAll(async () => {
  tf.enableProdMode();
  await selectTfjsBackend({ engine: 'wasm', env: {} });
});

describe('wasm BatchMatMul replacement', () => {
  it('is not installed by importing the package; registerWasmTransposedMatMul installs it, idempotently, and unregister restores the original', () => {
    const original = tf.getKernel('BatchMatMul', 'wasm')!.kernelFunc;
    expect(isWasmTransposedMatMulRegistered()).toBe(false);
    expect(registerWasmTransposedMatMul()).toBe(true);
    const patched = tf.getKernel('BatchMatMul', 'wasm')!.kernelFunc;
    expect(patched).not.toBe(original);
    expect(registerWasmTransposedMatMul()).toBe(true);
    expect(tf.getKernel('BatchMatMul', 'wasm')!.kernelFunc).toBe(patched);
    unregisterWasmTransposedMatMul();
    expect(isWasmTransposedMatMulRegistered()).toBe(false);
    expect(tf.getKernel('BatchMatMul', 'wasm')!.kernelFunc).toBe(original);
  });

  it('matches the cpu kernel on every transpose combination and batch shape', async () => {
    registerWasmTransposedMatMul();
    let worst = 0;
    for (const [i, c] of CASES.entries()) {
      const want = await matmulOn('cpu', c, i);
      const got = await matmulOn('wasm', c, i);
      expect(got.length).toBe(want.length);
      for (let k = 0; k < want.length; k++) worst = Math.max(worst, Math.abs(got[k] - want[k]));
    }
    expect(worst).toBeLessThan(1e-4);
    expect(tf.getBackend()).toBe('wasm');
  });

  it('frees its transposed temporaries: no engine tensor and no wasm buffer left behind', async () => {
    registerWasmTransposedMatMul();
    await selectTfjsBackend({ engine: 'wasm', env: {} });
    const a = tf.tensor(data([64, 32], 1), [64, 32]);
    const b = tf.tensor(data([48, 64], 2), [48, 64]);
    const tensors0 = tf.memory().numTensors;
    const buffers0 = tf.backend().numDataIds();
    for (let i = 0; i < 20; i++) tf.matMul(a, b, true, true).dispose();
    expect(tf.memory().numTensors).toBe(tensors0);
    expect(tf.backend().numDataIds()).toBe(buffers0);
    a.dispose();
    b.dispose();
  });

  it('gives the same dense-layer gradients as the unpatched wasm kernel', async () => {
    await selectTfjsBackend({ engine: 'wasm', env: {} });
    const grads = () =>
      tf.tidy(() => {
        const x = tf.tensor(data([16, 20], 3), [16, 20]);
        const w = tf.tensor(data([20, 12], 4), [20, 12]);
        const g = tf.grads((xx: tf.Tensor, ww: tf.Tensor) => tf.sum(tf.square(tf.matMul(tf.relu(tf.matMul(xx, ww)), ww, false, true))));
        return g([x, w]).map((t) => Array.from(t.dataSync()));
      });
    unregisterWasmTransposedMatMul();
    const plain = grads();
    registerWasmTransposedMatMul();
    const fast = grads();
    const diff = Math.max(...plain.flatMap((g, i) => g.map((v, k) => Math.abs(v - fast[i][k]) / Math.max(1, Math.abs(v)))));
    expect(diff).toBeLessThan(1e-5);
  });
});
