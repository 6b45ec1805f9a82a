/**
 * tfjs training-step benchmark: MLP 784-512-512-10 (tf.layers.dense), batch 128, Adam, wasm.
 *
 *   npm run build && node --import tsx bench/tfjs-step.ts
 *   BENCH_ROUNDS=8 BENCH_BLOCK=10 node --import tsx bench/tfjs-step.ts
 *
 * Steps/s of the same step (forward, softmax cross-entropy, gradients, Adam update,
 * over 8 pre-made batches cycled) in three loops, each on its own copy of the model:
 *   (a) raw tfjs (`optimizer.minimize`) with the transpose-first wasm BatchMatMul,
 *   (b) the same model through `Accelerator` (prepare, accumulate, backward(closure),
 *       optimizer.step, zeroGrad) — the ratio b/a must be >= 0.95,
 *   (c) raw tfjs with tfjs's own wasm BatchMatMul (the fix's speed-up is a/c).
 * The machine may be shared, so the loops run in one process, interleaved in blocks
 * of BENCH_BLOCK steps for BENCH_ROUNDS rounds (the kernel is swapped between blocks),
 * and ratios are the medians of the per-round ratios; each loop's steps/s is its
 * median block. The patched loops must end at the same loss (same work), and
 * tf.memory().numTensors must not grow in (b).
 * Writes bench/results/tfjs-step.json and prints the ratios.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { fileURLToPath } from 'node:url';
import { Accelerator } from '@accelerate/core';
import { TfjsBackend, adam, registerWasmTransposedMatMul, tf, unregisterWasmTransposedMatMul } from '@accelerate/backend-tfjs';

const HERE = fileURLToPath(new URL('.', import.meta.url));
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 8);
const BLOCK = Number(process.env.BENCH_BLOCK ?? 10);
const WARMUP = 3;
const SIZES = [784, 512, 512, 10];
const BATCH = 128;
const NBATCHES = 8;
const MODES = ['rawPatched', 'acceleratorPatched', 'rawUnpatched'] as const;
type Mode = (typeof MODES)[number];

function mlp(): tf.Sequential {
  return tf.sequential({
    layers: SIZES.slice(1).map((units, i) =>
      tf.layers.dense({
        units,
        activation: i < SIZES.length - 2 ? 'relu' : 'linear',
        kernelInitializer: tf.initializers.glorotUniform({ seed: i + 1 }),
        ...(i === 0 ? { inputShape: [SIZES[0]] } : {}),
      }),
    ),
  });
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

function round(x: number, digits = 2): number {
  const f = 10 ** digits;
  return Math.round(x * f) / f;
}

async function main(): Promise<void> {
  const backend = await TfjsBackend.create({ engine: 'wasm' });
  const batches = Array.from({ length: NBATCHES }, (_, k) => ({
    x: tf.randomUniform([BATCH, SIZES[0]], 0, 1, 'float32', 100 + k),
    y: tf.oneHot(tf.randomUniform([BATCH], 0, 10, 'int32', 200 + k) as tf.Tensor1D, 10),
  }));
  const lossOf = (m: tf.LayersModel, i: number) =>
    tf.losses.softmaxCrossEntropy(batches[i % NBATCHES].y, m.apply(batches[i % NBATCHES].x) as tf.Tensor) as tf.Scalar;

  // (a) and (c): raw tfjs.
  const rawLoop = () => {
    const model = mlp();
    const opt = tf.train.adam(1e-3);
    let loss: tf.Scalar | null = null;
    let i = 0;
    return {
      step: async () => {
        loss?.dispose();
        loss = opt.minimize(() => lossOf(model, i++), true);
      },
      loss: () => loss!.dataSync()[0],
    };
  };
  // (b): through the Accelerator.
  const acc = await Accelerator.create({ backend, configFile: false, env: {} });
  const net = mlp();
  const [m, o] = await acc.prepare(net, adam(net, 1e-3));
  let ai = 0;
  const accelLoop = {
    step: async () => {
      const i = ai++;
      await acc.accumulate(m, () => {
        acc.backward(() => lossOf(m, i));
        o.step();
        o.zeroGrad();
      });
    },
    loss: () => backend.lastLoss!.dataSync()[0],
  };
  const loops: Record<Mode, { step: () => Promise<void>; loss: () => number }> = {
    rawPatched: rawLoop(),
    acceleratorPatched: accelLoop,
    rawUnpatched: rawLoop(),
  };
  const usePatch = (mode: Mode) => (mode === 'rawUnpatched' ? unregisterWasmTransposedMatMul() : registerWasmTransposedMatMul());

  for (const mode of MODES) {
    usePatch(mode);
    for (let k = 0; k < WARMUP; k++) await loops[mode].step();
    loops[mode].loss();
  }
  const tensorsBefore = tf.memory().numTensors;
  const blocks: Record<Mode, number[]> = { rawPatched: [], acceleratorPatched: [], rawUnpatched: [] };
  for (let r = 0; r < ROUNDS; r++) {
    for (const mode of MODES) {
      usePatch(mode);
      const t0 = performance.now();
      for (let k = 0; k < BLOCK; k++) await loops[mode].step();
      loops[mode].loss(); // a read waits for queued work before the clock stops
      blocks[mode].push(BLOCK / ((performance.now() - t0) / 1000));
    }
    console.log(`round ${r + 1}/${ROUNDS}: ${MODES.map((md) => `${md} ${blocks[md][r].toFixed(2)}`).join('  ')} steps/s`);
  }
  registerWasmTransposedMatMul();
  const tensorsFlat = tf.memory().numTensors === tensorsBefore;
  const ratio = median(blocks.acceleratorPatched.map((v, r) => v / blocks.rawPatched[r]));
  const speedup = median(blocks.rawPatched.map((v, r) => v / blocks.rawUnpatched[r]));
  const finalLoss = Object.fromEntries(MODES.map((md) => [md, loops[md].loss()])) as Record<Mode, number>;
  // Same seeds, batches, optimizer and step count: the patched loops must agree; tfjs's own kernel sums
  // in another order, so its loss drifts slightly over many Adam steps.
  const sameWork =
    Math.abs(finalLoss.acceleratorPatched - finalLoss.rawPatched) < 1e-5 &&
    Math.abs(finalLoss.rawUnpatched - finalLoss.rawPatched) < 2e-2 * Math.abs(finalLoss.rawPatched);

  const result = {
    benchmark: 'tfjs-step',
    date: new Date().toISOString(),
    node: process.version,
    tfjs: tf.version_core,
    engine: backend.engine,
    cpu: cpus()[0]?.model,
    cores: cpus().length,
    config: { sizes: SIZES, batch: BATCH, optimizer: 'adam 1e-3', batches: NBATCHES, rounds: ROUNDS, block: BLOCK, warmup: WARMUP },
    stepsPerSec: Object.fromEntries(MODES.map((md) => [md, round(median(blocks[md]))])),
    blocks: Object.fromEntries(MODES.map((md) => [md, blocks[md].map((v) => round(v))])),
    acceleratorOverRaw: round(ratio, 3),
    acceleratorOverRawTarget: 0.95,
    patchSpeedup: round(speedup, 2),
    tensorCountFlat: tensorsFlat,
    finalLoss: Object.fromEntries(MODES.map((md) => [md, round(finalLoss[md], 6)])),
    sameWork,
  };
  mkdirSync(`${HERE}results`, { recursive: true });
  writeFileSync(`${HERE}results/tfjs-step.json`, JSON.stringify(result, null, 2) + '\n');
  console.log(
    `\nAccelerator / raw tfjs: ${ratio.toFixed(3)} (target >= 0.95)  |  transpose-first BatchMatMul: ${speedup.toFixed(2)}x  |  ` +
      `tensors flat: ${tensorsFlat}  |  same work: ${sameWork}`,
  );
  if (ratio < 0.95 || !tensorsFlat || !sameWork) process.exitCode = 1;
}

await main();
