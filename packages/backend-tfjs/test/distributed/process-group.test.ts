// Several processes with tfjs: gradients averaged over backend-libtorch's gloo
// (host buffers), and a clear error when that package is missing.
import { describe, it, expect } from 'vitest';
import { spawn } from 'node:child_process';
import { findFreePort } from '@accelerate/core/internal';
import { resolve } from 'node:path';
import { GLOO_PACKAGE, Linear, TfjsBackend, gradOf, initTfjsProcessGroup, sgd, tf, tfjsMultiProcessSupport } from '../../src/index.js';
import { rankData } from '../fixtures/ddp-data.js';

const missing = () => {
  const e = new Error(`Cannot find package '${GLOO_PACKAGE}' imported from /x/distributed.js`) as NodeJS.ErrnoException;
  e.code = 'ERR_MODULE_NOT_FOUND';
  return Promise.reject(e);
};
const options = { rank: 0, worldSize: 2, masterAddr: '127.0.0.1', masterPort: 1, timeoutMs: 1000 };

let glooMissing = '';
const support = await tfjsMultiProcessSupport();
if (!support.available) glooMissing = support.reason!.split('\n')[0];

describe('tfjs process groups', () => {
  it('without @accelerate/backend-libtorch, initProcessGroup says what to install (and tfjsMultiProcessSupport reports it before any spawn)', async () => {
    await expect(initTfjsProcessGroup(options, missing)).rejects.toThrow(
      /runs several processes through @accelerate\/backend-libtorch's gloo process group, which is not installed\. Install it \(npm install @accelerate\/backend-libtorch/,
    );
    const s = await tfjsMultiProcessSupport(missing);
    expect(s.available).toBe(false);
    expect(s.reason).toContain('or run a single process (--num_processes 1)');
    const broken = () => Promise.reject(new Error('libtorch.so.1: cannot open shared object file'));
    await expect(initTfjsProcessGroup(options, broken)).rejects.toThrow(/installed but failed to load: libtorch\.so\.1/);
    await expect(initTfjsProcessGroup(options, async () => ({}))).rejects.toThrow(/exports no GlooProcessGroup/);
  });

  it.skipIf(!!glooMissing)(`2 processes: rank 0's weights are broadcast and gradients averaged; both ranks equal a 1-process reference${glooMissing ? ` (skipped: ${glooMissing})` : ''}`, async () => {
    const port = await findFreePort('127.0.0.1');
    const worker = resolve(__dirname, '../fixtures/ddp-worker.ts');
    const run = (rank: number) =>
      new Promise<any>((res, rej) => {
        const p = spawn(process.execPath, ['--import', 'tsx', worker, String(rank), String(port)], { env: { ...process.env, OMP_NUM_THREADS: '1' } });
        let out = '';
        let err = '';
        p.stdout.on('data', (d) => (out += d));
        p.stderr.on('data', (d) => (err += d));
        p.on('exit', (code) => (code === 0 ? res(JSON.parse(out.trim().split('\n').pop()!)) : rej(new Error(`rank ${rank} exited ${code}: ${err}`))));
      });
    const [r0, r1] = await Promise.all([run(0), run(1)]);
    expect(r1.weight).toEqual(r0.weight);
    expect(r1.bias).toEqual(r0.bias);
    expect(r1.firstGrad).toEqual(r0.firstGrad);

    // Reference in this process: rank 0's initial weights, the gradient averaged over both ranks' batches.
    const backend = await TfjsBackend.create({ engine: 'wasm' });
    backend.rng.manualSeed(100);
    const model = new Linear(4, 2);
    const opt = sgd(model, 0.1);
    const batches = [0, 1].map((r) => {
      const { x, y } = rankData(r);
      return { X: tf.tensor(x, [3, 4]), Y: tf.tensor(y, [3, 2]) };
    });
    for (let step = 0; step < 3; step++) {
      for (const b of batches) backend.autograd.backward(() => tf.losses.meanSquaredError(b.Y, model.forward(b.X)), { scale: 0.5 });
      if (step === 0) Array.from(gradOf(model.weight)!.dataSync()).forEach((v, i) => expect(r0.firstGrad[i]).toBeCloseTo(v, 6));
      opt.step();
      opt.zeroGrad();
    }
    Array.from(model.weight.dataSync()).forEach((v, i) => expect(r0.weight[i]).toBeCloseTo(v, 6));
    Array.from(model.bias!.dataSync()).forEach((v, i) => expect(r0.bias[i]).toBeCloseTo(v, 6));
  }, 120_000);
});
