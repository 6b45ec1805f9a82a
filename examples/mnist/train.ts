/**
 * Train a digit classifier on real MNIST digits with accelerate-ts, on libtorch or
 * TensorFlow.js (wasm) — the same loop, the same Accelerator calls.
 *
 *   npm run mnist -- --epochs 3 --batch-size 64 --mixed-precision bf16 --out runs/mnist
 *   npx accelerate launch --num_processes 2 examples/mnist/train.ts   (same script, two processes)
 *   npm run mnist -- --backend tfjs                                    (no libtorch needed)
 *
 * The backend is libtorch when `@accelerate/backend-libtorch` loads, otherwise tfjs;
 * `--backend libtorch|tfjs` (or env ACCELERATE_BACKEND) chooses explicitly. The first
 * line printed says which one runs and why.
 *
 * The `mnist` npm package ships 10,000 labelled 28x28 digits. They are split once,
 * after a seeded shuffle, into 8,500 for training and 1,500 held out; the held-out
 * accuracy is printed after every epoch. Everything that concerns devices, processes,
 * gradient accumulation and mixed precision goes through the `Accelerator`, so the
 * loop below is the one you would write for a single CPU. Only the model, the
 * optimizer and a few tensor helpers differ per backend (see `libtorchKit` / `tfjsKit`).
 */
import { createRequire } from 'node:module';
import { availableParallelism } from 'node:os';
import { parseArgs } from 'node:util';
import {
  Accelerator,
  DataLoader,
  Generator,
  HostTensor,
  progressBar,
  setSeed,
  type BackendFactory,
  type MixedPrecision,
} from '@accelerate/core';
// Types only: the packages themselves are imported at run time, whichever is installed.
import type * as Torch from '@accelerate/backend-libtorch';
import type * as Tfjs from '@accelerate/backend-tfjs';

const USAGE = `Usage: npm run mnist -- [options]
  --backend auto|libtorch|tfjs      compute backend (default: env ACCELERATE_BACKEND, else auto:
                                    libtorch when it loads, otherwise tfjs)
  --epochs N                        passes over the training digits (default 5)
  --batch-size N                    digits per batch and process (default 64)
  --lr X                            learning rate: AdamW on libtorch, Adam on tfjs (default 0.004)
  --mixed-precision no|bf16         autocast the forward pass to bfloat16, libtorch only (default no)
  --gradient-accumulation-steps N   batches per optimizer update (default 1)
  --seed N                          seed of the split, the initial weights and the order (default 42)
  --threads N                       libtorch threads per process (default: cores / processes)
  --out DIR                         save the trained weights there (model.safetensors)
  --help`;

const { values: args } = parseArgs({
  options: {
    backend: { type: 'string' },
    epochs: { type: 'string', default: '5' },
    'batch-size': { type: 'string', default: '64' },
    lr: { type: 'string', default: '0.004' },
    'mixed-precision': { type: 'string', default: 'no' },
    'gradient-accumulation-steps': { type: 'string', default: '1' },
    seed: { type: 'string', default: '42' },
    threads: { type: 'string' },
    out: { type: 'string' },
    help: { type: 'boolean', default: false },
  },
  strict: true,
});
if (args.help) {
  console.log(USAGE);
  process.exit(0);
}

function usageError(message: string): never {
  console.error(`${message}\n\n${USAGE}`);
  process.exit(2);
}
function intArg(name: keyof typeof args, min: number): number {
  const v = Number(args[name]);
  if (!Number.isSafeInteger(v) || v < min) usageError(`--${name} must be a whole number >= ${min}, got ${JSON.stringify(args[name])}.`);
  return v;
}
const epochs = intArg('epochs', 1);
const batchSize = intArg('batch-size', 1);
const gradientAccumulationSteps = intArg('gradient-accumulation-steps', 1);
const seed = intArg('seed', 0);
const lr = Number(args.lr);
if (!(lr > 0)) usageError(`--lr must be a positive number, got ${JSON.stringify(args.lr)}.`);
const mixedPrecision = args['mixed-precision'] as MixedPrecision;
if (mixedPrecision !== 'no' && mixedPrecision !== 'bf16') {
  usageError(`--mixed-precision must be "no" or "bf16" on the CPU, got ${JSON.stringify(mixedPrecision)}.`);
}
const BACKEND_ENV = 'ACCELERATE_BACKEND';
const backendFlag = args.backend ?? process.env[BACKEND_ENV] ?? 'auto';
if (!['auto', 'libtorch', 'tfjs'].includes(backendFlag)) {
  usageError(`${args.backend !== undefined ? '--backend' : BACKEND_ENV} must be auto, libtorch or tfjs, got ${JSON.stringify(backendFlag)}.`);
}

// ---- data -------------------------------------------------------------------------

/** One digit: an image in [0, 1] (shaped for the backend's model) and its label (int64). */
interface Sample {
  input: HostTensor;
  target: bigint;
}
/** What a prepared loader yields: the collated HostTensors, moved to the backend. */
interface Batch<T> {
  input: T;
  target: T;
}

const PIXELS = 28 * 28;
const HELD_OUT = 1500;

/** All 10,000 digits of the `mnist` package, split after a shuffle seeded with `seed`. */
function loadMnist(seed: number, shape: readonly number[]): { train: Sample[]; heldOut: Sample[] } {
  const digits = createRequire(import.meta.url)('mnist') as Array<{ id: number; length: number; raw: number[] }>;
  const all: Sample[] = [];
  for (const digit of digits) {
    for (let i = 0; i < digit.length; i++) {
      const image = Float32Array.from(digit.raw.slice(i * PIXELS, (i + 1) * PIXELS));
      all.push({ input: new HostTensor(image, [...shape], 'float32'), target: BigInt(digit.id) });
    }
  }
  const order = new Generator(seed).randperm(all.length);
  const shuffled = order.map((i) => all[i]);
  return { train: shuffled.slice(HELD_OUT), heldOut: shuffled.slice(0, HELD_OUT) };
}

/** Linear warm-up, then cosine decay to 0 (transformers' `get_cosine_schedule_with_warmup`). */
function cosineWithWarmup(warmup: number, total: number): (step: number) => number {
  return (step) => (step < warmup ? step / Math.max(1, warmup) : Math.max(0, 0.5 * (1 + Math.cos((Math.PI * (step - warmup)) / Math.max(1, total - warmup)))));
}

// ---- what differs per backend -------------------------------------------------------

/** What the loop calls on an optimizer (the prepared wrapper has the same methods). */
interface Optimizer {
  step(): void;
  zeroGrad(): void;
}
/** What the loop calls on a learning-rate schedule. */
interface Scheduler {
  step(): void;
}

/**
 * The backend-specific pieces: model, optimizer, schedule, and a few tensor helpers.
 * Everything else (the loop, the Accelerator calls) is shared.
 */
interface Kit<T, M> {
  /** `libtorch 2.x` / `tfjs 4.22.0 (wasm)`. */
  describe: string;
  factory: BackendFactory;
  /** Shape of one sample's image. */
  inputShape: number[];
  /** Called once the world is known (threads per process). Returns the threads used. */
  setThreads(numProcesses: number): number;
  makeModel(): M;
  makeOptimizer(model: M): Optimizer;
  makeScheduler(optimizer: Optimizer, lambda: (step: number) => number): Scheduler;
  /** Cross-entropy of the model on a batch (called inside backward's closure). */
  loss(model: M, batch: Batch<T>): T;
  /** A scalar tensor's value. */
  item(t: T): number;
  /** Predicted classes, without recording gradients. */
  predict(model: M, input: T): T;
  /** How many predictions equal the targets. */
  countEqual(predictions: T, targets: T): number;
  dispose(value: unknown): void;
  /** Free what a training step left (the loss tensor). */
  endStep(): void;
}

async function libtorchKit(torch: typeof Torch): Promise<Kit<Torch.Tensor, Torch.nn.Module>> {
  const { nn, optim } = torch;
  let lastLoss: Torch.Tensor | undefined;
  return {
    describe: `libtorch ${torch.version}`,
    factory: torch.libtorch(),
    inputShape: [1, 28, 28],
    setThreads(numProcesses) {
      // Share the cores between the processes of a multi-process launch.
      const threads = args.threads !== undefined ? intArg('threads', 1) : Math.max(1, Math.floor(availableParallelism() / numProcesses));
      torch.setNumThreads(threads);
      return threads;
    },
    /** Two Conv-ReLU-MaxPool blocks and a linear classifier: ~20k parameters. */
    makeModel: () =>
      new nn.Sequential(
        new nn.Conv2d(1, 16, 3, { padding: 1 }),
        new nn.ReLU(),
        new nn.MaxPool2d(2),
        new nn.Conv2d(16, 32, 3, { padding: 1 }),
        new nn.ReLU(),
        new nn.MaxPool2d(2),
        new nn.Flatten(),
        new nn.Linear(32 * 7 * 7, 10),
      ),
    makeOptimizer: (model) => new optim.AdamW(model.parameters(), { lr, weightDecay: 0.01 }),
    makeScheduler: (opt, lambda) => new optim.LambdaLR(opt as Torch.optim.Optimizer, lambda),
    loss(model, batch) {
      // tidy frees the forward's intermediate handles at once (autograd keeps what it needs).
      lastLoss = torch.tidy(() => nn.functional.crossEntropy(model.forward(batch.input), batch.target));
      return lastLoss;
    },
    item: (t) => t.item(),
    predict: (model, input) => torch.noGrad(() => torch.tidy(() => model.forward(input).argmax(-1))),
    countEqual: (p, t) => torch.tidy(() => p.eq(t).sum().item()),
    dispose: torch.dispose,
    endStep() {
      lastLoss?.dispose();
      lastLoss = undefined;
    },
  };
}

async function tfjsKit(tfjsPkg: typeof Tfjs): Promise<Kit<Tfjs.tf.Tensor, Tfjs.TfjsModule>> {
  const { tf, TfjsModule, Linear, adam, TfjsLambdaLR, noGrad, manualSeed } = tfjsPkg;
  /**
   * A multilayer perceptron: tfjs's wasm engine has no kernel for the gradient of a
   * convolution's filters, so the CNN of the libtorch side cannot train there.
   * Linear layers use PyTorch's layout and names (fc1.weight, ...), so the saved
   * model.safetensors loads into a libtorch nn.Linear stack.
   */
  class MLP extends TfjsModule {
    fc1 = this.module('fc1', new Linear(PIXELS, 256));
    fc2 = this.module('fc2', new Linear(256, 10));
    override forward(x: Tfjs.tf.Tensor): Tfjs.tf.Tensor {
      return tf.tidy(() => this.fc2.forward(tf.relu(this.fc1.forward(x))));
    }
  }
  return {
    get describe() {
      return `tfjs ${tf.version_core} (${tf.getBackend()})`;
    },
    factory: tfjsPkg.tfjs(),
    inputShape: [PIXELS],
    setThreads: () => 1, // wasm runs one thread in Node
    makeModel: () => {
      manualSeed(seed); // Linear draws its initial weights from the package's seeded generator
      return new MLP();
    },
    makeOptimizer: (model) => adam(model, lr),
    makeScheduler: (opt, lambda) => new TfjsLambdaLR(opt as Tfjs.TfjsOptimizer, lambda),
    loss: (model, batch) => tf.losses.softmaxCrossEntropy(tf.oneHot(batch.target, 10), model.forward(batch.input) as Tfjs.tf.Tensor),
    item: (t) => t.dataSync()[0],
    predict: (model, input) => noGrad(() => tf.tidy(() => tf.argMax(model.forward(input) as Tfjs.tf.Tensor, 1))),
    countEqual: (p, t) => tf.tidy(() => tf.sum(tf.equal(p, t)).dataSync()[0]),
    dispose: (v) => tf.dispose(v as Tfjs.tf.Tensor[]),
    endStep() {},
  };
}

/** Where an explicit choice came from: `--backend tfjs` or `ACCELERATE_BACKEND=tfjs`. */
function requestedBy(name: string): string {
  return args.backend !== undefined ? `--backend ${name}` : `${BACKEND_ENV}=${name}`;
}

/** Pick the backend: the flag, or libtorch when it loads and tfjs otherwise. Says why. */
async function chooseKit(): Promise<{ kit: Kit<any, any>; why: string }> {
  if (backendFlag === 'tfjs') {
    return { kit: await tfjsKit(await import('@accelerate/backend-tfjs')), why: requestedBy('tfjs') };
  }
  let failure: string;
  try {
    const torch = await import('@accelerate/backend-libtorch');
    const why = backendFlag === 'libtorch' ? requestedBy('libtorch') : 'auto: @accelerate/backend-libtorch loads';
    return { kit: await libtorchKit(torch), why };
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    const missing = err?.code === 'ERR_MODULE_NOT_FOUND' && String(err.message).includes('@accelerate/backend-libtorch');
    failure = missing ? '@accelerate/backend-libtorch is not installed' : `@accelerate/backend-libtorch failed to load: ${String(err?.message ?? e).split('\n')[0]}`;
    if (backendFlag === 'libtorch') throw new Error(`${requestedBy('libtorch')}: ${failure}. Run scripts/setup.sh (libtorch) or use --backend tfjs.`, { cause: e });
  }
  return { kit: await tfjsKit(await import('@accelerate/backend-tfjs')), why: `auto: ${failure}` };
}

// ---- training ---------------------------------------------------------------------

async function main(): Promise<void> {
  const started = performance.now();
  const { kit, why } = await chooseKit();
  if (mixedPrecision !== 'no' && kit.inputShape.length === 1) {
    usageError(`--mixed-precision ${mixedPrecision} needs the libtorch backend: TensorFlow.js computes in float32 only (${why}).`);
  }
  setSeed(seed);
  const accelerator = await Accelerator.create({ backend: kit.factory, mixedPrecision, gradientAccumulationSteps });
  const threads = kit.setThreads(accelerator.numProcesses);
  accelerator.print(
    `accelerate-ts MNIST: ${accelerator.numProcesses} process(es), device ${accelerator.device}, ${threads} thread(s) each, ` +
      `mixed precision ${accelerator.mixedPrecision}, gradient accumulation ${gradientAccumulationSteps}, ${kit.describe} (${why})`,
  );

  const { train, heldOut } = loadMnist(seed, kit.inputShape);
  const trainLoader = new DataLoader<Sample, Batch<unknown>>(train, { batchSize, shuffle: true, seed });
  const evalLoader = new DataLoader<Sample, Batch<unknown>>(heldOut, { batchSize: 250 });

  const model = kit.makeModel();
  const optimizer = kit.makeOptimizer(model);
  // Counted in optimizer updates of one process, as a single-process run would see them.
  const updatesPerEpoch = Math.ceil(trainLoader.length / gradientAccumulationSteps);
  const scheduler = kit.makeScheduler(optimizer, cosineWithWarmup(Math.min(100, updatesPerEpoch), updatesPerEpoch * epochs));

  const [m, opt, trainData, evalData, sched] = await accelerator.prepare(model, optimizer, trainLoader, evalLoader, scheduler);

  let accuracy = 0;
  for (let epoch = 1; epoch <= epochs; epoch++) {
    const epochStart = performance.now();
    m.train();
    // Drawn on the main process's terminal only; a no-op in pipes, CI and other ranks.
    const bar = progressBar({ total: trainData.length, label: `epoch ${epoch}/${epochs}`, unit: 'batch', isMainProcess: accelerator.isMainProcess });
    let lossSum = 0;
    let batches = 0;
    for await (const batch of trainData) {
      const loss = await accelerator.accumulate(m, async () => {
        let value = 0;
        // A closure works on every backend (tfjs differentiates functions); awaiting covers
        // tfjs's gradient all-reduce on several processes and costs nothing elsewhere.
        await accelerator.backward(() => {
          const l = kit.loss(m, batch);
          value = kit.item(l);
          return l;
        });
        if (accelerator.syncGradients) accelerator.clipGradNorm(m, 1.0);
        opt.step();
        sched.step();
        opt.zeroGrad();
        kit.endStep();
        return value;
      });
      kit.dispose(batch);
      lossSum += loss;
      batches += 1;
      bar.update(1, `loss ${(lossSum / batches).toFixed(4)}`);
    }
    bar.close();

    accuracy = await evaluate(accelerator, kit, m, evalData);
    const seconds = (performance.now() - epochStart) / 1000;
    accelerator.print(
      `epoch ${epoch}/${epochs}: train loss ${(lossSum / batches).toFixed(4)}, held-out accuracy ${(accuracy * 100).toFixed(2)}% ` +
        `(${HELD_OUT} digits), ${seconds.toFixed(1)} s`,
    );
  }

  if (args.out) {
    const result = await accelerator.saveModel(m, args.out);
    accelerator.print(`saved ${result.files.join(', ')} to ${args.out}`);
  }
  accelerator.print(
    `held-out accuracy ${(accuracy * 100).toFixed(2)}% after ${epochs} epoch(s) in ${((performance.now() - started) / 1000).toFixed(1)} s`,
  );
  await accelerator.endTraining();
}

/** Fraction of held-out digits classified correctly, counted once across all processes. */
async function evaluate<T extends { shape: readonly number[] }, M extends { eval(): unknown }>(
  accelerator: Accelerator,
  kit: Kit<T, M>,
  model: M,
  data: AsyncIterable<Batch<T>>,
): Promise<number> {
  model.eval();
  let correct = 0;
  let total = 0;
  for await (const batch of data) {
    const predictions = kit.predict(model, batch.input);
    const [p, t] = await accelerator.gatherForMetrics([predictions, batch.target]);
    correct += kit.countEqual(p, t);
    total += t.shape[0];
    kit.dispose([predictions, p, t, batch]);
  }
  return correct / total;
}

main().catch((e: unknown) => {
  console.error(e instanceof Error ? e.message : e);
  process.exit(1);
});
